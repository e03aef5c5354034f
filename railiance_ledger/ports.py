"""The Protocols the lifecycle needs from the outside world (one set; adapters implement them).

Only the clock is here so far; the kube, helm, registry, metrics and State Hub ports follow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where a service reads the current time from (injected, so tests can fix it)."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)``."""

    def now(self) -> datetime:
        return datetime.now(UTC)
