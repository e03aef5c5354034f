#!/usr/bin/env python
"""Ledger budgets (ARCHITECTURE.md "Budgets"), measured against a baseline in the same run.

1. Load N events across W workloads through ``EventStore.append`` (realistic lifecycles, rules
   checked, ~100 events per append, workloads interleaved), so the chain is the real one.
2. Verify the whole chain: budget >= 150,000 events/s. Then the integrity check before an action
   (verify from the stored checkpoint, O(new events)): budget < 20 ms, with its ratio to the full walk.
3. ``workload_status`` and ``rollback_target`` latency over random workloads: budget < 5 ms (median
   and p95 reported).
4. Append rate, one event per transaction, through ``EventStore.append_one`` versus a raw SQLAlchemy
   Core single-row insert per transaction into a table of the same shape (same columns and indexes)
   on the same database and engine: budget ratio >= 0.5.
5. Batch append rate (100 events per append).

Usage: python bench/ledger.py [--backend sqlite|postgres|both] [--events N] [--workloads W] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.ledger.checkpoint import check_integrity
from railiance_ledger.ledger.projections import rollback_target, workload_status
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.ledger.verify import verify
from railiance_ledger.lifecycle.actions import acting

K = EventKind
VERIFY_BUDGET = 150_000.0
QUERY_BUDGET_MS = 5.0
RATIO_BUDGET = 0.5
INTEGRITY_BUDGET_MS = 20.0
CANDIDATES_PER_APPEND = 5
ROUNDS = 5


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def stage_doc(workload: str, d: str, stage: int, status: str) -> dict[str, Any]:
    return {
        "schema": "railiance.stage-result/v1",
        "workload": {"name": workload, "repo": f"https://git.example/{workload}"},
        "stage": stage,
        "candidate": {"digest": d, "image": f"registry.local/{workload}@{d}", "revision": d[7:47]},
        "target_environment": {1: "local", 2: "canary", 3: "production"}[stage],
        "checks": [
            {"name": name, "status": status, "reason": "ok" if status == "pass" else "failed", "evidence": []}
            for name in (
                "source_revision_identified",
                "artifact_deterministic",
                "manifests_valid",
                "local_health",
                "secrets_by_reference",
                "candidate_immutable",
            )
        ],
        "status": status,
        "evidence": [{"kind": "digest", "ref": d, "detail": "pinned by digest"}],
        "rollback_target": None,
        "approval": {"required": False, "decision": "not required", "operator": ""},
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:05:00+00:00",
    }


def lifecycle(workload: str, index: int, previous: str | None) -> tuple[list[NewEvent], str | None]:
    """20 events for one candidate; every 7th fails its canary and is rolled back. Returns the new stable."""
    d = digest(f"{workload}/{index}")
    ev = [
        NewEvent(
            stream=workload,
            kind=K.CANDIDATE_REGISTERED,
            actor="new_digest_sensor",
            candidate=d,
            payload={"image": f"registry.local/{workload}@{d}", "revision": d[7:47]},
        ),
        NewEvent(stream=workload, kind=K.STAGE_STARTED, actor="dagster", candidate=d, stage=1),
        NewEvent(
            stream=workload,
            kind=K.STAGE_COMPLETED,
            actor="dagster",
            candidate=d,
            stage=1,
            payload=stage_doc(workload, d, 1, "pass"),
        ),
        NewEvent(stream=workload, kind=K.STAGE_STARTED, actor="dagster", candidate=d, stage=2),
    ]
    failing = index % 7 == 6
    ev += [
        NewEvent(
            stream=workload,
            kind=K.CANARY_SAMPLE,
            actor="canary_guard",
            candidate=d,
            stage=2,
            payload={
                "sample": i,
                "error_rate": 0.2 if failing else 0.001,
                "p95_ms": 120 + i,
                "requests": 1000,
            },
        )
        for i in range(11)
    ]
    ev.append(
        NewEvent(
            stream=workload,
            kind=K.STAGE_COMPLETED,
            actor="dagster",
            candidate=d,
            stage=2,
            payload=stage_doc(workload, d, 2, "fail" if failing else "pass"),
        )
    )
    if failing:
        ev += [
            NewEvent(
                stream=workload,
                kind=K.ROLLBACK_STARTED,
                actor="canary_guard",
                candidate=d,
                payload={"symptom": "error rate 20% > 1%"},
            ),
            NewEvent(
                stream=workload,
                kind=K.ROLLBACK_COMPLETED,
                actor="canary_guard",
                candidate=d,
                payload={"final_stable": previous, "reason": "canary error rate"},
            ),
        ]
        stable = previous
    else:
        ev += [
            NewEvent(
                stream=workload,
                kind=K.APPROVAL_GRANTED,
                actor="alice",
                candidate=d,
                stage=3,
                payload={"operator": "alice", "window": "2026-01-01T10:00Z/2026-01-01T12:00Z"},
            ),
            NewEvent(
                stream=workload,
                kind=K.PROMOTION_COMPLETED,
                actor="alice",
                candidate=d,
                stage=3,
                payload={
                    "digest": d,
                    "image": f"registry.local/{workload}@{d}",
                    "previous_stable": previous,
                    "helm_revision": index + 1,
                    "release": workload,
                    "namespace": "prod",
                    "values_digest": digest(f"values/{index}"),
                    "manifests_digest": digest(f"m/{index}"),
                    "routing": {"stable": 100, "canary": 0},
                },
            ),
        ]
        stable = d
    ev += [
        NewEvent(
            stream=workload,
            kind=K.NOTE_POSTED,
            actor="statehub",
            payload={"text": f"{workload} {index} done"},
        ),
        NewEvent(
            stream=workload, kind=K.ROUTING_CHANGED, actor="dagster", payload={"stable": 100, "canary": 0}
        ),
    ]
    assert len(ev) == 20, len(ev)
    return ev, stable


@dataclass
class Result:
    backend: str
    figures: dict[str, Any] = field(default_factory=dict)

    def put(self, key: str, value: Any, text: str) -> None:
        self.figures[key] = value
        print(f"  {text}", flush=True)


@contextmanager
def ledger_url(backend: str, pg_admin: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="railiance-bench-") as tmp:
            yield f"sqlite:///{tmp}/ledger.db"
        return
    import psycopg

    admin = pg_admin.replace("postgresql+psycopg://", "postgresql://")
    name = f"railiance_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load(store: EventStore, events: int, workloads: int, result: Result) -> list[str]:
    names = [f"workload-{w:04d}" for w in range(workloads)]
    per_workload = events // workloads
    cands = max(1, per_workload // 20)
    stables: dict[str, str | None] = dict.fromkeys(names)
    total = 0
    started = time.perf_counter()
    for first in range(0, cands, CANDIDATES_PER_APPEND):
        for name in names:
            batch: list[NewEvent] = []
            for index in range(first, min(cands, first + CANDIDATES_PER_APPEND)):
                evs, stables[name] = lifecycle(name, index, stables[name])
                batch += evs
            store.append(batch)
            total += len(batch)
        print(f"    loaded {total:,} events ({total / (time.perf_counter() - started):,.0f}/s)", flush=True)
    elapsed = time.perf_counter() - started
    result.put(
        "loaded_events",
        total,
        f"loaded {total:,} events across {workloads:,} workloads in {elapsed:.1f} s "
        f"({total / elapsed:,.0f} events/s, {CANDIDATES_PER_APPEND * 20} events per append)",
    )
    return names


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, this thread's CPU ms) of one call: on a shared machine the two differ by scheduling."""
    t, c = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


def bench_queries(store: EventStore, names: list[str], queries: int, result: Result) -> None:
    rng = random.Random(7)
    picks = [rng.choice(names) for _ in range(queries)]
    for name in rng.sample(names, min(20, len(names))):  # warm the code paths, not the picked workloads
        workload_status(store, name)
        rollback_target(store, name)
    runs = {
        "status": [timed(lambda n=name: workload_status(store, n)) for name in picks],  # type: ignore[misc]
        "rollback_target": [timed(lambda n=name: rollback_target(store, n)) for name in picks],  # type: ignore[misc]
    }
    sample = workload_status(store, picks[0])
    for key, pairs in runs.items():
        wall, cpu = [w for w, _ in pairs], [c for _, c in pairs]
        med, hi = statistics.median(wall), p95(wall)
        ok = "OK" if hi < QUERY_BUDGET_MS else "MISSED"
        result.put(
            f"{key}_ms_median",
            round(med, 3),
            f"{key}: median {med:.2f} ms, p95 {hi:.2f} ms wall over "
            f"{len(wall)} queries (budget < {QUERY_BUDGET_MS} ms: {ok}); CPU median "
            f"{statistics.median(cpu):.2f} ms, p95 {p95(cpu):.2f} ms",
        )
        result.figures[f"{key}_ms_p95"] = round(hi, 3)
        result.figures[f"{key}_cpu_ms_median"] = round(statistics.median(cpu), 3)
        result.figures[f"{key}_cpu_ms_p95"] = round(p95(cpu), 3)
    result.put(
        "status_candidates",
        len(sample.candidates),
        f"(a status covers {len(sample.candidates)} candidates; current stable "
        f"{(sample.current_stable or 'none')[:19]}...)",
    )


def bench_append(store: EventStore, n: int, result: Result) -> None:
    engine = store.engine
    md = sa.MetaData()
    raw = sa.Table(
        "bench_raw_events",
        md,
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
        ),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("candidate", sa.String(200)),
        sa.Column("stage", sa.Integer),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("stream", "version"),
        sa.Index("ix_bench_raw_sks", "stream", "kind", "seq"),
        sa.Index("ix_bench_raw_scs", "stream", "candidate", "seq"),
        sa.Index("ix_bench_raw_ks", "kind", "seq"),
    )
    md.create_all(engine)
    ins = sa.insert(raw)
    stream = "bench-append"
    d = digest("bench-append/0")
    store.append(
        [
            NewEvent(
                stream=stream,
                kind=K.CANDIDATE_REGISTERED,
                actor="bench",
                candidate=d,
                payload={"image": "x@" + d},
            ),
            NewEvent(
                stream=stream,
                kind=K.STAGE_COMPLETED,
                actor="bench",
                candidate=d,
                stage=1,
                payload=stage_doc(stream, d, 1, "pass"),
            ),
            NewEvent(stream=stream, kind=K.STAGE_STARTED, actor="bench", candidate=d, stage=2),
        ]
    )
    sample_payload = {"sample": 1, "error_rate": 0.001, "p95_ms": 120, "requests": 1000}
    payload_text = json.dumps(sample_payload, sort_keys=True, separators=(",", ":"))
    raw_seq = [0]

    def raw_run(count: int) -> float:
        t = time.perf_counter()
        for _ in range(count):
            raw_seq[0] += 1
            with engine.begin() as conn:
                conn.execute(
                    ins,
                    {
                        "seq": raw_seq[0],
                        "event_id": str(uuid.uuid4()),
                        "stream": stream,
                        "version": raw_seq[0],
                        "kind": "canary.sample",
                        "candidate": d,
                        "stage": 2,
                        "actor": "bench",
                        "recorded_at": "2026-01-01T00:00:00.000000+00:00",
                        "payload": payload_text,
                        "prev_hash": "0" * 64,
                        "hash": "f" * 64,
                    },
                )
        return count / (time.perf_counter() - t)

    def store_run(count: int) -> float:
        event = NewEvent(
            stream=stream, kind=K.CANARY_SAMPLE, actor="bench", candidate=d, stage=2, payload=sample_payload
        )
        t = time.perf_counter()
        for _ in range(count):
            store.append_one(event)
        return count / (time.perf_counter() - t)

    raw_run(50)
    store_run(50)  # warm up both paths (statement caches, prepared statements)
    raw_rates, store_rates, ratios = [], [], []
    for _ in range(ROUNDS):  # interleave short runs so both sides share any drift in disk or machine load
        raw_rates.append(raw_run(n))
        store_rates.append(store_run(n))
        ratios.append(store_rates[-1] / raw_rates[-1])
    raw_rate, store_rate = statistics.median(raw_rates), statistics.median(store_rates)
    ratio = statistics.median(ratios)
    ok = "OK" if ratio >= RATIO_BUDGET else "MISSED"
    result.put(
        "raw_insert_per_s", round(raw_rate), f"raw Core single-row insert per transaction: {raw_rate:,.0f}/s"
    )
    result.put(
        "append_one_per_s",
        round(store_rate),
        f"EventStore.append_one (rule-checked canary.sample): {store_rate:,.0f}/s",
    )
    result.put(
        "append_ratio",
        round(ratio, 3),
        f"ratio append/raw: {ratio:.2f} (budget >= {RATIO_BUDGET}: {ok}; "
        f"median over {ROUNDS} interleaved rounds of {n}; per-round {', '.join(f'{r:.2f}' for r in ratios)})",
    )

    batches = max(5, n // 100)
    notes = [
        NewEvent(stream="bench-batch", kind=K.NOTE_POSTED, actor="bench", payload={"i": i})
        for i in range(100)
    ]
    t = time.perf_counter()
    for _ in range(batches):
        store.append(notes)
    rate = batches * 100 / (time.perf_counter() - t)
    result.put(
        "batch_append_per_s", round(rate), f"batch append, 100 events per append: {rate:,.0f} events/s"
    )
    with engine.begin() as conn:
        raw.drop(conn)


def bench_integrity(store: EventStore, names: list[str], full_s: float, result: Result) -> None:
    """The integrity check before an action (``ledger.checkpoint.check_integrity``): budget < 20 ms.

    The first check walks the chain once and stores the checkpoint; then, 50 rounds of: append one
    action's worth of events (lease, stage started/completed, a note, release: 6 events) to a random
    workload, and time the check, which re-hashes the checkpoint row and the new events only. Also the
    whole ``lifecycle.actions.acting`` enter/exit (check, stream fold, lease acquire and release).
    """
    t = time.perf_counter()
    first = check_integrity(store)
    result.put(
        "integrity_first_s",
        round(time.perf_counter() - t, 2),
        f"integrity check, first (full walk, sets the checkpoint): {first.events_checked:,} events in "
        f"{time.perf_counter() - t:.2f} s",
    )
    rng = random.Random(11)
    walls: list[float] = []
    cpus: list[float] = []
    checked: list[int] = []
    for _ in range(50):
        name = rng.choice(names)
        store.append(
            [
                NewEvent(stream=name, kind=EventKind.NOTE_POSTED, actor="bench", payload={"i": i})
                for i in range(6)
            ]
        )
        box: list[Any] = []
        wall, cpu = timed(lambda box=box: box.append(check_integrity(store)))
        walls.append(wall)
        cpus.append(cpu)
        checked.append(box[0].events_checked)
    median = statistics.median(walls)
    ok = "OK" if p95(walls) < INTEGRITY_BUDGET_MS else "MISSED"
    result.put(
        "integrity_ms",
        {
            "median": round(median, 2),
            "p95": round(p95(walls), 2),
            "cpu_median": round(statistics.median(cpus), 2),
        },
        f"integrity check from the checkpoint ({statistics.median(checked):.0f} events hashed): median "
        f"{median:.2f} ms, p95 {p95(walls):.2f} ms wall (CPU median {statistics.median(cpus):.2f} ms); "
        f"budget < {INTEGRITY_BUDGET_MS} ms: {ok}; the full walk takes {full_s * 1000:,.0f} ms "
        f"({full_s * 1000 / median:,.0f}x the check)",
    )
    acts: list[float] = []
    for _ in range(20):
        name = rng.choice(names)

        def act(name: str = name) -> None:
            with acting(store, name, "observe", "bench"):
                pass

        acts.append(timed(act)[0])
    result.put(
        "acting_ms",
        {"median": round(statistics.median(acts), 2), "p95": round(p95(acts), 2)},
        f"acting() enter+exit (check, stream fold, lease acquired + released): median "
        f"{statistics.median(acts):.2f} ms, p95 {p95(acts):.2f} ms",
    )


def run(backend: str, args: argparse.Namespace) -> Result:
    result = Result(backend)
    print(f"\n== {backend} ==", flush=True)
    with ledger_url(backend, args.pg_url) as url:
        store = EventStore.open(url)
        try:
            names = load(store, args.events, args.workloads, result)
            t = time.perf_counter()
            report = verify(store)
            elapsed = time.perf_counter() - t
            assert report.ok, report
            rate = report.events_checked / elapsed
            ok = "OK" if rate >= VERIFY_BUDGET else "MISSED"
            result.put(
                "verify_per_s",
                round(rate),
                f"verify: {report.events_checked:,} events in {elapsed:.2f} s = "
                f"{rate:,.0f} events/s (budget >= {VERIFY_BUDGET:,.0f}: {ok})",
            )
            bench_integrity(store, names, elapsed, result)
            bench_queries(store, names, args.queries, result)
            bench_append(store, args.appends, result)
        finally:
            store.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--appends", type=int, default=400, help="single-event transactions per timed round")
    parser.add_argument(
        "--quick", action="store_true", help="100,000 events, 100 workloads, 200 appends per round"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RAILIANCE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="admin database; the bench creates and drops its own database",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()
    if args.quick:
        args.events, args.workloads, args.appends = 100_000, 100, 200
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"SQLAlchemy {sa.__version__}; events {args.events:,}, workloads {args.workloads:,}"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        before = os.getloadavg()[0]
        result = run(backend, args)
        result.figures["load_average_1m"] = [round(before, 2), round(os.getloadavg()[0], 2)]
        print(f"  (1-minute load average before/after: {before:.2f} / {os.getloadavg()[0]:.2f})", flush=True)
        results.append(result)
    if args.json:
        print(json.dumps({r.backend: r.figures for r in results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
