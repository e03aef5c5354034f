"""The manual strategy: record the runbook, then the operator's confirmation and verification."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.lifecycle.rollback.model import RollbackOutcome, RollbackPlan
from railiance_ledger.lifecycle.rollback.record import complete_rollback, post_rollback_note
from railiance_ledger.lifecycle.rollback.verify import verify_restored

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import KubePort, StateHubPort


def manual_rollback(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    http: httpx.Client,
    plan: RollbackPlan,
    symptom: str,
    fate: str,
    started_payload: dict[str, Any],
    statehub: StateHubPort | None,
    done: bool,
    now: Callable[[], datetime],
    home: Path | None,
    ready_timeout: float,
    sleep: Callable[[float], None],
) -> RollbackOutcome:
    """The documented manual path: record the runbook; verify and complete only once a human says it is
    done."""
    workload = decl.workload.name
    runbook = decl.rollback.runbook or "(no runbook declared)"
    action = f"manual recovery by an operator following the runbook {runbook}"
    if not done:
        started_payload = {**started_payload, "action": action, "runbook": runbook, "automated": False}
        events = store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.ROLLBACK_STARTED,
                    actor=operator,
                    candidate=plan.leaving_digest,
                    stage=3,
                    payload=redact_value(started_payload),
                )
            ]
        )
        warnings: list[str] = []
        note_id = post_rollback_note(
            store,
            statehub,
            events[0],
            decl,
            warnings,
            title=f"{workload}: manual rollback required",
            body=(
                f"Symptom: {symptom}.\nNo automated rollback is declared safe: follow the runbook "
                f"{runbook} to restore {plan.target.text}, then run `railiance rollback` again with "
                "--manual-done to verify and record it."
            ),
        )
        doc = {
            "kind": "railiance.rollback/v1",
            "workload": workload,
            "phase": "manual-action-required",
            "status": "fail",
            "symptom": symptom,
            "action": action,
            "runbook": runbook,
            "rollback_target": plan.target.as_dict(),
            "statehub_note": note_id,
            "ledger": {"seq": events[0].seq, "hash": events[0].hash},
        }
        return RollbackOutcome(
            document=doc, exit_code=1, phase="manual-action-required", events=events, warnings=warnings
        )
    verification = verify_restored(
        decl=decl,
        kube=kube,
        http=http,
        target=plan.target,
        strategy="manual",
        home=home,
        timeout=ready_timeout,
        sleep=sleep,
    )
    return complete_rollback(
        store=store,
        decl=decl,
        operator=operator,
        plan=plan,
        symptom=symptom,
        fate=fate,
        action=action + " (reported done by the operator)",
        failures=[],
        cleanup=[],
        verification=verification,
        statehub=statehub,
        now=now,
        events=[],
        strategy="manual",
        stage=3,
    )
