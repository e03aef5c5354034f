"""Removing the Stage 2 canary and recording it (``rollback.started``/``rollback.completed``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.payloads import CandidateFate, RollbackCompleted
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import InvalidInput, LedgerError
from railiance_ledger.lifecycle.cluster.canary import CanaryRemoval, StepOutcome, remove_canary_objects
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment, open_deployment
from railiance_ledger.lifecycle.stage2.context import CanaryContext, make_context, target_text
from railiance_ledger.lifecycle.unfinished import (
    incomplete_event,
    manual_command,
    record_unfinished_result,
    still_open_after,
)
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort


def _append_started(
    store: EventStore,
    ctx: CanaryContext,
    operator: str,
    symptom: str,
    target: dict[str, object],
    now: Callable[[], datetime],
) -> list[RecordedEvent]:
    return store.append(
        [
            NewEvent(
                stream=ctx.workload,
                kind=EventKind.ROLLBACK_STARTED,
                actor=operator,
                candidate=ctx.digest,
                stage=2,
                payload=redact_value(
                    {
                        "symptom": symptom,
                        "at": format_timestamp(now()),
                        "action": "remove canary routing and release",
                        "rollback_target": target,
                    }
                ),
            )
        ]
    )


def roll_back_canary(
    *,
    store: EventStore,
    ctx: CanaryContext,
    dep: CanaryDeployment,
    kube: KubePort,
    helm: HelmPort | None,
    operator: str,
    symptom: str,
    now: Callable[[], datetime],
    fate: CandidateFate = "returned-to-stage1",
) -> list[RecordedEvent]:
    """Append ``rollback.started``, remove the canary, append ``rollback.completed`` recording the
    candidate's ``fate`` (``candidate_fate``, the one key the candidate-state fold reads).

    When a removal step fails, ``rollback.incomplete`` is appended instead, naming what remains and
    the manual command (the workload is blocked until a rollback completes or is resolved). When the
    ledger refuses ``rollback.started``, the canary is still removed (never left taking traffic
    unrecorded) and the ledger's error propagates.
    """
    workload, digest = ctx.workload, ctx.digest
    target = ctx.rollback_target or {}
    p = dep.started.payload

    def remove() -> CanaryRemoval:
        return remove_canary_objects(
            kube=kube,
            helm=helm,
            spec=dep.spec,
            release=dep.release,
            namespace=dep.namespace,
            creates=p.get("routing_created") or [],
            previous=p.get("routing_previous") or [],
        )

    try:
        begun = _append_started(store, ctx, operator, symptom, target, now)
    except LedgerError:
        remove()
        raise
    removal = remove()
    action, failed = removal.text, removal.failed
    routing = NewEvent(
        stream=workload,
        kind=EventKind.ROUTING_CHANGED,
        actor=operator,
        candidate=digest,
        stage=2,
        payload=redact_value({"action": "canary routing removed", "detail": action, "removed": not failed}),
    )
    if failed:
        remaining = [step.text for step in removal.steps if step.outcome is StepOutcome.FAILED]
        done = store.append(
            [
                routing,
                incomplete_event(
                    workload=workload,
                    operator=operator,
                    candidate=digest,
                    stage=2,
                    reason=f"the canary of {ctx.image} could not be removed completely ({symptom})",
                    remaining=remaining,
                    failures=remaining,
                    command=manual_command(removal_by_hand(dep, removal), "finish removing the canary"),
                    extra={"symptom": symptom, "candidate_fate": fate, "action": action},
                ),
            ]
        )
        return begun + done
    done = store.append(
        [
            routing,
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_COMPLETED,
                actor=operator,
                candidate=digest,
                stage=2,
                payload=redact_value(
                    {
                        "symptom": symptom,
                        "action": action,
                        "final_stable": target.get("digest"),
                        "final_image": target_text(target),
                        "remaining_cleanup": "none",
                        "candidate_fate": fate,
                        "payload_version": RollbackCompleted.VERSION,
                        "succeeded": True,
                        "at": format_timestamp(now()),
                    }
                ),
            ),
        ]
    )
    return begun + done


def removal_by_hand(dep: CanaryDeployment, removal: CanaryRemoval) -> list[str]:
    """The commands that finish a canary removal whose steps failed (routing first, then the release)."""
    ns, commands = dep.namespace, []
    failed = {step.text for step in removal.steps if step.outcome is StepOutcome.FAILED}
    p = dep.started.payload
    if any("restore" in text for text in failed):
        names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in p.get("routing_previous") or [])
        commands.append(
            f"re-apply the stable routing recorded in stage.started seq {dep.started.seq} ({names})"
        )
    for obj in p.get("routing_created") or []:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        if any(what in text for text in failed):
            commands.append(
                f"kubectl --namespace {ns} delete {obj['kind'].lower()} {obj['metadata']['name']}"
            )
    if any("helm uninstall" in text for text in failed):
        commands.append(f"helm uninstall {dep.release} --namespace {ns}")
    return commands


def remove_canary(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    reason: str,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    fate: CandidateFate = "returned-to-stage1",
) -> list[RecordedEvent]:
    """Operator-triggered Stage 2 rollback of the canary being observed (``railiance rollback`` during Stage
    2)."""
    history = store.read_stream(decl.workload.name)
    dep = open_deployment(history, None)
    if dep is None:
        raise InvalidInput(f"no Stage 2 canary of {decl.workload.name} is deployed")
    ctx = make_context(
        store, decl, str(dep.started.payload["release"]["image"]), operator=operator, clock=now
    )
    ctx.rollback_target = dep.started.payload.get("rollback_target")
    unfinished = not dep.deployed or still_open_after(history, dep.started)
    events = roll_back_canary(
        store=store,
        ctx=ctx,
        dep=dep,
        kube=kube,
        helm=helm,
        operator=operator,
        symptom=reason,
        now=now,
        fate=fate,
    )
    if unfinished and events[-1].kind == EventKind.ROLLBACK_COMPLETED:
        # The action that opened this canary stopped before its result: record it as failed.
        result = record_unfinished_result(
            store=store,
            decl=decl,
            operator=operator,
            started=dep.started,
            image=str(dep.started.payload["release"]["image"]),
            reason="the Stage 2 action stopped before recording its result; the canary was removed "
            f"({reason})",
        )
        if result is not None:
            events.append(result)
    return events
