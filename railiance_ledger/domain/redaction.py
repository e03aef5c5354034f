"""The one redaction path for everything that leaves the process. (Being written: see tests.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One secret-looking thing found in text: its kind (e.g. ``pem-private-key``) and span."""

    kind: str
    start: int
    end: int


def find_secrets(text: str) -> list[Finding]:
    """Every secret-looking span in ``text``."""
    raise NotImplementedError


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``."""
    raise NotImplementedError


def redact_value(value: Any) -> Any:
    """Redact recursively through dicts, lists and strings (keys with secret-like names too)."""
    raise NotImplementedError
