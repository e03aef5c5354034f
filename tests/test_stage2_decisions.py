"""Stage 2 prechecks that only need a decision: judged on a declaration and a ledger history in memory,
without Kubernetes, helm, a registry, Prometheus or a ledger server (milliseconds each).

``tests/test_stage2*.py`` run the whole canary against real things; the sample and window gates are
pure already (``tests/test_canary_domain.py``). The cases here pin the history-only prechecks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from railiance_ledger.declaration import load_declaration
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import CheckStatus
from railiance_ledger.lifecycle.kit import StageRun
from railiance_ledger.lifecycle.stage2.context import CanaryContext
from railiance_ledger.lifecycle.stage2.prechecks import check_approval, check_references, check_stage1
from tests.fixtures.stage1 import EXAMPLE

W = "hello-web"
D = "sha256:" + "2" * 64
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event(
    seq: int, kind: str, payload: dict[str, Any], stage: int | None = None, actor: str = "op"
) -> RecordedEvent:
    return RecordedEvent(
        seq=seq,
        event_id=f"ev-{seq}",
        stream=W,
        version=seq,
        kind=kind,
        candidate=D,
        stage=stage,
        actor=actor,
        recorded_at="2026-03-01T00:00:00.000000+00:00",
        payload=payload,
        prev_hash="0" * 64,
        hash=f"{seq:064x}",
    )


def context(history: list[RecordedEvent], *, critical: bool = False) -> CanaryContext:
    """A Stage 2 context on the example declaration (``critical``: production-critical) for ``D``."""
    decl = load_declaration(EXAMPLE)
    if critical:
        decl = decl.model_copy(update={"workload": decl.workload.model_copy(update={"critical": True})})
    run = StageRun(
        store=None,  # type: ignore[arg-type]  # decisions never touch the store
        decl=decl,
        operator="alice",
        stage=2,
        clock=None,  # type: ignore[arg-type]
        history=history,
        started_at=T0,
        digest=D,
        image=f"registry.local/railiance/hello-web@{D}",
    )
    return CanaryContext(
        run=run,
        namespace="hello-web",
        release="hello-web-canary",
        stable_release="hello-web",
        stable_namespace="hello-web",
        waivers={},
    )


def test_stage1_passed_needs_a_passing_stage1_result_or_an_emergency_exception() -> None:
    """The same digest must have passed Stage 1 (latest result), or skipped it by a recorded exception."""
    assert CheckStatus.FAIL == check_stage1(context([])).status
    passed = event(1, EventKind.STAGE_COMPLETED, {"status": "pass"}, stage=1)
    assert CheckStatus.PASS == check_stage1(context([passed])).status
    failed_after = event(2, EventKind.STAGE_COMPLETED, {"status": "fail"}, stage=1)
    assert CheckStatus.FAIL == check_stage1(context([passed, failed_after])).status
    skipped = event(1, EventKind.EXCEPTION_EMERGENCY, {"skip_stage": 1, "reason": "outage"})
    c = check_stage1(context([skipped]))  # the exception is not in State Hub: it does not unlock Stage 2
    assert (CheckStatus.FAIL, True) == (c.status, "not recorded in State Hub" in c.reason)
    noted = event(2, EventKind.NOTE_POSTED, {"ref_event_id": "ev-1", "delivered": True, "note_id": "n-1"})
    c = check_stage1(context([skipped, noted]))
    assert (CheckStatus.PASS, True) == (c.status, "emergency exception" in c.reason)


def test_operator_approval_is_not_required_for_a_workload_that_is_not_production_critical() -> None:
    """Not production-critical: the gate passes without any approval."""
    c = check_approval(context([]))
    assert (CheckStatus.PASS, True) == (c.status, "not required" in c.reason)


def test_operator_approval_needs_an_approval_in_force_for_stage2_when_production_critical() -> None:
    """Production-critical: an ``approval.granted`` for stage 2 and this digest, not revoked since."""
    assert CheckStatus.FAIL == check_approval(context([], critical=True)).status
    unsigned = event(1, EventKind.APPROVAL_GRANTED, {"stage": 2, "operator": "bob"}, stage=2, actor="bob")
    c = check_approval(context([unsigned], critical=True))  # an unsigned approval does not count
    assert (CheckStatus.FAIL, True) == (c.status, "no signature" in c.reason)
    signed = {"stage": 2, "operator": "bob", "signature": {"principal": "bob"}}
    grant = event(1, EventKind.APPROVAL_GRANTED, signed, stage=2, actor="bob")
    c = check_approval(context([grant], critical=True))  # never noted in State Hub: blocks
    assert (CheckStatus.FAIL, True) == (c.status, "not recorded in State Hub" in c.reason)
    noted = event(2, EventKind.NOTE_POSTED, {"ref_event_id": "ev-1", "delivered": True, "note_id": "n-1"})
    ctx = context([grant, noted], critical=True)
    c = check_approval(ctx)
    assert (CheckStatus.PASS, "approved by bob (event ev-1)") == (c.status, c.reason)
    assert ctx.approval_event is not None and "ev-1" == ctx.approval_event.event_id
    revoked = event(3, EventKind.APPROVAL_REVOKED, {"stage": 2, "approval_id": "ev-1"}, stage=2, actor="bob")
    assert CheckStatus.FAIL == check_approval(context([grant, noted, revoked], critical=True)).status


def test_declared_references_fails_closed_without_rendered_manifests() -> None:
    """Nothing rendered to inspect: the references cannot be shown to be declared."""
    c = check_references(context([]))
    assert (CheckStatus.FAIL, "no rendered manifests to inspect") == (c.status, c.reason)


def _rolled_back(seq: int, fate: str | None) -> RecordedEvent:
    payload: dict[str, Any] = {"payload_version": 2, "final_stable": None}
    if fate is not None:
        payload["candidate_fate"] = fate
    return event(seq, EventKind.ROLLBACK_COMPLETED, payload, stage=2)


def test_stage1_passed_is_the_ledger_rule_a_rollback_resets_it() -> None:
    """One definition (issue 11): the precheck refuses exactly when the ledger would refuse
    ``stage.started`` for Stage 2, so a canary is never installed and then left unrecorded."""
    from railiance_ledger.domain.events import NewEvent
    from railiance_ledger.domain.rules import RuleBroken, check_append

    registered = event(1, EventKind.CANDIDATE_REGISTERED, {"image": "x", "digest": D})
    passed = event(2, EventKind.STAGE_COMPLETED, {"status": "pass", "candidate": {"digest": D}}, stage=1)
    start2 = NewEvent(stream=W, kind=EventKind.STAGE_STARTED, actor="op", candidate=D, stage=2, payload={})
    cases = {
        "passed": ([registered, passed], True),
        "returned to stage 1": ([registered, passed, _rolled_back(3, "returned-to-stage1")], False),
        "blocked": ([registered, passed, _rolled_back(3, "blocked")], False),
        "abandoned": ([registered, passed, _rolled_back(3, "abandoned")], False),
        "passed again after the rollback": (
            [
                registered,
                passed,
                _rolled_back(3, "returned-to-stage1"),
                event(4, EventKind.STAGE_COMPLETED, {"status": "pass"}, stage=1),
            ],
            True,
        ),
    }
    for name, (history, ok) in cases.items():
        check = check_stage1(context(history))
        try:
            check_append(list(history), start2)
            rule_ok = True
        except RuleBroken:
            rule_ok = False
        assert (check.status == CheckStatus.PASS, rule_ok) == (ok, ok), (name, check.reason)
    blocked = check_stage1(context(cases["blocked"][0]))
    assert "blocked" in blocked.reason
    returned = check_stage1(context(cases["returned to stage 1"][0]))
    assert "run Stage 1 again" in returned.reason
