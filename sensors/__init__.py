"""The Railiance sensors: new digests, stage gates, the canary guard and the ledger mirror.

Each sensor starts STOPPED unless listed in ``RAILIANCE_DAGSTER_SENSORS`` (see ``sensors.settings``).
"""

from __future__ import annotations

from sensors.digests import new_digest_sensor, registry_push_sensor
from sensors.gates import canary_guard_sensor, stage_gate_sensor
from sensors.mirror import ledger_mirror_sensor

SENSORS = [
    new_digest_sensor,
    registry_push_sensor,
    stage_gate_sensor,
    canary_guard_sensor,
    ledger_mirror_sensor,
]

__all__ = [
    "SENSORS",
    "canary_guard_sensor",
    "ledger_mirror_sensor",
    "new_digest_sensor",
    "registry_push_sensor",
    "stage_gate_sensor",
]
