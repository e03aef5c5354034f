"""One canary degradation per trial, on the real control plane, the real registry and real Prometheus.

Driven by ``bench/canary_rollback.py`` through pytest only to reuse the harness fixtures; every
figure is written to ``$RAILIANCE_BENCH_OUT`` (JSON Lines) and judged by the bench script, never here.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from tests.fixtures.stage2 import CanaryEnv, deploy_env, events_of, observe_env

TRIALS = int(os.environ.get("RAILIANCE_BENCH_TRIALS", "5"))
INTERVAL = os.environ.get("RAILIANCE_BENCH_INTERVAL", "1s")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_canary_degradation_to_rollback(canary_env: CanaryEnv, trial: int) -> None:
    """Degrade the canary's error rate after the second sample; record when each sample and the rollback land."""
    canary_env.edit('observation_window = "4s"', 'observation_window = "20s"')
    canary_env.edit('sample_interval = "1s"', f'sample_interval = "{INTERVAL}"')
    out = deploy_env(canary_env)
    if out.exit_code != 0:
        raise RuntimeError(f"deploy failed: {out.document.get('checks')}")
    sample_times: list[float] = []
    changed: list[float] = []

    def progress(done: int, total: int, sample: Any) -> None:
        sample_times.append(time.monotonic())
        if done == 2:
            canary_env.metrics.set("canary", error_rate=0.2)
            changed.append(time.monotonic())

    res = observe_env(canary_env, on_progress=progress)
    finished = time.monotonic()
    started = events_of(canary_env, EventKind.ROLLBACK_STARTED)
    completed = events_of(canary_env, EventKind.ROLLBACK_COMPLETED)
    gaps = [b - a for a, b in zip(sample_times, sample_times[1:])]
    record = {
        "trial": trial,
        "interval_declared_s": canary_env.decl().canary.sample_interval,
        "interval_measured_s": sum(gaps) / len(gaps) if gaps else None,
        "symptom_to_rollback_completed_s": finished - changed[0] if changed else None,
        "samples_after_symptom": len(sample_times) - 2,
        "rolled_back": bool(res.rolled_back and started and completed),
        "symptom": started[0].payload.get("symptom") if started else None,
    }
    with open(os.environ["RAILIANCE_BENCH_OUT"], "a", encoding="utf-8") as fp:
        fp.write(json.dumps(record) + "\n")
