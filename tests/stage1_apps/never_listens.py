#!/usr/bin/env python3
"""A Stage 1 test workload that runs but never listens: every probe is refused."""

import time

time.sleep(120)
