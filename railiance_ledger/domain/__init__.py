"""Pure domain: event types, stage-result model, gate rules, digests, durations, redaction.

No I/O, no clock, no network. Imports nothing else of ours.
"""
