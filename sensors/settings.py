"""Sensor settings from the environment: which sensors start enabled, and how often they tick.

- ``RAILIANCE_DAGSTER_SENSORS``: comma-separated sensor names that start RUNNING (``all`` for every
  one); the rest start STOPPED and are turned on in the UI (Automation -> sensor -> toggle).
- ``RAILIANCE_SENSOR_INTERVAL``: seconds between ticks of every sensor (default per sensor).
"""

from __future__ import annotations

import json
import os
from typing import Any

from dagster import DefaultSensorStatus, SkipReason


def default_status(name: str) -> DefaultSensorStatus:
    """RUNNING when ``name`` (or ``all``) is listed in ``RAILIANCE_DAGSTER_SENSORS``, else STOPPED."""
    listed = {s.strip() for s in os.environ.get("RAILIANCE_DAGSTER_SENSORS", "").split(",") if s.strip()}
    return DefaultSensorStatus.RUNNING if ("all" in listed or name in listed) else DefaultSensorStatus.STOPPED


def interval(default: int) -> int:
    """``RAILIANCE_SENSOR_INTERVAL`` seconds, else ``default``."""
    raw = os.environ.get("RAILIANCE_SENSOR_INTERVAL", "").strip()
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


def load_cursor(raw: str | None, default: Any) -> Any:
    """The JSON cursor, or ``default`` when there is none or it does not parse (logged by the caller)."""
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def dump_cursor(value: Any) -> str:
    """Canonical JSON for a cursor (sorted keys, compact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def chain_refusal(store: Any, context: Any) -> SkipReason | None:
    """A sensor acts only on a ledger whose chain verifies (from the checkpoint, ``ledger.checkpoint``):
    on a mismatch the tick logs an error naming the first bad seq, requests nothing and keeps its cursor."""
    from railiance_ledger.errors import IntegrityError
    from railiance_ledger.ledger.checkpoint import check_integrity

    try:
        check_integrity(store)
    except IntegrityError as exc:
        message = f"the ledger does not verify, refusing to act: {exc.message}"
        from assets.resources import log_of

        log_of(context).error(message)
        return SkipReason(message)
    return None
