"""Stage 3 prechecks that only need a decision: judged on a declaration and a ledger history in memory,
without Kubernetes, helm, a registry or a ledger server (milliseconds each; the backup check runs one
``sh -c echo``).

``tests/test_stage3_promote.py`` runs the whole promotion against real things (and pins that nothing
changes in production when a precheck fails); the cases here pin each precheck's verdict.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from railiance_ledger.declaration import load_declaration
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import CheckStatus
from railiance_ledger.lifecycle.kit import StageRun
from railiance_ledger.lifecycle.stage3.context import PromotionContext
from railiance_ledger.lifecycle.stage3.prechecks import check_backup, check_stage2, check_statehub
from tests.fixtures.stage1 import EXAMPLE

W = "hello-web"
D = "sha256:" + "1" * 64
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event(seq: int, kind: str, payload: dict[str, Any], stage: int | None = None) -> RecordedEvent:
    return RecordedEvent(
        seq=seq,
        event_id=f"ev-{seq}",
        stream=W,
        version=seq,
        kind=kind,
        candidate=D,
        stage=stage,
        actor="op",
        recorded_at="2026-03-01T00:00:00.000000+00:00",
        payload=payload,
        prev_hash="0" * 64,
        hash=f"{seq:064x}",
    )


def context(history: list[RecordedEvent], *, decl: Any = None) -> PromotionContext:
    """A Stage 3 context on the example declaration for candidate ``D`` with ``history``."""
    run = StageRun(
        store=None,  # type: ignore[arg-type]  # decisions never touch the store
        decl=decl if decl is not None else load_declaration(EXAMPLE),
        operator="alice",
        stage=3,
        clock=None,  # type: ignore[arg-type]
        history=history,
        started_at=T0,
        digest=D,
        image=f"registry.local/railiance/hello-web@{D}",
    )
    return PromotionContext(run=run, namespace="hello-web", release="hello-web", home=None)


def stage2(seq: int, status: str) -> RecordedEvent:
    return event(seq, EventKind.STAGE_COMPLETED, {"status": status}, stage=2)


def test_stage2_accepted_needs_a_passing_stage2_result_for_the_same_digest() -> None:
    """No Stage 2 result, or a failing one: the promotion is refused; a passing one is the evidence."""
    assert (CheckStatus.FAIL, f"no Stage 2 result for {D} (the same digest)") == (
        (c := check_stage2(context([]))).status,
        c.reason,
    )
    assert CheckStatus.FAIL == check_stage2(context([stage2(1, "fail")])).status
    ctx = context([stage2(1, "fail"), stage2(2, "pass")])
    assert CheckStatus.PASS == check_stage2(ctx).status
    assert ctx.stage2_result is not None and 2 == ctx.stage2_result.seq


@pytest.mark.parametrize("fate", ["blocked", "abandoned"])
def test_stage2_accepted_refuses_a_candidate_a_rollback_blocked_or_abandoned(fate: str) -> None:
    """A rollback that blocked or abandoned the candidate outweighs an earlier Stage 2 acceptance."""
    history = [stage2(1, "pass"), event(2, EventKind.ROLLBACK_COMPLETED, {"candidate_fate": fate}, stage=3)]
    c = check_stage2(context(history))
    assert (CheckStatus.FAIL, True) == (c.status, f"was {fate} by rollback ev-2" in c.reason)


def test_stage2_accepted_predating_a_stage3_rollback_needs_new_results() -> None:
    """Returned to Stage 1 by a Stage 3 rollback: the old Stage 2 acceptance no longer counts."""
    history = [
        stage2(1, "pass"),
        event(2, EventKind.ROLLBACK_COMPLETED, {"candidate_fate": "returned-to-stage1"}, stage=3),
    ]
    c = check_stage2(context(history))
    assert (CheckStatus.FAIL, True) == (c.status, "predates its rollback ev-2" in c.reason)


def test_stage2_accepted_by_an_emergency_exception_skipping_stage2() -> None:
    """A recorded emergency exception skipping Stage 2 stands in for the acceptance (retrospective approval due)."""
    history = [event(1, EventKind.EXCEPTION_EMERGENCY, {"skip_stage": 2, "reason": "outage"})]
    c = check_stage2(context(history))  # the exception never reached State Hub: it does not unlock Stage 3
    assert (CheckStatus.FAIL, True) == (c.status, "not recorded in State Hub" in c.reason)
    history.append(
        event(2, EventKind.NOTE_POSTED, {"ref_event_id": "ev-1", "delivered": True, "note_id": "n"})
    )
    ctx = context(history)
    c = check_stage2(ctx)
    assert (CheckStatus.PASS, True) == (c.status, "emergency exception ev-1" in c.reason)
    assert ctx.exception is not None


def stateful(echo: str, max_age: str | None = "24h") -> Any:
    """The example declaration made stateful, its backup check printing ``echo``."""
    decl = load_declaration(EXAMPLE)
    fields: dict[str, Any] = {"stateful": True, "check": ["sh", "-c", f"echo {echo}"]}
    fields["max_age"] = None if max_age is None else 86400
    return decl.model_copy(update={"backup": decl.backup.model_copy(update=fields)})


@pytest.mark.parametrize(
    ("echo", "status", "reason_part"),
    [
        ("age_seconds=90000", CheckStatus.FAIL, "older than backup.max_age 86400s"),
        ("age_seconds=600", CheckStatus.PASS, "latest backup 600s old"),
        ("last_backup=2026-02-28T23:00:00+00:00", CheckStatus.PASS, "latest backup 3600s old"),
        ("done", CheckStatus.FAIL, "stated no backup age"),
    ],
)
def test_backup_posture_current_judges_the_stated_backup_age(
    echo: str, status: CheckStatus, reason_part: str
) -> None:
    """Stateful: the backup check must exit 0 and state an age within ``backup.max_age``."""
    c = check_backup(context([], decl=stateful(echo)), T0)
    assert (status, True) == (c.status, reason_part in c.reason), c.reason


def test_backup_posture_current_passes_for_a_workload_that_is_not_stateful() -> None:
    """Nothing stateful: no backup posture to check."""
    assert CheckStatus.PASS == check_backup(context([]), T0).status


def test_statehub_configured_fails_without_a_state_hub_unless_a_stage3_waiver_names_the_note() -> None:
    """No State Hub: production does not change, unless a stage 3 ``statehub_note`` waiver says so."""
    c = check_statehub(context([]), None)
    assert (CheckStatus.FAIL, True) == (c.status, "no State Hub configured" in c.reason)
    waiver = event(1, EventKind.WAIVER_GRANTED, {"gate": "statehub_note", "reason": "INC-42"}, stage=3)
    c = check_statehub(context([waiver]), None)
    assert (CheckStatus.WAIVED, "ev-1") == (c.status, c.waiver), c.reason
