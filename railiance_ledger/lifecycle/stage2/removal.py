"""Removing the Stage 2 canary and recording it (``rollback.started``/``rollback.completed``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.payloads import CandidateFate, RollbackCompleted
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.cluster.canary import remove_canary_objects
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment, open_deployment
from railiance_ledger.lifecycle.stage2.context import CanaryContext, make_context, target_text
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort


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
    candidate's ``fate`` (``candidate_fate``, the one key the candidate-state fold reads)."""
    workload, digest = ctx.workload, ctx.digest
    target = ctx.rollback_target or {}
    begun = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_STARTED,
                actor=operator,
                candidate=digest,
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
    p = dep.started.payload
    removal = remove_canary_objects(
        kube=kube,
        helm=helm,
        spec=dep.spec,
        release=dep.release,
        namespace=dep.namespace,
        creates=p.get("routing_created") or [],
        previous=p.get("routing_previous") or [],
    )
    action, failed = removal.text, removal.failed
    done = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROUTING_CHANGED,
                actor=operator,
                candidate=digest,
                stage=2,
                payload=redact_value({"action": "canary routing removed", "detail": action}),
            ),
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
                        "remaining_cleanup": "retry the failed removal steps listed in action"
                        if failed
                        else "none",
                        "candidate_fate": fate,
                        "payload_version": RollbackCompleted.VERSION,
                        "succeeded": not failed,
                        "at": format_timestamp(now()),
                    }
                ),
            ),
        ]
    )
    return begun + done


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
    """Operator-triggered Stage 2 rollback of the canary being observed (``railiance rollback`` during Stage 2)."""
    dep = open_deployment(store.read_stream(decl.workload.name), None)
    if dep is None:
        raise InvalidInput(f"no Stage 2 canary of {decl.workload.name} is deployed")
    ctx = make_context(
        store, decl, str(dep.started.payload["release"]["image"]), operator=operator, clock=now
    )
    ctx.rollback_target = dep.started.payload.get("rollback_target")
    return roll_back_canary(
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
