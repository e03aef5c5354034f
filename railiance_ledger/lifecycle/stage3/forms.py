"""The promotion skeleton, shared by every promotion form, and the Protocol a form implements.

A promotion is always the same procedure: record the plan (``stage.started`` 3, so an interrupted
promotion is visible and ``rollback`` can finish it), let the form act on production, judge the
result (production routing and the declared smoke checks), then either record the promotion
(``promotion.completed``, the State Hub note, ``stage.completed``) or restore the previous stable
automatically. Only the action differs: ``forms_replace.ReleaseReplace`` upgrades the stable release
(after a weighted shift when the canary was weighted), ``forms_switch.RoutingSwitch`` points the
stable Service at the canary release's pods. Each is a :class:`PromotionForm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.domain.stage_result import Check
from railiance_ledger.errors import AdapterError, LedgerError, RailianceError
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.canary import CanaryRemoval, StepOutcome
from railiance_ledger.lifecycle.rollback.model import RESTORE_KEYS, new_workflow_id
from railiance_ledger.lifecycle.stage3.context import PromotionContext, PromotionOutcome
from railiance_ledger.lifecycle.stage3.record import fail_and_restore, judge_promotion, record_promotion

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


@dataclass
class PromotionRun:
    """One promotion in progress: what a form needs to act and what it leaves for the record."""

    store: EventStore
    ctx: PromotionContext
    kube: KubePort
    helm: HelmPort
    workflow_id: str
    ready_timeout: float
    sleep: Callable[[float], None]
    events: list[RecordedEvent] = field(default_factory=list)
    steps: list[Check] = field(default_factory=list)

    def record_routing(self, payload: dict[str, Any]) -> None:
        """Append one ``routing.changed`` (stage 3) for the candidate with ``payload`` (redacted)."""
        self.events += self.store.append(
            [
                NewEvent(
                    stream=self.ctx.workload,
                    kind=EventKind.ROUTING_CHANGED,
                    actor=self.ctx.operator,
                    candidate=self.ctx.digest,
                    stage=3,
                    payload=redact_value(payload),
                )
            ]
        )


class PromotionForm(Protocol):
    """One way to make the candidate the production stable (a strategy of the promotion skeleton)."""

    name: str
    """The form recorded in the plan and the promotion (``release-replace``, ``routing-switch``...)."""
    command: str
    """The command the form runs, for the record."""
    values: list[dict[str, Any]]
    """The stored values files (path, sha256) the promoted stable uses."""
    restore_strategy: str | None
    """The rollback strategy that undoes this form when it fails (None: the declared one)."""

    def plan_fields(self) -> dict[str, Any]:
        """Form-specific fields of the ``stage.started`` plan (``manifests``, ``switch``...)."""
        ...

    def candidate_restore(self) -> dict[str, Any]:
        """How to restore the candidate (recorded in the plan; used when the promotion is undone)."""
        ...

    def apply(self, run: PromotionRun) -> dict[str, Any]:
        """Act on production; return the production routing read back (``production_routing``).

        Appends the ``promotion_applied`` and ``stable_routing_points_at_candidate`` steps and the
        ``routing.changed`` events to ``run``; raises ``PromotionFailed`` (or an adapter error) when a
        step did not take effect, after which the skeleton restores the previous stable.
        """
        ...

    def undo(self, run: PromotionRun) -> CanaryRemoval | None:
        """After a failure, before the restore: undo what the rollback strategy does not (a weighted
        shift of the host's traffic to the candidate); the removal's steps, or ``None``."""
        ...

    def record_fields(self, run: PromotionRun) -> dict[str, Any]:
        """Form-specific fields of ``promotion.completed``: ``release`` through ``routing_snapshot`` and
        whatever the form adds after it (the ``routing`` read-back is added by the skeleton)."""
        ...


def _undo(form: PromotionForm, run: PromotionRun) -> list[str]:
    """``form.undo`` recorded as ``routing.changed``; the steps that failed (what remains)."""
    undone = form.undo(run)
    if undone is None:
        return []
    failed = [step.text for step in undone.steps if step.outcome is StepOutcome.FAILED]
    try:
        run.record_routing(
            {
                "action": "canary routing removed after the failed promotion: no traffic on the candidate",
                "workflow_id": run.workflow_id,
                "detail": undone.text,
                "removed": not failed,
            }
        )
    except LedgerError:
        pass  # the restore that follows records the outcome (or the ledger error stops it)
    return failed


def run_promotion(
    form: PromotionForm,
    *,
    store: EventStore,
    ctx: PromotionContext,
    checks: list[Check],
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    started: datetime,
    ready_timeout: float,
    sleep: Callable[[float], None],
) -> PromotionOutcome:
    """The promotion skeleton: plan, ``form.apply``, judge, then record or restore automatically."""
    decl, workload, prev = ctx.decl, ctx.workload, ctx.previous
    assert prev is not None
    run = PromotionRun(
        store=store,
        ctx=ctx,
        kube=kube,
        helm=helm,
        workflow_id=new_workflow_id("promote", workload, ctx.digest),
        ready_timeout=ready_timeout,
        sleep=sleep,
    )
    plan = {
        "workflow_id": run.workflow_id,
        "form": form.name,
        "command": form.command,
        "strategy": decl.rollback.strategy,
        "candidate": {"digest": ctx.digest, "image": ctx.image, "revision": ctx.revision},
        "previous_stable": prev.as_dict(),
        "candidate_restore": form.candidate_restore(),
        **form.plan_fields(),
        "values": form.values,
        "prechecks": [c.model_dump(mode="json") for c in checks],
        "started_at": format_timestamp(started),
    }
    run.events += store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.STAGE_STARTED,
                actor=ctx.operator,
                candidate=ctx.digest,
                stage=3,
                payload=redact_value(plan),
            )
        ]
    )
    started_ev = run.events[0]
    routing: dict[str, Any] = {}
    smoke: list[dict[str, Any]] = []
    failure: str | None = None
    try:
        routing = form.apply(run)
        smoke, smoke_check, failure = judge_promotion(decl, kube, http, ctx.namespace, routing)
        run.steps.append(smoke_check)
    except (RailianceError, OSError, ValueError) as exc:  # PromotionFailed, adapters, a refused record...
        failure = str(exc) if isinstance(exc, RailianceError) else f"{type(exc).__name__}: {exc}"
        if not any(c.name == "promotion_applied" for c in run.steps):
            run.steps.append(
                _check("promotion_applied", False, failure, technical=isinstance(exc, AdapterError))
            )
    if failure is not None:
        undo_failures = _undo(form, run)
        return fail_and_restore(
            store=store,
            ctx=ctx,
            checks=checks + run.steps,
            kube=kube,
            helm=helm,
            http=http,
            statehub=statehub,
            now=now,
            started_ev=started_ev,
            events=run.events,
            failure=failure,
            workflow_id=run.workflow_id,
            candidate_restore=form.candidate_restore(),
            ready_timeout=ready_timeout,
            sleep=sleep,
            strategy=form.restore_strategy,
            undo_failures=undo_failures,
        )
    fields = form.record_fields(run)
    head = {k: fields.pop(k) for k in ("release", "namespace", "serving_release", "helm_revision")}
    sha, snapshot = fields.pop("manifests_sha256"), fields.pop("routing_snapshot")
    payload = {
        "digest": ctx.digest,
        "image": ctx.image,
        "revision": ctx.revision,
        "previous_stable": prev.digest,
        "previous_image": prev.image,
        **head,
        "previous_helm_revision": prev.helm_revision,
        "manifests_sha256": sha,
        "values": form.values,
        "routing": {k: v for k, v in routing.items() if k != "ok"},
        "routing_snapshot": snapshot,
        **fields,
        "workflow_id": run.workflow_id,
        "command": form.command,
        "form": form.name,
        "strategy": decl.rollback.strategy,
        "migrations": decl.migrations.classification,
        "smoke": smoke,
        "approval_id": ctx.approval.event_id if ctx.approval else None,
        "stage3_started_seq": started_ev.seq,
        "previous_restore": {k: v for k, v in prev.as_dict().items() if k in RESTORE_KEYS},
    }
    return record_promotion(
        store=store,
        ctx=ctx,
        checks=checks + run.steps,
        payload=payload,
        routing=routing,
        smoke=smoke,
        statehub=statehub,
        events=run.events,
    )
