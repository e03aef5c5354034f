"""The stage kit (``lifecycle.kit``), the candidate resolver, check guarding and waiver application,
against a real SQLite ledger and small declarations (no servers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.stage_result import CheckStatus, FailureKind
from railiance_ledger.domain.waiving import WaiverWording, apply_waivers, waive
from railiance_ledger.errors import AdapterError, GateFailed, InvalidDigest, InvalidInput, RuleViolation
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.candidates import resolve_candidate, select_candidate
from railiance_ledger.lifecycle.checks import (
    judge,
    judge_all_or_unevaluated,
    judge_or_unevaluated,
    make_check,
)
from railiance_ledger.lifecycle.kit import CallableClock, StageRun, clock_of
from railiance_ledger.ports import SystemClock
from tests.fixtures.ledger import approval, digest_of, image_of, registered

W = "hello-web"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


def decl(*, critical: bool = False) -> Any:
    """What the kit reads of a declaration."""
    return SimpleNamespace(
        workload=SimpleNamespace(name=W, repo="railiance-apps/hello-web"),
        image=SimpleNamespace(repository="registry.local/hello-web"),
        production_critical=critical,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield s
    finally:
        s.close()


def waiver(gate: str, digest: str, stage: int, *, operator: str = "bob") -> NewEvent:
    return NewEvent(
        stream=W,
        kind=EventKind.WAIVER_GRANTED,
        actor=operator,
        candidate=digest,
        stage=stage,
        payload={
            "gate": gate,
            "reason": "known flake",
            "scope": {"gate": gate, "candidate": digest, "stage": stage},
        },
    )


# ---------------------------------------------------------------------------------------- resolver


def test_resolver_names_the_newest_or_the_given_candidate(ledger: EventStore) -> None:
    a, b = digest_of("a"), digest_of("b")
    ledger.append([registered(W, a), registered(W, b)])
    history = ledger.read_stream(W)
    newest = resolve_candidate(history, W)
    assert (newest.digest, newest.image, newest.revision) == (b, image_of(b), "0" * 40)
    assert newest.repository == "registry.local/hello-web"
    assert resolve_candidate(history, W, image_of(a)).digest == a
    assert resolve_candidate(history, W, a).digest == a  # a bare digest names it too
    with pytest.raises(InvalidDigest):
        resolve_candidate(history, W, "registry.local/hello-web:latest")
    with pytest.raises(InvalidInput, match="is not registered"):
        resolve_candidate(history, W, digest_of("c"))


def test_resolver_with_nothing_registered(ledger: EventStore) -> None:
    assert select_candidate([], W) is None
    with pytest.raises(InvalidInput, match="no candidate is registered"):
        resolve_candidate([], W)


# ---------------------------------------------------------------------------------------- the run


def test_open_resolves_reads_and_takes_the_start_from_the_clock(ledger: EventStore) -> None:
    d = digest_of("a")
    ledger.append([registered(W, d)])
    clock = FixedClock(T0)
    run = StageRun.open(store=ledger, decl=decl(), operator="op", stage=2, clock=clock)
    assert (run.digest, run.image, run.stage, run.target_environment) == (d, image_of(d), 2, "canary")
    assert run.started_at == T0 + timedelta(seconds=1)
    assert len(run.history) == 1 and run.version == 1
    with pytest.raises(InvalidInput):
        StageRun.open(store=ledger, decl=decl(), operator="op", stage=2, image=digest_of("f"))


def test_started_then_completed_are_recorded_with_the_result(ledger: EventStore) -> None:
    d = digest_of("a")
    ledger.append([registered(W, d)])
    run = StageRun.open(store=ledger, decl=decl(), operator="op", stage=1, clock=FixedClock(T0))
    run.record_started({"stage": 1, "note": "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"})
    checks = [make_check("manifests_valid", True, "ok"), make_check("local_health", False, "503")]
    result = run.result(checks)
    assert result.status == "fail" and result.target_environment == "local"
    assert result.started_at == "2026-03-01T12:00:01.000000+00:00"
    assert result.finished_at == "2026-03-01T12:00:02.000000+00:00"
    assert result.approval.decision == "not required"
    done = run.complete(result)
    assert done.recorded and done.document["ledger"]["seq"] == done.event.seq  # type: ignore[union-attr]
    kinds = [ev.kind for ev in ledger.read_stream(W)]
    assert kinds == ["candidate.registered", "stage.started", "stage.completed"]
    assert [ev.kind for ev in run.events] == ["stage.started", "stage.completed"]
    assert "ghp_" not in str(run.events[0].payload)  # payloads pass the redaction path
    assert run.events[1].actor == "op" and run.events[1].stage == 1 and run.events[1].candidate == d


def test_complete_raises_a_refused_result(ledger: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused ``stage.completed`` is exit 3 (``RuleViolation``), never a warning."""
    d = digest_of("a")
    ledger.append([registered(W, d)])
    run = StageRun.open(store=ledger, decl=decl(), operator="op", stage=2)

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise RuleViolation("stage 2 needs a stage 1 pass")

    monkeypatch.setattr(ledger, "append", refuse)
    with pytest.raises(RuleViolation, match="stage 1 pass") as info:
        run.complete(run.result([make_check("x", True, "ok")]))
    assert info.value.exit_code == 3


def test_approval_in_force_and_the_result_model(ledger: EventStore) -> None:
    d = digest_of("a")
    ledger.append([registered(W, d), approval(W, d, 2, operator="alice"), approval(W, d, 3)])
    run = StageRun.open(store=ledger, decl=decl(critical=True), operator="op", stage=2)
    ev = run.approval_in_force()
    assert ev is not None and ev.stage == 2
    assert run.approval_model(ev).model_dump() == {
        "required": True,
        "decision": ev.event_id,
        "operator": "alice",
    }
    assert run.approval_model(None).decision == "missing"
    ledger.append(
        [NewEvent(stream=W, kind=EventKind.APPROVAL_REVOKED, actor="alice", candidate=d, stage=2, payload={})]
    )
    run.refresh()
    assert run.approval_in_force() is None
    not_critical = StageRun.open(store=ledger, decl=decl(), operator="op", stage=2)
    assert not_critical.approval_model(ev).decision == "not required"


def test_waivers_of_the_run_stage_only(ledger: EventStore) -> None:
    d = digest_of("a")
    ledger.append([registered(W, d), waiver("canary_health", d, 2), waiver("local_health", d, 1)])
    run = StageRun.open(store=ledger, decl=decl(), operator="op", stage=2)
    assert set(run.waivers()) == {"canary_health"}
    empty = StageRun.for_workload(store=ledger, decl=decl(), operator="op", stage=3)
    assert empty.digest is None and empty.waivers() == {}
    with pytest.raises(ValueError):
        empty.started_event({})


def test_clocks() -> None:
    assert isinstance(clock_of(None), SystemClock)
    assert clock_of(lambda: T0).now() == T0
    fixed = FixedClock(T0)
    assert clock_of(fixed) is fixed
    assert CallableClock(lambda: T0).now() == T0


# ---------------------------------------------------------------------------------------- checks


def test_judge_classifies_errors_by_type() -> None:
    def raising(exc: Exception) -> Any:
        def fn() -> Any:
            raise exc

        return fn

    adapter = judge("g", raising(AdapterError("refused", system="kube", operation="get")))
    assert (adapter.status, adapter.failure) == (CheckStatus.FAIL, FailureKind.TECHNICAL)
    refused = judge("g", raising(GateFailed("no")))
    assert refused.failure == FailureKind.POLICY and refused.reason == "no"
    crash = judge("g", raising(KeyError("x")))
    assert crash.failure == FailureKind.TECHNICAL and crash.reason.startswith("KeyError")
    assert judge("g", lambda: make_check("g", True, "ok")).status == CheckStatus.PASS


def test_judge_or_unevaluated_makes_every_error_technical() -> None:
    def gate() -> Any:
        raise GateFailed("no")

    c = judge_or_unevaluated("g", gate)
    assert (c.failure, c.reason) == (FailureKind.TECHNICAL, "could not be evaluated: no")

    def boom() -> Any:
        raise RuntimeError("x" * 1000)

    c = judge_or_unevaluated("g", boom)
    assert c.reason.startswith("could not be evaluated: RuntimeError: ") and c.reason.endswith("[...]")
    [c] = judge_all_or_unevaluated("local_check:*", "local checks", boom)
    assert c.name == "local_check:*" and c.reason.startswith("local checks could not be run: RuntimeError")


# ---------------------------------------------------------------------------------------- waivers


def test_waive_wordings(ledger: EventStore) -> None:
    d = digest_of("a")
    ledger.append([registered(W, d), waiver("local_health", d, 1)])
    w = ledger.read_stream(W)[-1]
    failed = make_check("local_health", False, "503", technical=True)
    first = waive(failed, w, wording=WaiverWording.WAIVER_FIRST)
    assert (first.status, first.waiver, first.failure) == (
        CheckStatus.WAIVED,
        w.event_id,
        FailureKind.TECHNICAL,
    )
    assert first.reason == "waived by bob: known flake (was: 503)"
    second = waive(failed, w, wording=WaiverWording.CHECK_FIRST)
    assert (second.status, second.failure) == (CheckStatus.WAIVED, None)
    assert second.reason == f"503 (waived by bob, event {w.event_id})"
    passed = make_check("local_health", True, "200")
    assert waive(passed, w, wording=WaiverWording.WAIVER_FIRST) is passed
    out = apply_waivers([failed, make_check("other", False, "no")], {"local_health": w})
    assert [c.status for c in out] == [CheckStatus.WAIVED, CheckStatus.FAIL]
