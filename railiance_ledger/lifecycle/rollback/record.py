"""Recording a rollback (``rollback.completed``) and its State Hub note."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.payloads import RollbackCompleted
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.lifecycle.notes import post_and_record
from railiance_ledger.lifecycle.rollback.model import FATE_TEXT, RollbackOutcome, RollbackPlan

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort


def complete_rollback(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    plan: RollbackPlan,
    symptom: str,
    fate: str,
    action: str,
    failures: list[str],
    cleanup: list[str],
    verification: dict[str, Any],
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    events: list[RecordedEvent],
    strategy: str,
    stage: int,
) -> RollbackOutcome:
    workload = decl.workload.name
    ok = not failures and bool(verification.get("ok"))
    if not verification.get("ok"):
        cleanup.append("the rollback verification failed: investigate before trusting the restored stable")
    if failures:
        cleanup.append("retry the failed rollback steps: " + "; ".join(failures))
    target = plan.target
    payload = {
        "symptom": symptom,
        "reason": symptom,
        "action": action,
        "strategy": strategy,
        "from_stable": plan.leaving_digest,
        "final_stable": target.digest,
        "final_image": target.image,
        "restore": target.as_dict(),
        "remaining_cleanup": cleanup or ["none"],
        "candidate_fate": fate,
        "payload_version": RollbackCompleted.VERSION,
        "verification": verification,
        "failures": failures,
        "succeeded": ok,
        "at": format_timestamp(now()),
    }
    done = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_COMPLETED,
                actor=operator,
                candidate=plan.leaving_digest,
                stage=stage,
                payload=redact_value(payload),
            )
        ]
    )[0]
    events.append(done)
    warnings: list[str] = []
    note_id = post_rollback_note(
        store,
        statehub,
        done,
        decl,
        warnings,
        title=f"{workload}: rolled back to {target.text}" + ("" if ok else " (verification FAILED)"),
        body=(
            f"Symptom: {symptom}.\nAction: {action}.\nFinal stable: {target.text}.\n"
            f"Verification ({verification['check'].get('check')}): {verification['check'].get('detail')}; "
            f"rollout: {verification['rollout']['detail']}; manifests: "
            f"{verification['manifests'].get('detail', 'not compared')}.\n"
            f"Remaining cleanup: {'; '.join(cleanup) or 'none'}.\n"
            f"Candidate {plan.leaving_image or plan.leaving_digest}: {FATE_TEXT[fate]}."
        ),
    )
    phase = "rolled-back" if ok else "verification-failed"
    doc = {
        "kind": "railiance.rollback/v1",
        "workload": workload,
        "phase": phase,
        "status": "pass" if ok else "fail",
        **{
            k: payload[k]
            for k in (
                "symptom",
                "action",
                "strategy",
                "from_stable",
                "final_stable",
                "final_image",
                "remaining_cleanup",
                "candidate_fate",
                "verification",
                "failures",
            )
        },
        "rollback_target": target.as_dict(),
        "statehub_note": note_id,
        "ledger": {"seq": done.seq, "hash": done.hash},
    }
    return RollbackOutcome(
        document=doc, exit_code=0 if ok else 1, phase=phase, events=events, warnings=warnings
    )


def post_rollback_note(
    store: EventStore,
    statehub: StateHubPort | None,
    event: RecordedEvent,
    decl: Declaration,
    warnings: list[str],
    *,
    title: str,
    body: str,
) -> str | None:
    """Post the rollback note about ``event`` (when a State Hub is configured) and record ``note.posted``."""
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=title,
        body=body,
        required=True,
        required_reason="rollbacks and their decisions are recorded as State Hub notes",
    )
    if note.warning:
        warnings.append(note.warning)
    return note.note_id
