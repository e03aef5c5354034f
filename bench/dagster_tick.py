#!/usr/bin/env python
"""Gate and mirror sensor ticks at scale (issue 17, "Dagster at scale"): a tick costs what the new events
cost, never what the number of candidates or partitions costs. Budget: < 1 s with 100,000 candidates in
the ledger (and as many candidate partitions in Dagster) and 10 new events.

Each scale builds a SQLite ledger holding C candidates (``candidate.registered`` + a passing Stage 1, spread
over W undeclared workloads) and a Dagster instance with C candidate partitions, then appends the same 10
new events (5 candidates of the declared ``hello-web``: registration and a passing Stage 1) and times
``stage_gate_sensor`` and ``ledger_mirror_sensor`` evaluated on those 10 events (cursor just before them),
median of ``--ticks``. The first scale (``--baseline``, default 100 candidates) is the baseline; every
other row prints its ratio to it.

Usage: python bench/dagster_tick.py [--candidates 100000] [--baseline 100] [--workloads 100] [--ticks 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAILIANCE_APPS_DIR", str(ROOT / "examples"))


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _events(stream: str, digest: str) -> list[Any]:
    from railiance_ledger.domain.events import EventKind, NewEvent

    doc = {
        "schema": "railiance.stage-result/v1",
        "stage": 1,
        "candidate": {"digest": digest, "image": f"registry.local/{stream}@{digest}"},
        "checks": [{"name": "manifests_valid", "status": "pass", "reason": "ok", "evidence": []}],
        "status": "pass",
    }
    return [
        NewEvent(
            stream=stream,
            kind=EventKind.CANDIDATE_REGISTERED,
            actor="bench",
            candidate=digest,
            payload={"image": f"registry.local/{stream}@{digest}"},
        ),
        NewEvent(
            stream=stream,
            kind=EventKind.STAGE_COMPLETED,
            actor="bench",
            candidate=digest,
            stage=1,
            payload=doc,
        ),
    ]


def build(work: Path, candidates: int, workloads: int) -> tuple[str, Any, int]:
    """A ledger with ``candidates`` candidates and an instance with as many partitions; returns the ledger
    URL, the instance and the seq before the 10 new events (which are appended too)."""
    from dagster import DagsterInstance

    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.ledger.store import EventStore

    url = f"sqlite:///{work / 'ledger.db'}"
    store = EventStore.open(url)
    keys: list[str] = []
    for w in range(workloads):  # one append = one stream
        stream = f"bulk-{w}"
        batch: list[Any] = []
        for i in range(w, candidates, workloads):
            digest = _digest(f"{stream}-{i}")
            batch.extend(_events(stream, digest))
            keys.append(partition_key(stream, digest))
            if len(batch) >= 2000:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
    from railiance_ledger.ledger.checkpoint import check_integrity

    check_integrity(store)  # what the previous tick did: the checkpoint is at the head before the new events
    before = store.head()[0]
    for i in range(5):
        store.append(_events("hello-web", _digest(f"hello-web-new-{i}")))
    store.close()
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = DagsterInstance.from_config(str(home))
    for start in range(0, len(keys), 10000):
        instance.add_dynamic_partitions("candidates", keys[start : start + 10000])
    return url, instance, before


def tick(sensor: Any, instance: Any, url: str, cursor: str) -> float:
    from dagster import SensorResult, build_sensor_context

    from assets.resources import AppsResource, LedgerResource
    from definitions import build_definitions

    resources = {"ledger": LedgerResource(url=url), "apps": AppsResource(apps_dir=str(ROOT / "examples"))}
    ctx = build_sensor_context(
        instance=instance, definitions=build_definitions(resources), cursor=cursor, resources=resources
    )
    start = time.perf_counter()
    result = sensor(ctx)
    elapsed = time.perf_counter() - start
    assert isinstance(result, SensorResult), result
    return elapsed


def measure(candidates: int, workloads: int, ticks: int) -> dict[str, float]:
    from sensors import ledger_mirror_sensor, stage_gate_sensor
    from sensors.settings import dump_cursor

    with tempfile.TemporaryDirectory(prefix="dagster-tick-") as tmp:
        t0 = time.perf_counter()
        url, instance, before = build(Path(tmp), candidates, workloads)
        built = time.perf_counter() - t0
        out = {"build_s": built}
        for name, sensor, cursor in (
            ("gate", stage_gate_sensor, dump_cursor({"seq": before})),
            ("mirror", ledger_mirror_sensor, dump_cursor({"seq": before, "held": []})),
        ):
            out[name] = statistics.median(tick(sensor, instance, url, cursor) for _ in range(ticks))
        # the same 10 new events, now in the busiest workload (candidates / workloads of history)
        from railiance_ledger.ledger.store import EventStore

        store = EventStore.open(url)
        busy = store.head()[0]
        for i in range(5):
            store.append(_events("bulk-0", _digest(f"bulk-0-new-{i}")))
        store.close()
        for name, sensor, cursor in (
            ("gate_busy", stage_gate_sensor, dump_cursor({"seq": busy})),
            ("mirror_busy", ledger_mirror_sensor, dump_cursor({"seq": busy, "held": []})),
        ):
            out[name] = statistics.median(tick(sensor, instance, url, cursor) for _ in range(ticks))
        instance.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    scales = [args.baseline, *(c for c in (10_000, args.candidates) if c > args.baseline)]
    scales = sorted(set(scales))
    rows = []
    for c in scales:
        m = measure(c, min(args.workloads, c), args.ticks)
        rows.append((c, m))
        print(f"measured {c} candidates (ledger and partitions built in {m['build_s']:.0f} s)", flush=True)
    base = rows[0][1]
    print(f"\n10 new events; median of {args.ticks} ticks; {args.workloads} bulk workloads; SQLite ledger")
    for suffix, label in (
        ("", "new events in a small declared workload (hello-web)"),
        ("_busy", "new events in the busiest workload (bulk-0)"),
    ):
        print(f"\n{label}")
        print(f"{'candidates':>10} | {'gate tick':>10} | {'ratio':>6} | {'mirror tick':>11} | {'ratio':>6}")
        g, mi = f"gate{suffix}", f"mirror{suffix}"
        for c, m in rows:
            print(
                f"{c:>10} | {m[g] * 1000:>7.1f} ms | {m[g] / base[g]:>5.2f}x | "
                f"{m[mi] * 1000:>8.1f} ms | {m[mi] / base[mi]:>5.2f}x"
            )
    # the budget is stated at the largest scale (100,000 candidates); smaller rows show the growth
    worst = max(v for k, v in rows[-1][1].items() if k != "build_s")
    verdict = "PASS" if worst < 1.0 else "FAIL"
    print(f"\nbudget: every tick at {rows[-1][0]} candidates < 1 s: {verdict} (worst {worst * 1000:.0f} ms)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
