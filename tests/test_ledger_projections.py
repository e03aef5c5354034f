"""Read-side projections on both backends: status, history, lineage, rollback target, partition keys."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.errors import LedgerError
from railiance_ledger.ledger.projections import (
    candidates,
    history,
    lineage,
    partition_key,
    resolve_partition_key,
    rollback_target,
    workload_status,
)
from railiance_ledger.ledger.store import EventStore
from tests.fixtures.ledger import (
    approval,
    digest_of,
    emergency,
    full_lifecycle,
    image_of,
    note,
    registered,
    rollback_done,
    stage_result,
    stage_started,
)

W = "hello-web"
V1, V2, V3, V4 = (digest_of(f"v{i}") for i in range(1, 5))
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def _three_promotions_then_rollback(store: EventStore) -> None:
    store.append(full_lifecycle(W, V1, None, revision=1), now=T0)
    store.append(full_lifecycle(W, V2, V1, revision=2), now=T0 + timedelta(hours=1))
    store.append(full_lifecycle(W, V3, V2, revision=3), now=T0 + timedelta(hours=2))
    store.append_one(rollback_done(W, V2))


def test_lineage_after_v1_v2_v3_and_a_rollback_names_v2_stable_and_v1_target(store: EventStore) -> None:
    _three_promotions_then_rollback(store)
    lin = lineage(store, W)
    assert lin.current_stable is not None and V2 == lin.current_stable.digest
    assert (V1, V2) == lin.stack
    assert ["superseded", "current", "rolled-back"] == [s.state for s in lin.stables]
    target = lin.rollback_target
    assert target is not None
    assert (V1, image_of(V1), 1, "prod") == (
        target.digest,
        target.image,
        target.restore["helm_revision"],
        target.restore["namespace"],
    )
    assert target.known and target.promotion_event_id is not None
    assert ["alice"] == [a.operator for a in target.approvals]
    assert 1 == len(lin.rollbacks) and (V3, V2) == (
        lin.rollbacks[0].from_stable,
        lin.rollbacks[0].final_stable,
    )
    assert target == rollback_target(store, W)
    json.dumps(lin.as_dict())


def test_lineage_before_the_rollback_names_v3_stable_and_v2_target(store: EventStore) -> None:
    _three_promotions_then_rollback(store)
    lin = lineage(store, W, at=(T0 + timedelta(hours=2, minutes=30)).isoformat())
    assert lin.current_stable is not None and V3 == lin.current_stable.digest
    assert lin.rollback_target is not None and V2 == lin.rollback_target.digest
    assert 2 == lin.rollback_target.restore["helm_revision"]


def test_lineage_at_a_past_instant_returns_the_past_stable(store: EventStore) -> None:
    _three_promotions_then_rollback(store)
    lin = lineage(store, W, at=(T0 + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"))
    assert lin.current_stable is not None and V1 == lin.current_stable.digest
    assert lin.rollback_target is None
    assert lineage(store, W, at="2020-01-01T00:00:00").current_stable is None


def test_first_stable_rolls_back_to_the_pre_ledger_digest_only(store: EventStore) -> None:
    old = digest_of("pre-ledger")
    store.append(full_lifecycle(W, V1, old))
    target = rollback_target(store, W)
    assert target is not None
    assert (old, False, "digest-only") == (target.digest, target.known, target.kind)


def test_unknown_workload_has_empty_projections(store: EventStore) -> None:
    assert rollback_target(store, "nobody") is None
    status = workload_status(store, "nobody")
    assert ((), None) == (status.candidates, status.current_stable)
    assert [] == history(store, "nobody")


def test_status_labels_each_candidate_and_lists_stables(store: EventStore) -> None:
    _three_promotions_then_rollback(store)
    store.append([registered(W, V4), stage_started(W, V4, 1), stage_result(W, V4, 1, "pass")])
    status = workload_status(store, W)
    labels = {c.digest: c.state for c in status.candidates}
    assert {
        V1: "superseded",
        V2: "stable",
        V3: "rolled-back",
        V4: "stage1:pass (eligible for Stage 2 review)",
    } == labels
    assert V2 == status.current_stable
    assert (V1,) == status.earlier_stables
    v4 = status.candidate(V4)
    assert v4 is not None
    assert (image_of(V4), "sensor", "pass", None) == (
        v4.image,
        v4.registered_by,
        v4.stage_status(1),
        v4.stage_status(2),
    )
    assert not v4.has_approvals and status.candidate(V1).has_approvals  # type: ignore[union-attr]
    assert [(V4, 2)] == [(p.digest, p.stage) for p in status.pending_approvals]
    assert f"{W}@{V4[7:19]}" == v4.partition_key
    json.dumps(status.as_dict())
    assert [c.digest for c in status.candidates] == [c.digest for c in candidates(store, W)]


def test_status_shows_failures_running_stages_and_approvals_clearing_pending(store: EventStore) -> None:
    a, b, c, d = digest_of("a"), digest_of("b"), digest_of("c"), digest_of("d")
    store.append(
        [
            registered(W, a),
            stage_result(W, a, 1, "pass"),
            stage_started(W, a, 2),
            stage_result(W, a, 2, "fail"),
        ]
    )
    store.append([registered(W, b), stage_result(W, b, 1, "pass"), stage_started(W, b, 2)])
    store.append([registered(W, c), stage_result(W, c, 1, "pass"), approval(W, c, 2)])
    store.append([registered(W, d), stage_result(W, d, 1, "pass"), stage_result(W, d, 2, "pass")])
    status = workload_status(store, W)
    assert [
        "stage2:fail",
        "stage2:running",
        "stage1:pass (eligible for Stage 2 review)",
        "stage2:pass (eligible for Stage 3 promotion)",
    ] == [x.state for x in status.candidates]
    assert [(d, 3)] == [(p.digest, p.stage) for p in status.pending_approvals]
    assert status.candidate(c).has_approvals  # type: ignore[union-attr]


def test_emergency_exception_awaits_retrospective_approval_until_one_is_recorded(store: EventStore) -> None:
    store.append([registered(W, V1), emergency(W, V1, skip_stage=1), stage_started(W, V1, 2)])
    status = workload_status(store, W)
    assert [(V1, 1)] == [(e.digest, e.skip_stage) for e in status.awaiting_retrospective]
    store.append_one(approval(W, V1, 2, operator="bob"))  # not retrospective: still awaiting
    assert 1 == len(workload_status(store, W).awaiting_retrospective)
    store.append_one(approval(W, V1, 2, operator="bob", retrospective=True))
    status = workload_status(store, W)
    assert () == status.awaiting_retrospective
    assert status.candidate(V1).exceptions[0].retrospectively_approved  # type: ignore[union-attr]


def test_history_returns_the_stream_in_order_and_limit_keeps_the_latest(store: EventStore) -> None:
    store.append([note(W, i) for i in range(10)])
    store.append_one(note("other", 0))
    assert list(range(10)) == [e.payload["i"] for e in history(store, W)]
    assert [7, 8, 9] == [e.payload["i"] for e in history(store, W, limit=3)]


def test_partition_key_resolves_to_the_full_digest(store: EventStore) -> None:
    store.append([registered(W, V1), registered(W, V2)])
    assert V1 == resolve_partition_key(store, partition_key(W, V1))
    with pytest.raises(LedgerError, match="no registered candidate"):
        resolve_partition_key(store, f"{W}@{'f' * 12}")
    with pytest.raises(LedgerError, match="not of the form"):
        resolve_partition_key(store, "hello-web@XYZ")


def test_partition_key_collision_is_refused_listing_both_digests(store: EventStore) -> None:
    first = "sha256:" + "abcdef012345" + "0" * 52
    second = "sha256:" + "abcdef012345" + "1" * 52
    store.append([registered(W, first), registered(W, second)])
    with pytest.raises(LedgerError, match="ambiguous") as info:
        resolve_partition_key(store, f"{W}@abcdef012345")
    assert first in str(info.value) and second in str(info.value)


def test_status_query_stays_fast_on_a_busy_workload(store: EventStore) -> None:
    """Smoke check only (budgets are measured by bench/ledger.py): 40 lifecycles, 300 samples."""
    previous = None
    for i in range(40):
        d = digest_of(f"busy-{i}")
        store.append(full_lifecycle(W, d, previous, revision=i))
        previous = d
    started = time.perf_counter()
    for _ in range(5):
        workload_status(store, W)
        rollback_target(store, W)
    assert time.perf_counter() - started < 5


def test_stage2_canary_rollback_leaves_the_stable_lineage_unchanged(store: EventStore) -> None:
    """Removing a canary (a rollback recorded at stage 2) never changes what is stable in production."""
    store.append(full_lifecycle(W, V1, None, revision=1), now=T0)
    store.append(
        [registered(W, V2), stage_started(W, V2, 1), stage_result(W, V2, 1, "pass"), stage_started(W, V2, 2)]
    )
    store.append_one(
        NewEvent(
            stream=W,
            kind=EventKind.ROLLBACK_COMPLETED,
            actor="observer",
            candidate=V2,
            stage=2,
            payload={"symptom": "error rate", "final_stable": None},
        )
    )
    lin = lineage(store, W)
    assert (V1, "rolled-back") == (lin.current_stable.digest, workload_status(store, W).candidate(V2).state)


def test_pending_approvals_list_only_candidates_whose_declaration_requires_one(store: EventStore) -> None:
    """A registration that says approval is not required is not listed as awaiting one; older ones are."""
    plain = NewEvent(
        stream=W,
        kind=EventKind.CANDIDATE_REGISTERED,
        actor="sensor",
        candidate=V1,
        payload={"image": image_of(V1), "approval_required": False},
    )
    store.append([plain, stage_started(W, V1, 1), stage_result(W, V1, 1, "pass")])
    store.append([registered(W, V2), stage_started(W, V2, 1), stage_result(W, V2, 1, "pass")])
    pending = {p.digest for p in workload_status(store, W).pending_approvals}
    assert {V2} == pending


def test_a_revoked_retrospective_approval_leaves_the_emergency_awaiting_again(store: EventStore) -> None:
    """Status and the approvals service agree: only a retrospective approval still in force covers it."""
    store.append([registered(W, V1), emergency(W, V1, skip_stage=1), stage_started(W, V1, 2)])
    [granted] = store.append([approval(W, V1, 2, operator="bob", retrospective=True)])
    assert () == workload_status(store, W).awaiting_retrospective
    store.append_one(
        NewEvent(
            stream=W,
            kind=EventKind.APPROVAL_REVOKED,
            actor="carol",
            candidate=V1,
            stage=2,
            payload={"approval_event_id": granted.event_id, "reason": "evidence was wrong"},
        )
    )
    assert [V1] == [e.digest for e in workload_status(store, W).awaiting_retrospective]
