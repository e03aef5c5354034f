#!/usr/bin/env python3
"""A Stage 1 local check that leaks secrets into its output (and exits ``argv[1]``, default 0)."""

import sys

print("starting smoke check")
print("DATABASE_PASSWORD=Sup3r-Secret-Pa55word!")
print("using token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789")
print("db at postgres://app:Sup3rS3cret@db:5432/app")
print("done")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
