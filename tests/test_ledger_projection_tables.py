"""The projection tables (issue 17): kept by the append, rebuilt from the log, equal to a full replay.

Every answer of the projection tables (status, lineage now and ``--at``, rollback target) is
compared with the full replay (``tests/projection_replay.py``, the read side before the tables),
incrementally and after ``rebuild_projections``, on both backends; a Hypothesis test does the
same over random event sequences (SQLite). Also: an existing schema-2 ledger gets its projections
when opened, paging, and ``candidates_to_retain`` / ``events_after`` for the Dagster retention.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.errors import RuleViolation
from railiance_ledger.ledger.projections import (
    candidates_to_retain,
    events_after,
    history,
    lineage,
    rollback_target,
    workload_status,
)
from railiance_ledger.ledger.schema import PROJECTION_TABLES, SCHEMA_VERSION
from railiance_ledger.ledger.store import EventStore
from tests.fixtures.ledger import (
    approval,
    digest_of,
    emergency,
    full_lifecycle,
    note,
    promotion,
    registered,
    rollback_done,
    stage_result,
    stage_started,
)
from tests.projection_replay import replay_lineage, replay_status

W = "hello-web"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DIGESTS = [digest_of(f"c{i}") for i in range(4)]


def snapshot(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection row, sorted (to compare incremental with rebuilt)."""
    with store.reading("test") as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)).all()) for t in PROJECTION_TABLES}


def assert_matches_replay(store: EventStore, workload: str, times: list[str]) -> None:
    status = workload_status(store, workload, limit=None)
    assert status.candidate_count == len(status.candidates)
    assert replace(status, candidate_count=0, open_canary=None) == replay_status(store, workload)
    assert lineage(store, workload, limit=None) == replay_lineage(store, workload)
    assert rollback_target(store, workload) == replay_lineage(store, workload).rollback_target
    for at in times:
        assert lineage(store, workload, at=at, limit=None) == replay_lineage(store, workload, at=at), at


def revoked(stream: str, digest: str, stage: int) -> NewEvent:
    return NewEvent(
        stream=stream,
        kind=EventKind.APPROVAL_REVOKED,
        actor="bob",
        candidate=digest,
        stage=stage,
        payload={"operator": "bob", "reason": "second thoughts"},
    )


def stage2_rollback(stream: str, digest: str, fate: str | None = None) -> NewEvent:
    payload: dict[str, Any] = {"final_stable": None, "reason": "canary failed"}
    if fate:
        payload["candidate_fate"] = fate
    return NewEvent(
        stream=stream,
        kind=EventKind.ROLLBACK_COMPLETED,
        actor="guard",
        candidate=digest,
        stage=2,
        payload=payload,
    )


def scripted(store: EventStore) -> list[str]:
    """A history with every shape the projections handle; returns instants to ask ``--at`` about."""
    v1, v2, v3, v4 = DIGESTS
    old = digest_of("pre-ledger")
    times = []
    steps: list[list[NewEvent]] = [
        full_lifecycle(W, v1, old, revision=1),
        full_lifecycle(W, v2, v1, revision=2),
        [registered(W, v3), stage_started(W, v3, 1), stage_result(W, v3, 1, "pass")],
        [approval(W, v3, 2), stage_started(W, v3, 2)],
        [stage2_rollback(W, v3, "returned-to-stage1")],
        [stage_result(W, v3, 1, "pass"), stage_started(W, v3, 2), stage_result(W, v3, 2, "pass")],
        [approval(W, v3, 3), promotion(W, v3, v2, revision=3)],
        [rollback_done(W, v1)],
        [registered(W, v4), emergency(W, v4, 1), emergency(W, v4, 2)],
        [approval(W, v4, 3, retrospective=True), revoked(W, v4, 3)],
        [promotion(W, v4, v1, revision=4), note(W, 1)],
        [rollback_done(W, digest_of("never-seen"))],
        [rollback_done(W, None)],
        [promotion(W, v2, None, revision=5)],
    ]
    for i, batch in enumerate(steps):
        store.append(batch, now=T0 + timedelta(hours=i))
        times.append((T0 + timedelta(hours=i, minutes=30)).isoformat())
    return [(T0 - timedelta(hours=1)).isoformat(), *times]


def test_projections_equal_the_full_replay_incrementally_and_after_rebuild(store: EventStore) -> None:
    times = scripted(store)
    assert_matches_replay(store, W, times)
    before = snapshot(store)
    assert store.rebuild_projections() > 0
    assert before == snapshot(store)
    assert_matches_replay(store, W, times)
    store.rebuild_projections([W])
    assert before == snapshot(store)


def test_status_pages_newest_candidates_and_counts_all(store: EventStore) -> None:
    previous = None
    for i in range(6):
        d = digest_of(f"page-{i}")
        store.append(full_lifecycle(W, d, previous, revision=i + 1))
        previous = d
    page = workload_status(store, W, limit=2)
    assert 6 == page.candidate_count
    assert [digest_of("page-4"), digest_of("page-5")] == [c.digest for c in page.candidates]
    assert digest_of("page-5") == page.current_stable
    assert (digest_of("page-4"), digest_of("page-3")) == page.earlier_stables[:2]
    assert 2 == len(page.earlier_stables)
    everything = workload_status(store, W, limit=None)
    assert 6 == len(everything.candidates) and 5 == len(everything.earlier_stables)
    lin = lineage(store, W, limit=2)
    assert [digest_of("page-4"), digest_of("page-5")] == [s.digest for s in lin.stables]
    assert lin.rollback_target is not None and digest_of("page-4") == lin.rollback_target.digest
    older = lineage(store, W, limit=2, before=lin.stables[0].seq)
    assert [digest_of("page-2"), digest_of("page-3")] == [s.digest for s in older.stables]


def test_open_canary_is_projected(store: EventStore) -> None:
    v1 = DIGESTS[0]
    store.append([registered(W, v1), stage_started(W, v1, 1), stage_result(W, v1, 1, "pass")])
    assert workload_status(store, W).open_canary is None
    store.append([approval(W, v1, 2), stage_started(W, v1, 2)])
    assert v1 == workload_status(store, W).open_canary
    store.append_one(stage_result(W, v1, 2, "pass"))
    assert workload_status(store, W).open_canary is None


def test_history_pages_with_limit_and_before(store: EventStore) -> None:
    store.append([note(W, i) for i in range(10)])
    newest = history(store, W, limit=3)
    assert [8, 9, 10] == [e.seq for e in newest]
    older = history(store, W, limit=3, before=newest[0].seq)
    assert [5, 6, 7] == [e.seq for e in older]
    assert [1, 2] == [e.seq for e in history(store, W, before=3)]


def test_retention_keeps_newest_stables_and_open_stages(store: EventStore) -> None:
    previous = None
    for i in range(5):
        d = digest_of(f"ret-{i}")
        store.append(full_lifecycle(W, d, previous, revision=i + 1))
        previous = d
    for i in range(5, 8):
        store.append([registered(W, digest_of(f"ret-{i}"))])
    keep = candidates_to_retain(store, W, 2)
    stables = {digest_of(f"ret-{i}") for i in range(5)}
    assert stables | {digest_of("ret-6"), digest_of("ret-7")} == keep
    new = events_after(store, 3, limit=2)
    assert [4, 5] == [e.seq for e in new]


def test_a_rule_decision_reads_the_projection_row_and_still_refuses(store: EventStore) -> None:
    v1 = DIGESTS[0]
    store.append_one(registered(W, v1))
    with pytest.raises(RuleViolation, match="needs stage 1"):
        store.append_one(stage_result(W, v1, 2, "pass"))
    store.append_one(stage2_rollback(W, v1, "blocked"))
    with pytest.raises(RuleViolation, match="blocked"):
        store.append_one(stage_started(W, v1, 1))
    assert_matches_replay(store, W, [])


def test_a_schema_2_ledger_file_opens_and_gets_its_projections(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = EventStore.open(url)
    times = scripted(store)
    expected = snapshot(store)
    store.close()
    # Make the file what the previous version wrote: no projection tables, schema version 2.
    con = sqlite3.connect(tmp_path / "old.db")
    for table in PROJECTION_TABLES:
        con.execute(f"DROP TABLE {table.name}")
    con.execute("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    reopened = EventStore.open(url)
    try:
        with reopened.reading("test") as conn:
            version = conn.execute(sa.text("SELECT value FROM ledger_meta")).scalar()
        assert str(SCHEMA_VERSION) == version == "3"
        assert expected == snapshot(reopened)
        assert_matches_replay(reopened, W, times)
        reopened.append_one(registered(W, digest_of("after-upgrade")))
        assert 5 == workload_status(reopened, W).candidate_count
    finally:
        reopened.close()


# -- random histories ---------------------------------------------------------------------------------

_OPS = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 2)),
    st.tuples(st.just("start"), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("result"), st.integers(0, 2), st.integers(1, 3), st.sampled_from(["pass", "fail"])),
    st.tuples(st.just("approve"), st.integers(0, 2), st.integers(2, 3), st.booleans()),
    st.tuples(st.just("revoke"), st.integers(0, 2), st.integers(2, 3)),
    st.tuples(st.just("emergency"), st.integers(0, 2), st.integers(1, 2)),
    st.tuples(st.just("promote"), st.integers(0, 2)),
    st.tuples(st.just("rollback"), st.sampled_from([None, 0, 1, 2, 3])),
    st.tuples(
        st.just("canary_rollback"),
        st.integers(0, 2),
        st.sampled_from([None, "returned-to-stage1", "blocked", "abandoned"]),
    ),
    st.tuples(st.just("note"), st.integers(0, 5)),
    st.tuples(st.just("fast"), st.integers(0, 2)),
    st.tuples(st.just("fast"), st.integers(0, 2)),
)


def _events(op: tuple[Any, ...], stable: str | None) -> list[NewEvent]:
    if op[0] == "fast":  # registration to a promotion in one go (random ops rarely get that far)
        d = DIGESTS[op[1]]
        return [
            registered(W, d),
            stage_result(W, d, 1, "pass"),
            stage_result(W, d, 2, "pass"),
            promotion(W, d, stable),
        ]
    return [_event(op, stable)]


def _event(op: tuple[Any, ...], stable: str | None) -> NewEvent:
    name, d = op[0], DIGESTS[op[1]] if isinstance(op[1], int) and op[0] != "note" else None
    if name == "register":
        return registered(W, d)  # type: ignore[arg-type]
    if name == "start":
        return stage_started(W, d, op[2])  # type: ignore[arg-type]
    if name == "result":
        return stage_result(W, d, op[2], op[3])  # type: ignore[arg-type]
    if name == "approve":
        return approval(W, d, op[2], retrospective=op[3])  # type: ignore[arg-type]
    if name == "revoke":
        return revoked(W, d, op[2])  # type: ignore[arg-type]
    if name == "emergency":
        return emergency(W, d, op[2])  # type: ignore[arg-type]
    if name == "promote":
        return promotion(W, d, stable)  # type: ignore[arg-type]
    if name == "rollback":
        return rollback_done(W, None if op[1] is None else DIGESTS[op[1]])
    if name == "canary_rollback":
        return stage2_rollback(W, d, op[2])  # type: ignore[arg-type]
    return note(W, op[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(ops=st.lists(_OPS, min_size=1, max_size=30), batch=st.integers(1, 3))
def test_random_histories_match_the_replay_and_rebuild_equals_incremental(
    ops: list[tuple[Any, ...]], batch: int
) -> None:
    store = EventStore.open("sqlite:///:memory:")
    try:
        times = []
        for i in range(0, len(ops), batch):
            stable = workload_status(store, W, limit=0).current_stable
            events = [ev for op in ops[i : i + batch] for ev in _events(op, stable)]
            try:
                store.append(events, now=T0 + timedelta(minutes=i))
            except RuleViolation:
                for ev in events:  # the batch was refused whole; try its events one by one
                    try:
                        store.append([ev], now=T0 + timedelta(minutes=i))
                    except RuleViolation:
                        pass
            times.append((T0 + timedelta(minutes=i, seconds=30)).isoformat())
        assert_matches_replay(store, W, times[:: max(1, len(times) // 4)])
        incremental = snapshot(store)
        store.rebuild_projections()
        assert incremental == snapshot(store)
    finally:
        store.close()
