#!/usr/bin/env python3
"""Writes its own pid and a long-lived child's pid to ``argv[1]``, then sleeps (process-group tests)."""

import subprocess
import sys
import time

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as fh:
    fh.write(f"{child.pid}\n")
time.sleep(120)
