#!/usr/bin/env python3
"""A Stage 1 workload that prints a credential at start-up, then serves 200 like status_server.py.

python3 leaky_server.py --port N
"""

import runpy
import sys
from pathlib import Path

print("token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", flush=True)
server = str(Path(__file__).with_name("status_server.py"))
sys.argv = [server, *sys.argv[1:]]
runpy.run_path(server, run_name="__main__")
