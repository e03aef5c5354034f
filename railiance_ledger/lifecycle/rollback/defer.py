"""Deferring a rollback that needs a human decision (forward-only migrations)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import EventKind, NewEvent, format_timestamp
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import GateFailed
from railiance_ledger.lifecycle.rollback.model import RollbackOutcome, RollbackPlan
from railiance_ledger.lifecycle.rollback.plan import human_decision
from railiance_ledger.lifecycle.rollback.record import post_rollback_note

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort


def defer_rollback(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    plan: RollbackPlan,
    symptom: str,
    approval_id: str | None,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
) -> RollbackOutcome:
    """``rollback.deferred``: only with a human approval by another operator and a State Hub note."""

    workload = decl.workload.name
    hub = statehub
    grant = human_decision(
        store,
        workload,
        approval_id=approval_id,
        operator=operator,
        digest=plan.leaving_digest or "",
        after_seq=plan.leaving_seq,
        what="deferring a rollback",
    )
    if hub is None:
        raise GateFailed(
            "deferring a rollback requires a State Hub note, and no State Hub is configured",
            hint="set RAILIANCE_STATEHUB_URL, or roll back now",
        )
    payload = {
        "symptom": symptom,
        "reason": symptom,
        "requested_by": operator,
        "approved_by": grant.actor,
        "approval_id": grant.event_id,
        "current_stable": plan.leaving_digest,
        "rollback_target": plan.target.as_dict(),
        "at": format_timestamp(now()),
        "why": "the rollback is judged more dangerous than the incident state",
    }
    ev = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_DEFERRED,
                actor=operator,
                candidate=plan.leaving_digest,
                stage=3,
                payload=redact_value(payload),
            )
        ]
    )[0]
    warnings: list[str] = []
    note_id = post_rollback_note(
        store,
        hub,
        ev,
        decl,
        warnings,
        title=f"{workload}: rollback deferred (approved by {grant.actor})",
        body=(
            f"Symptom: {symptom}.\nRollback to {plan.target.text} deferred by {operator}, approved by "
            f"{grant.actor} (approval {grant.event_id}): the rollback is judged more dangerous than the "
            "incident state."
        ),
    )
    delivered = note_id is not None
    doc = {
        "kind": "railiance.rollback/v1",
        "workload": workload,
        "phase": "deferred",
        "status": "pass" if delivered else "fail",
        "symptom": symptom,
        "approval_id": grant.event_id,
        "approved_by": grant.actor,
        "rollback_target": plan.target.as_dict(),
        "statehub_note": note_id,
        "ledger": {"seq": ev.seq, "hash": ev.hash},
    }
    return RollbackOutcome(
        document=doc, exit_code=0 if delivered else 1, phase="deferred", events=[ev], warnings=warnings
    )
