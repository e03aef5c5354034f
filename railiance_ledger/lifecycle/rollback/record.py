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
from railiance_ledger.lifecycle.unfinished import incomplete_event, manual_command

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort


_NOT_INCOMPLETE = frozenset({"reason", "remaining_cleanup", "failures", "payload_version", "succeeded"})
"""Keys of ``rollback.completed`` a ``rollback.incomplete`` does not carry (it has its own)."""


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
    if failures:
        # Steps of the rollback itself failed: the cluster is not where the ledger would say, so the
        # rollback is recorded as incomplete (blocking the workload), never as completed.
        payload["manual_command"] = manual_command(restore_by_hand(plan, strategy), "finish the rollback")
        event = incomplete_event(
            workload=workload,
            operator=operator,
            candidate=plan.leaving_digest,
            stage=stage,
            reason=f"the rollback to {target.text} could not finish: " + "; ".join(failures),
            remaining=cleanup,
            failures=failures,
            command=str(payload["manual_command"]),
            extra={k: v for k, v in payload.items() if k not in _NOT_INCOMPLETE},
        )
    else:
        event = NewEvent(
            stream=workload,
            kind=EventKind.ROLLBACK_COMPLETED,
            actor=operator,
            candidate=plan.leaving_digest,
            stage=stage,
            payload=redact_value(payload),
        )
    done = store.append([event])[0]
    events.append(done)
    warnings: list[str] = []
    title = f"{workload}: rolled back to {target.text}" + ("" if ok else " (verification FAILED)")
    note_id = post_rollback_note(
        store,
        statehub,
        done,
        decl,
        warnings,
        title=title if not failures else f"{workload}: rollback to {target.text} INCOMPLETE",
        body=(
            f"Symptom: {symptom}.\nAction: {action}.\nFinal stable: {target.text}.\n"
            f"Verification ({verification['check'].get('check')}): {verification['check'].get('detail')}; "
            f"rollout: {verification['rollout']['detail']}; manifests: "
            f"{verification['manifests'].get('detail', 'not compared')}.\n"
            f"Remaining cleanup: {'; '.join(cleanup) or 'none'}.\n"
            f"Candidate {plan.leaving_image or plan.leaving_digest}: {FATE_TEXT[fate]}."
        ),
    )
    phase = "incomplete" if failures else "rolled-back" if ok else "verification-failed"
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
        "manual_command": payload.get("manual_command"),
        "rollback_target": target.as_dict(),
        "statehub_note": note_id,
        "ledger": {"seq": done.seq, "hash": done.hash},
    }
    return RollbackOutcome(
        document=doc, exit_code=0 if ok else 1, phase=phase, events=events, warnings=warnings
    )


def restore_by_hand(plan: RollbackPlan, strategy: str) -> list[str]:
    """The commands that put ``plan``'s target back by hand, for the strategy that failed."""
    target = plan.target
    ns, release = target.namespace, target.release
    if strategy == "helm-revision" and target.helm_revision is not None:
        return [f"helm rollback {release} {target.helm_revision} --namespace {ns} --wait"]
    if strategy in ("helm-revision", "digest-and-values") and target.manifests_sha256:
        path = f"$RAILIANCE_HOME/manifests/{target.manifests_sha256}.yaml"
        return [f"kubectl apply --server-side --force-conflicts --namespace {ns} -f {path}"]
    if strategy == "routing":
        where = f"seq {plan.leaving_seq} (`railiance history WORKLOAD --json`)"
        return [f"re-apply the routing_previous objects recorded with {where}"]
    return []


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
