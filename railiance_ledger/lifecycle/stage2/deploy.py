"""Stage 2 deploy: prechecks, then the canary release, its routing, the rollout wait and the record."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import EventKind, NewEvent, format_timestamp
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.domain.stage_result import (
    Check,
    Evidence,
    overall_status,
)
from railiance_ledger.errors import AdapterError, LedgerError, RailianceError
from railiance_ledger.lifecycle.checks import judge as _guard
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.manifests import store_manifests
from railiance_ledger.lifecycle.cluster.objects import (
    FIELD_MANAGER,
    GATEWAY_GV,
    INGRESS_GV,
    clean_object,
)
from railiance_ledger.lifecycle.cluster.rollout import await_pods
from railiance_ledger.lifecycle.cluster.routing import read_routing
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment
from railiance_ledger.lifecycle.stage2.context import (
    STATEHUB_GATE,
    CanaryContext,
    StageOutcome,
    canary_selector,
    canary_values_files,
    candidate_of,
    complete_stage,
    make_context,
    post_note,
    set_values,
    stage_result,
    target_text,
)
from railiance_ledger.lifecycle.stage2.monitoring import check_monitoring
from railiance_ledger.lifecycle.stage2.prechecks import (
    check_approval,
    check_cluster,
    check_dependencies,
    check_distinguishable,
    check_dry_run,
    check_form,
    check_references,
    check_registry,
    check_rollback_target,
    check_routing_prereqs,
    check_stage1,
    check_window,
    default_resolve,
)
from railiance_ledger.lifecycle.stage2.removal import roll_back_canary
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, MetricsPort, RegistryPort, StateHubPort


def deploy_canary(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    registry: RegistryPort,
    metrics: MetricsPort,
    http: httpx.Client,
    statehub: StateHubPort | None = None,
    image: str | None = None,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    resolve_host: Callable[[str], bool] = default_resolve,
    helm_upgrade_args: Sequence[str] = (),
    home: Path | None = None,
    rollout_timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> StageOutcome:
    """Stage 2 deploy: every precheck first, then the canary release, its routing, and the record.

    Returns exit 0 with a ``"phase": "deployed"`` document when the canary is up and routed as
    declared; exit 1 with a failed stage-result document (``stage.completed``, stage 2) when any
    precheck fails (nothing applied) or the apply itself fails (what was applied is removed).
    ``resolve_host`` decides DNS resolution of ``routing.host`` (injected in tests);
    ``helm_upgrade_args`` are passed to ``helm upgrade``. Routing is applied once the canary's pods
    are ready, crash-looping, or ``rollout_timeout`` seconds have passed (the observation judges
    what it finds; the deploy records it as pod-status evidence).
    """
    ctx = make_context(store, decl, image, operator=operator, clock=now)
    started = ctx.run.started_at
    ctx.home = home
    checks: list[Check] = [_guard("canary_form_declared", lambda: check_form(ctx, kube))]
    checks.append(_guard("canary_distinguishable", lambda: check_distinguishable(ctx, store)))
    checks.append(_guard("stage1_passed", lambda: check_stage1(ctx)))
    checks.append(_guard("cluster_ready", lambda: check_cluster(ctx, kube)))
    checks.append(_guard("digest_in_registry", lambda: check_registry(ctx, registry)))
    checks.append(_guard("server_dry_run", lambda: check_dry_run(ctx, kube, helm)))
    checks.append(_guard("routing_prerequisites", lambda: check_routing_prereqs(ctx, kube, resolve_host)))
    checks.append(_guard("dependencies_healthy", lambda: check_dependencies(ctx, http)))
    checks.append(_guard("rollback_target_known", lambda: check_rollback_target(ctx, store, helm)))
    checks.append(_guard("monitoring_available", lambda: check_monitoring(ctx, kube, metrics)))
    checks.append(_guard("declared_references", lambda: check_references(ctx)))
    checks.append(_guard("observation_window", lambda: check_window(ctx)))
    checks.append(_guard("operator_approval", lambda: check_approval(ctx)))
    if overall_status(checks) == "fail":
        doc, events, failed_warnings = complete_stage(ctx, stage_result(ctx, checks, [], started, now()))
        return StageOutcome(document=doc, exit_code=1, events=events, warnings=failed_warnings)

    assert ctx.routing is not None
    spec = ctx.routing
    try:
        stable_ing = (
            kube.get(
                api_version=INGRESS_GV, kind="Ingress", name=decl.routing.service, namespace=ctx.namespace
            )
            if spec.provider is dc.Provider.INGRESS_NGINX and spec.form is dc.CanaryForm.SHADOW
            else None
        )
        stable_route = (
            kube.get(api_version=GATEWAY_GV, kind="HTTPRoute", name=spec.route_name, namespace=ctx.namespace)
            if spec.provider is dc.Provider.GATEWAY_API and spec.form.needs_routing_provider
            else None
        )
        plan = dc.plan_routing(spec, stable_ingress=stable_ing, stable_route=stable_route)
    except (AdapterError, ValueError) as exc:
        reason = f"the stable routing could not be read to plan the canary: {exc}; nothing was applied"
        checks.append(_check("canary_applied", False, reason, technical=isinstance(exc, AdapterError)))
        doc, events, failed_warnings = complete_stage(ctx, stage_result(ctx, checks, [], started, now()))
        return StageOutcome(document=doc, exit_code=1, events=events, warnings=failed_warnings)
    previous = [clean_object(o, keep_ownership=True) for o in (stable_ing, stable_route) if o is not None]
    # A stable HTTPRoute built because none existed is ours: rollback deletes it (nothing to restore).
    built_route = [o for o in plan.patches if o.get("kind") == "HTTPRoute" and stable_route is None]
    creates = [clean_object(o, keep_ownership=True) for o in [*plan.creates, *built_route]]
    sha, _path = store_manifests(ctx.rendered_text, home)
    # The intent, before anything is applied: what will change (release, routing objects created and
    # patched, with the stable objects as they are now) and the rollback target.
    payload: dict[str, Any] = {
        "phase": "deploying",
        "release": {
            "name": ctx.release,
            "namespace": ctx.namespace,
            "revision": None,
            "chart": str(decl.chart.path),
            "image": ctx.image,
        },
        "manifests": {
            "sha256": sha,
            "bytes": len(ctx.rendered_text.encode()),
            "store": "$RAILIANCE_HOME/manifests/<sha256>.yaml",
        },
        "selector": canary_selector(ctx),
        "routing": spec.as_dict(),
        "routing_objects": [f"{o['kind']}/{o['metadata']['name']}" for o in plan.objects],
        "routing_created": creates,
        "routing_previous": previous,
        "fallback": ctx.form_decision.reason
        if ctx.form_decision and ctx.form_decision.fallback_from
        else None,
        "rollback_target": ctx.rollback_target,
        "prechecks": [c.model_dump(mode="json") for c in checks],
        "observation_window_seconds": decl.observation_window_seconds,
        "sample_interval_seconds": int(decl.canary.sample_interval),
        "started_at": format_timestamp(started),
    }
    intent = store.append(
        [
            NewEvent(
                stream=ctx.workload,
                kind=EventKind.STAGE_STARTED,
                actor=operator,
                candidate=ctx.digest,
                stage=2,
                payload=redact_value(payload),
            )
        ]
    )
    dep = CanaryDeployment(
        started=intent[0],
        samples=[],
        spec=spec,
        release=ctx.release,
        namespace=ctx.namespace,
        selector=canary_selector(ctx),
        deployed=False,
    )
    try:
        status = helm.install_or_upgrade(
            chart=decl.resolve(decl.chart.path),
            release=ctx.release,
            namespace=ctx.namespace,
            values_files=canary_values_files(ctx),
            set_values=set_values(ctx),
            extra_args=list(helm_upgrade_args),
        )
        revision = status.get("version")
        rollout = await_pods(kube, ctx.namespace, canary_selector(ctx), rollout_timeout, sleep, clock)
        for obj in plan.objects:
            kube.apply(manifests=[obj], field_manager=FIELD_MANAGER)
        observed = read_routing(kube, spec)
        ok, reason = dc.routing_matches(spec, observed)
        if not ok:
            raise _ApplyFailed(f"routing read back after apply does not match: {reason}")
        evidence = _deploy_evidence(ctx, revision, sha, spec, reason)
        evidence.append(Evidence(kind="pod-status", ref=canary_selector(ctx), detail=rollout))
        deployed: dict[str, Any] = {
            "phase": "deployed",
            "revision": revision,
            "rollout": rollout,
            "evidence": [e.model_dump(mode="json") for e in evidence],
        }
        outcome = store.append(
            [
                NewEvent(
                    stream=ctx.workload,
                    kind=EventKind.ROUTING_CHANGED,
                    actor=operator,
                    candidate=ctx.digest,
                    stage=2,
                    payload=redact_value(
                        {
                            "action": "canary routing applied",
                            "form": str(spec.form),
                            "provider": str(spec.provider),
                            "weight": spec.weight,
                            "objects": payload["routing_objects"],
                            "read_back": reason,
                            "fallback_from": spec.fallback_from,
                            "deployed": deployed,
                        }
                    ),
                )
            ]
        )
    except LedgerError:
        # The ledger refused the outcome: take the canary out of traffic anyway, then exit 3.
        roll_back_canary(
            store=store,
            ctx=ctx,
            dep=dep,
            kube=kube,
            helm=helm,
            operator=operator,
            symptom="the ledger refused the deploy's record",
            now=now,
        )
        raise
    except (RailianceError, _ApplyFailed, ValueError, OSError) as exc:  # adapters, timeouts, drops, read-back
        return _fail_after_intent(ctx, dep, checks, exc, kube=kube, helm=helm, operator=operator, now=now)
    events = intent + outcome
    payload = {**payload, "phase": "deployed", "evidence": deployed["evidence"]}
    payload["release"] = {**payload["release"], "revision": revision}
    warnings: list[str] = []
    note = post_note(
        store,
        statehub,
        events[0],
        decl,
        title=f"{ctx.workload}: Stage 2 canary deployed ({spec.form})",
        body=(
            f"Canary {ctx.image} deployed as release {ctx.release} revision {revision} in "
            f"{ctx.namespace}; routing: {reason}. Observation window "
            f"{decl.observation_window_seconds}s. Rollback: {target_text(ctx.rollback_target)}."
        ),
        evidence=[e.model_dump(mode="json") for e in evidence],
        warnings=warnings,
    )
    note_id = note.note_id
    if not note.delivered and STATEHUB_GATE not in ctx.waivers:
        warnings.append(
            f"the {STATEHUB_GATE} acceptance gate will fail at the end of the window (and the canary be "
            "removed) unless State Hub takes the acceptance note then or a waiver for gate "
            f"{STATEHUB_GATE} (stage 2) of this candidate is recorded"
        )
    doc = {
        "phase": "deployed",
        "stage": 2,
        "workload": {"name": ctx.workload, "repo": decl.workload.repo},
        "candidate": candidate_of(ctx).model_dump(mode="json"),
        "target_environment": "canary",
        "status": "pass",
        "checks": payload["prechecks"],
        "evidence": payload["evidence"],
        "release": payload["release"],
        "routing": {
            "form": str(spec.form),
            "provider": str(spec.provider),
            "weight": spec.weight,
            "read_back": reason,
            "fallback": payload["fallback"],
        },
        "manifests_sha256": sha,
        "rollback_target": ctx.rollback_target,
        "statehub_note": note_id,
        "ledger": {"seq": events[-1].seq, "hash": events[-1].hash},
    }
    return StageOutcome(document=doc, exit_code=0, events=events, warnings=warnings)


def _fail_after_intent(
    ctx: CanaryContext,
    dep: CanaryDeployment,
    checks: list[Check],
    exc: RailianceError | _ApplyFailed | ValueError | OSError,
    *,
    kube: KubePort,
    helm: HelmPort,
    operator: str,
    now: Callable[[], datetime],
) -> StageOutcome:
    """The deploy failed after recording its intent: remove what was applied (``rollback.started``,
    ``rollback.completed``, or ``rollback.incomplete`` naming what remains), then record the failed
    result (``stage.completed``, stage 2). Exit 1."""
    what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RailianceError) else str(exc)
    rolled = roll_back_canary(
        store=ctx.run.store,
        ctx=ctx,
        dep=dep,
        kube=kube,
        helm=helm,
        operator=operator,
        symptom=f"the canary deploy failed: {what}",
        now=now,
    )
    last = rolled[-1]
    cleanup = str(last.payload.get("action") or "")
    if last.kind == EventKind.ROLLBACK_INCOMPLETE:
        cleanup += f"; INCOMPLETE (seq {last.seq}): {last.payload.get('manual_command')}"
    checks.append(
        _check(
            "canary_applied",
            False,
            f"{what}; rolled back: {cleanup}",
            technical=isinstance(exc, AdapterError),
        )
    )
    started = ctx.run.started_at
    doc, events, warnings = complete_stage(ctx, stage_result(ctx, checks, [], started, now()))
    doc["rolled_back"] = True
    return StageOutcome(
        document=doc, exit_code=1, events=rolled + events, warnings=warnings, rolled_back=True
    )


class _ApplyFailed(Exception):
    """The canary could not be applied as declared."""


def _deploy_evidence(
    ctx: CanaryContext, revision: Any, sha: str, spec: dc.RoutingSpec, reason: str
) -> list[Evidence]:
    return [
        Evidence(kind="digest", ref=ctx.image, detail="candidate"),
        Evidence(
            kind="k8s-object",
            ref=f"helm-release/{ctx.namespace}/{ctx.release}",
            detail=f"revision {revision}",
        ),
        Evidence(kind="summary", ref=f"manifests:sha256:{sha}", detail="rendered release identity"),
        Evidence(kind="summary", ref=f"routing:{spec.form}", detail=redact(reason)),
    ]
