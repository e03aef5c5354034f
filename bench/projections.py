#!/usr/bin/env python
"""Growth of the workload queries with one workload's history (issue 17), ratios against the same run.

One workload grows to 50, 500, 5,000 and 10,000 candidates (20 events each: register, Stage 1,
a canary with 11 samples, Stage 2, approval and promotion, or a rollback for every 7th; the events
of ``bench/ledger.py``'s ``lifecycle``), appended through ``EventStore.append`` (rules checked,
chain real). At each size the bench times ``workload_status``, ``rollback_target`` and
``lineage(at=T)`` (T = the middle of the history so far), and one-event appends (one transaction
each) against a raw single-row insert into a table of the events' shape on the same database.
The figure to read is the growth: the ratio of each median to the same query's median at the
first size (goal: flat, about 1.0x), and the absolute medians (budget < 5 ms).

``--filler N`` first bulk-inserts N valid, hash-chained events spread over other workloads (one
multi-row INSERT per 10,000 rows, the chain computed here exactly as the store computes it), so
the measured workload lives in a ledger of N + its own events ("5,000,000 events in all").

Usage: python bench/projections.py [--backend sqlite|postgres] [--sizes 50,500,5000,10000]
       [--filler N] [--pg-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa

from ledger import ledger_url, lifecycle  # bench/ledger.py

from railiance_ledger.domain.events import EventKind, NewEvent, canonical_json
from railiance_ledger.ledger import projections
from railiance_ledger.ledger.chain import row_hash
from railiance_ledger.ledger.schema import EVENT_COLUMNS
from railiance_ledger.ledger.store import EventStore

QUERY_BUDGET_MS = 5.0
APPEND_RATIO_BUDGET = 0.5
WORKLOAD = "long-lived"


def timed_ms(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def median_ms(fn: Callable[[], Any], n: int, cpu: list[float] | None = None) -> float:
    """Median wall ms of ``n`` calls; the median of this thread's CPU ms goes to ``cpu`` (on a shared
    machine the wall time includes waiting for a core)."""
    fn()  # warm
    walls, cpus = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.thread_time() - c) * 1000)
    if cpu is not None:
        cpu.append(statistics.median(cpus))
    return statistics.median(walls)


def bulk_filler(store: EventStore, total: int, chunk: int = 50_000) -> float:
    """Insert ``total`` valid chained events (notes of other workloads) straight into ``events``.

    Each row is hashed exactly as the store hashes it (``chain.row_hash`` over the previous hash), so
    ``verify`` accepts the result; event ids are UUIDs built from the seq (ascending, so the unique
    index grows at its end). SQLite: ``executemany`` on the driver connection, one transaction per
    chunk; PostgreSQL: ``COPY``. The append-only triggers do not fire on INSERT.
    """
    seq, prev = store.head()
    workloads = max(1, total // 2_000)
    started = time.perf_counter()
    at = "2026-01-01T00:00:00.000000+00:00"
    cols = ", ".join(EVENT_COLUMNS)
    kind = EventKind.NOTE_POSTED.value
    done = 0
    version: dict[str, int] = {}
    with store.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        while done < total:
            rows: list[tuple[Any, ...]] = []
            for _ in range(min(chunk, total - done)):
                seq += 1
                w = f"filler-{seq % workloads:05d}"
                v = version.get(w, 0) + 1
                version[w] = v
                payload = canonical_json({"text": f"filler {seq}"})
                eid = str(uuid.UUID(int=(0xBE << 120) | seq))
                h = row_hash(seq, eid, w, v, kind, None, None, "bench", at, payload, prev)
                rows.append((seq, eid, w, v, kind, None, None, "bench", at, payload, prev, h))
                prev = h
            if store.dialect == "postgresql":
                with raw.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                raw.commit()
            else:
                raw.execute("BEGIN IMMEDIATE")
                raw.executemany(
                    f"INSERT INTO events ({cols}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})", rows
                )
                raw.commit()
            done += len(rows)
            if done % 500_000 < chunk:
                print(
                    f"    filler: {done:,} events ({done / (time.perf_counter() - started):,.0f}/s)",
                    flush=True,
                )
    return time.perf_counter() - started


def raw_vs_append(store: EventStore, n: int) -> tuple[float, float]:
    """(append_one per s, raw single-row insert per s) over ``n`` transactions each."""
    engine = store.engine
    meta = sa.MetaData()
    raw = sa.Table(
        "bench_raw_events",
        meta,
        *(sa.Column(c.name, c.type, primary_key=c.primary_key) for c in store_events_table().columns),
    )
    meta.create_all(engine)
    base = int(time.time() * 1000) % 1_000_000_000 * 100  # seq is BIGINT; version stays small
    t = time.perf_counter()
    for i in range(n):
        with engine.begin() as conn:
            conn.execute(
                sa.insert(raw).values(
                    seq=base + i,
                    event_id=str(uuid.uuid4()),
                    stream="raw",
                    version=i + 1,
                    kind="note.posted",
                    candidate=None,
                    stage=None,
                    actor="bench",
                    recorded_at="2026-01-01T00:00:00+00:00",
                    payload='{"text":"x"}',
                    prev_hash="0" * 64,
                    hash="0" * 64,
                )
            )
    raw_rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        store.append_one(
            NewEvent(
                stream="append-probe", kind=EventKind.NOTE_POSTED, actor="bench", payload={"text": f"{i}"}
            )
        )
    return n / (time.perf_counter() - t), raw_rate


def store_events_table() -> sa.Table:
    from railiance_ledger.ledger.schema import events

    return events


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, Any] = {"sizes": sizes, "rows": []}
    with ledger_url(args.backend, args.pg_url) as url:
        store = EventStore.open(url)
        try:
            if args.filler:
                secs = bulk_filler(store, args.filler)
                print(f"  filler: {args.filler:,} chained events bulk-inserted in {secs:.1f} s", flush=True)
                rebuild = getattr(projections, "rebuild_projections", None)
                if rebuild is not None:
                    t = time.perf_counter()
                    rebuild(store)
                    print(f"  rebuild-projections after the filler: {time.perf_counter() - t:.1f} s")
            stable: str | None = None
            built = 0
            times: list[str] = []
            first: dict[str, float] = {}
            for size in sizes:
                t = time.perf_counter()
                while built < size:
                    batch: list[NewEvent] = []
                    for index in range(built, min(size, built + 5)):
                        evs, stable = lifecycle(WORKLOAD, index, stable)
                        batch += evs
                    recorded = store.append(batch)
                    times.append(recorded[-1].recorded_at)
                    built = min(size, built + 5)
                load_s = time.perf_counter() - t
                at = times[len(times) // 2]
                row: dict[str, Any] = {"candidates": size, "events_total": store.head()[0]}
                cpu: list[float] = []
                row["status_ms"] = median_ms(
                    lambda: projections.workload_status(store, WORKLOAD), args.queries, cpu
                )
                row["rollback_target_ms"] = median_ms(
                    lambda: projections.rollback_target(store, WORKLOAD), args.queries, cpu
                )
                row["lineage_at_ms"] = median_ms(
                    lambda: projections.lineage(store, WORKLOAD, at=at), args.queries, cpu
                )
                row["cpu_ms"] = [round(c, 2) for c in cpu]
                row["load"] = round(os.getloadavg()[0], 1)
                append_rate, raw_rate = raw_vs_append(store, args.appends)
                row["append_per_s"] = round(append_rate)
                row["raw_insert_per_s"] = round(raw_rate)
                row["append_ratio"] = round(append_rate / raw_rate, 2)
                for key in ("status_ms", "rollback_target_ms", "lineage_at_ms"):
                    first.setdefault(key, row[key])
                    row[key.replace("_ms", "_growth")] = round(row[key] / first[key], 2)
                out["rows"].append(row)
                print(
                    f"  {size:>6,} candidates ({row['events_total']:,} events, loaded in {load_s:.1f} s): "
                    f"status {row['status_ms']:.2f} ms ({row['status_growth']}x), "
                    f"rollback_target {row['rollback_target_ms']:.2f} ms ({row['rollback_target_growth']}x), "
                    f"lineage --at {row['lineage_at_ms']:.2f} ms ({row['lineage_at_growth']}x), "
                    f"append {append_rate:,.0f}/s vs raw {raw_rate:,.0f}/s = {row['append_ratio']}x; "
                    f"CPU medians (status, target, --at) {row['cpu_ms']} ms; load {row['load']}",
                    flush=True,
                )
            last = out["rows"][-1]
            ok = all(last[k] < QUERY_BUDGET_MS for k in ("status_ms", "rollback_target_ms", "lineage_at_ms"))
            print(
                f"  at {last['candidates']:,} candidates: queries < {QUERY_BUDGET_MS} ms: "
                f"{'OK' if ok else 'MISSED'}; append ratio >= {APPEND_RATIO_BUDGET}: "
                f"{'OK' if last['append_ratio'] >= APPEND_RATIO_BUDGET else 'MISSED'}"
            )
        finally:
            store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sizes", default="50,500,5000,10000")
    parser.add_argument("--filler", type=int, default=0, help="chained events bulk-inserted first")
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RAILIANCE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"backend {args.backend}, sizes {args.sizes}, filler {args.filler:,}; load {os.getloadavg()[0]:.2f}"
    )
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
