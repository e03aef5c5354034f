"""Durations in declarations and on the command line: ``90s``, ``15m``, ``1h30m``, ``2h``."""

from __future__ import annotations

import re

from railiance_ledger.domain.text import shown

_PART = re.compile(r"(\d+)(h|m|s)")
_WHOLE = re.compile(r"^(?:\d+[hms])+$")
_FACTOR = {"h": 3600, "m": 60, "s": 1}


class DurationFormatError(ValueError):
    """The text is not a duration of the form ``1h30m``, ``15m`` or ``90s``."""


def parse_duration(text: str | int) -> int:
    """Seconds in ``text``; plain integers are seconds. Zero or negative durations are refused."""
    if isinstance(text, bool):
        raise DurationFormatError(f"duration {shown(text)} must be text like '15m' or '1h30m'")
    if isinstance(text, int):
        seconds = text
    else:
        s = text.strip().lower().replace(" ", "")
        if not _WHOLE.match(s):
            raise DurationFormatError(
                f"duration {shown(text)} does not parse: use forms like '90s', '15m', '1h30m'"
            )
        seen: set[str] = set()
        seconds = 0
        for num, unit in _PART.findall(s):
            if unit in seen:
                raise DurationFormatError(f"duration {shown(text)} repeats the unit {unit!r}")
            seen.add(unit)
            seconds += int(num) * _FACTOR[unit]
    if seconds <= 0:
        raise DurationFormatError(f"duration {shown(text)} must be greater than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The canonical text for ``seconds`` (``3600`` -> ``1h``, ``5400`` -> ``1h30m``)."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out or "0s"
