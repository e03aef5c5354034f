"""The decisions the gate and guard sensors ask the lifecycle for, against a real SQLite ledger.

No Dagster and no servers: ``lifecycle.gating.next_stage_requests``, ``open_canary`` and
``lifecycle.guard.rollback_conditions`` read the ledger through the candidate-state fold and answer
in milliseconds. The sensors that turn these answers into run requests are tested in
``tests/test_dagster_sensors.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from railiance_ledger.declaration.loader import load_declaration
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.ledger.projections import partition_key
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.gating import next_stage_requests, open_canary
from railiance_ledger.lifecycle.guard import rollback_conditions
from tests.fixtures.ledger import approval, digest_of, registered, stage_result, stage_started

ROOT = Path(__file__).resolve().parents[1]
W = "hello-web"
D = digest_of("v1")
KEY = partition_key(W, D)


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[EventStore]:
    store = EventStore.open(sqlite_url)
    try:
        yield store
    finally:
        store.close()


def append(store: EventStore, *events: NewEvent) -> list[RecordedEvent]:
    return store.append(list(events))


def decide(
    store: EventStore, events: list[RecordedEvent], *, critical: bool = False, promote: bool = True
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    decls: dict[str, Any] = {W: SimpleNamespace(production_critical=critical)}
    go, held = next_stage_requests(store, events, decls, promote_available=promote)
    return [(n.job, n.run_key) for n in go], [(h.job, h.reason) for h in held]


def revoked(digest: str, stage: int, *, operator: str = "carol") -> NewEvent:
    return NewEvent(
        stream=W,
        kind=EventKind.APPROVAL_REVOKED,
        actor=operator,
        candidate=digest,
        stage=stage,
        payload={"operator": operator, "reason": "second thoughts"},
    )


def test_stage1_pass_requests_the_canary_once_stage2_never_started(ledger: EventStore) -> None:
    """Stage 1 passed and Stage 2 never started: one ``canary`` run for that digest."""
    events = append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))

    assert ([("canary", f"{KEY}:canary")], []) == decide(ledger, events)


def test_a_failed_stage1_requests_nothing(ledger: EventStore) -> None:
    """A failing Stage 1 result is not an upstream pass: no run, nothing held."""
    events = append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "fail"))

    assert ([], []) == decide(ledger, events)


def test_production_critical_canary_waits_for_a_stage2_approval_in_force(ledger: EventStore) -> None:
    """Production-critical: held until a stage 2 approval is granted, and held again once it is revoked."""
    first = append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))
    held = ("canary", "production-critical: waiting for an approval.granted for stage 2")
    assert ([], [held]) == decide(ledger, first, critical=True)

    granted = append(ledger, approval(W, D, 2, operator="bob"))
    assert ([("canary", f"{KEY}:canary")], []) == decide(ledger, granted, critical=True)

    append(ledger, revoked(D, 2))
    assert ([], [held]) == decide(ledger, granted, critical=True)


def test_open_canary_requests_observe_per_deployment_then_accepted_canary_requests_promote(
    ledger: EventStore,
) -> None:
    """A deployed canary (window open) -> ``observe`` keyed by its stage.started; accepted -> ``promote``."""
    append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))
    [started] = append(ledger, stage_started(W, D, 2))

    assert started == open_canary(ledger.read_stream(W), D)
    assert ([("observe", f"{KEY}:observe:{started.seq}")], []) == decide(ledger, [started])

    [accepted] = append(ledger, stage_result(W, D, 2, "pass"))
    assert open_canary(ledger.read_stream(W)) is None
    assert ([("promote", f"{KEY}:promote")], []) == decide(ledger, [accepted])
    assert ([], [("promote", "the Stage 3 service is not available yet")]) == decide(
        ledger, [accepted], promote=False
    )

    [promoting] = append(ledger, stage_started(W, D, 3))
    assert ([], []) == decide(ledger, [promoting])


def test_undeclared_workload_is_held_with_the_reason(ledger: EventStore) -> None:
    """A candidate of a workload with no declaration under the apps directory is held, never run."""
    events = append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))

    go, held = next_stage_requests(ledger, events, {})

    assert ([], [f"{W} is not declared under the apps directory"]) == (go, [h.reason for h in held])


def test_guard_reports_a_revocation_only_while_the_canary_window_is_open(ledger: EventStore) -> None:
    """An approval revoked during the observation window is an immediate-rollback condition; after the
    window closed it is not."""
    decls: dict[str, Any] = {W: load_declaration(ROOT / "examples" / W)}
    append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))
    append(ledger, approval(W, D, 2, operator="bob"), stage_started(W, D, 2))
    [revocation] = append(ledger, revoked(D, 2))

    [condition] = rollback_conditions(ledger, [revocation], decls)
    assert (W, D, KEY, revocation.seq) == (
        condition.workload,
        condition.digest,
        condition.partition_key,
        condition.seq,
    )
    assert "approval revoked by carol" in condition.reason

    append(ledger, stage_result(W, D, 2, "fail"))
    assert [] == rollback_conditions(ledger, [revocation], decls)


def test_a_stage1_pass_of_one_digest_never_requests_another_digests_canary(ledger: EventStore) -> None:
    """Digest X passed Stage 1 and digest Y failed: X's canary only."""
    y = digest_of("v2")
    events = append(
        ledger,
        registered(W, D),
        registered(W, y),
        stage_started(W, D, 1),
        stage_result(W, D, 1, "pass"),
        stage_started(W, y, 1),
        stage_result(W, y, 1, "fail"),
    )

    assert ([("canary", f"{KEY}:canary")], []) == decide(ledger, events)


def test_guard_ignores_a_revocation_when_no_canary_was_deployed(ledger: EventStore) -> None:
    """No open canary: a revocation is not an immediate-rollback condition."""
    decls: dict[str, Any] = {W: load_declaration(ROOT / "examples" / W)}
    append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))
    events = append(ledger, approval(W, D, 2, operator="bob"), revoked(D, 2))

    assert [] == rollback_conditions(ledger, events, decls)


def test_guard_reports_a_canary_sample_naming_an_immediate_rollback_symptom(ledger: EventStore) -> None:
    """A sample with secret material in the canary's logs, during the window: an immediate rollback."""
    from railiance_ledger.domain import canary as dc

    decls: dict[str, Any] = {W: load_declaration(ROOT / "examples" / W)}
    sample = dc.CanarySample(
        index=0, at="2026-01-01T00:00:00+00:00", logs=dc.LogScan(secret_kinds={"github-token": 1})
    ).to_payload()
    append(ledger, registered(W, D), stage_started(W, D, 1), stage_result(W, D, 1, "pass"))
    append(ledger, stage_started(W, D, 2))
    [observed] = append(
        ledger,
        NewEvent(
            stream=W, kind=EventKind.CANARY_SAMPLE, actor="dagster", candidate=D, stage=2, payload=sample
        ),
    )

    [condition] = rollback_conditions(ledger, [observed], decls)

    assert (KEY, observed.seq) == (condition.partition_key, condition.seq)
    assert "secret" in condition.reason
