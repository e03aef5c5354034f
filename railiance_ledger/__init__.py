"""Railiance Ledger: a tamper-evident promotion ledger for the three-stage deployment lifecycle."""

__version__ = "0.1.0"
