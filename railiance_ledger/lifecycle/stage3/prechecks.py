"""Stage 3 prechecks: Stage 2 acceptance, previous stable, backup, migrations, approval, rollback."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml  # type: ignore[import-untyped]

from railiance_ledger.adapters.process import run_command
from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.rules import stage_excepted
from railiance_ledger.domain.stage_result import (
    Check,
    CheckStatus,
    Evidence,
)
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.lifecycle.approvals import approval_state
from railiance_ledger.lifecycle.approvals.signing import UNSIGNED, signed_principal
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.manifests import store_manifests
from railiance_ledger.lifecycle.cluster.objects import clean_object, deployment_of
from railiance_ledger.lifecycle.cluster.routing import pod_ready, routing_snapshot, selected_pods
from railiance_ledger.lifecycle.notes import note_gate
from railiance_ledger.lifecycle.rollback.model import RestoreTarget, image_digest
from railiance_ledger.lifecycle.stage3.context import PromotionContext, helm_revision, latest_result, render
from railiance_ledger.lifecycle.waivers import active_waivers

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


_AGE = re.compile(r"\bage_seconds\s*[=:]\s*(\d+)")


_LAST = re.compile(r"\blast_backup\s*[=:]\s*(\S+)")


def check_stage2(ctx: PromotionContext) -> Check:
    last_rb = latest_result(ctx.history, EventKind.ROLLBACK_COMPLETED, ctx.digest)
    state = CandidateState.from_events(ctx.history, ctx.digest)
    if state.terminal:
        by = f" by rollback {last_rb.event_id}" if last_rb is not None else ""
        return _check(
            "stage2_accepted",
            False,
            f"{ctx.digest} was {state.fate}{by}: it may not be promoted again",
        )
    after = last_rb.seq if last_rb is not None and last_rb.stage == 3 else 0
    result = latest_result(ctx.history, EventKind.STAGE_COMPLETED, ctx.digest, 2)
    if result is not None and str(result.payload.get("status")) == "pass" and result.seq > after:
        ctx.stage2_result = result
        return _check(
            "stage2_accepted",
            True,
            f"Stage 2 acceptance gates passed for {ctx.digest} (ledger seq {result.seq})",
            evidence=[
                Evidence(
                    kind="summary",
                    ref=f"ledger:{result.event_id}",
                    detail=f"stage 2 result seq {result.seq} hash {result.hash}",
                )
            ],
        )
    if stage_excepted(ctx.history, ctx.digest, 2):
        exc = next(
            ev
            for ev in reversed(ctx.history)
            if ev.kind == EventKind.EXCEPTION_EMERGENCY
            and ev.candidate == ctx.digest
            and int(ev.payload.get("skip_stage", 0) or 0) == 2
        )
        ctx.exception = exc
        ok, noted = _noted(ctx, exc, f"emergency exception {exc.event_id}")
        if not ok:
            return _check("stage2_accepted", False, f"Stage 2 is skipped, but {noted}")
        return _check(
            "stage2_accepted",
            True,
            f"Stage 2 skipped by emergency exception {exc.event_id} ({exc.actor}: "
            f"{exc.payload.get('reason')}); a retrospective approval must follow{noted}",
            evidence=[Evidence(kind="summary", ref=f"ledger:{exc.event_id}", detail="exception.emergency")],
        )
    if result is not None and result.seq <= after:
        return _check(
            "stage2_accepted",
            False,
            f"the Stage 2 acceptance of {ctx.digest} predates its rollback "
            f"{last_rb.event_id if last_rb else ''}"
            ": the candidate was returned to Stage 1 and needs new Stage 1 and Stage 2 results",
        )
    if result is None:
        return _check("stage2_accepted", False, f"no Stage 2 result for {ctx.digest} (the same digest)")
    return _check(
        "stage2_accepted", False, f"the latest Stage 2 result for {ctx.digest} is a fail (seq {result.seq})"
    )


def _live_image(kube: KubePort, ctx: PromotionContext) -> str | None:
    name, _ = deployment_of(ctx.rendered_docs, ctx.release)
    dep = kube.get(api_version="apps/v1", kind="Deployment", namespace=ctx.namespace, name=name)
    containers = ((((dep or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return str(containers[0].get("image")) if containers else None


def _snapshot_live(kube: KubePort, ctx: PromotionContext) -> str | None:
    """Store the live objects the production release renders (the pre-ledger stable) in the content store."""

    live: list[dict[str, Any]] = []
    for doc in ctx.rendered_docs:
        obj = kube.get(
            api_version=str(doc.get("apiVersion")),
            kind=str(doc.get("kind")),
            namespace=ctx.namespace,
            name=str(doc["metadata"]["name"]),
        )
        if obj is not None:
            live.append(clean_object(obj))
    if not live:
        return None
    sha, _ = store_manifests(yaml.safe_dump_all(live, sort_keys=True), ctx.home)
    return sha


def check_previous(ctx: PromotionContext, store: EventStore, kube: KubePort, helm: HelmPort) -> Check:

    render(ctx, helm)
    decl = ctx.decl
    lin = lineage(store, ctx.workload)
    current = lin.current_stable
    helm_rev = helm_revision(helm, ctx.release, ctx.namespace)
    routing = routing_snapshot(kube, decl, ctx.namespace)
    if current is not None:
        if current.digest == ctx.digest:
            return _check("previous_stable_recorded", False, f"{ctx.digest} is already the current stable")
        prev = RestoreTarget.from_restore(
            current.restore,
            decl,
            source="ledger lineage (current stable)",
            digest=current.digest,
            image=current.image,
        )
        if prev.helm_revision is None and helm_rev is not None:
            prev = replace(prev, helm_revision=helm_rev)
        if not prev.routing_snapshot:
            prev = replace(prev, routing_snapshot=tuple(routing))
    else:
        live_image = _live_image(kube, ctx)
        image, source = live_image, "live production Deployment"
        if decl.rollback.previous_stable and "@" in decl.rollback.previous_stable:
            image, source = decl.rollback.previous_stable, "declaration rollback.previous_stable"
        digest = image_digest(image)
        if digest is None and helm_rev is None:
            return _check(
                "previous_stable_recorded",
                False,
                "previous stable unknown: no stable in the ledger lineage, no rollback.previous_stable, "
                f"no deployed revision of release {ctx.release} and no live Deployment to read",
            )
        sha = _snapshot_live(kube, ctx)
        prev = RestoreTarget(
            digest=digest,
            image=image,
            release=ctx.release,
            namespace=ctx.namespace,
            helm_revision=helm_rev,
            manifests_sha256=sha,
            routing_snapshot=tuple(routing),
            serving_release=ctx.release,
            source=source,
        )
        if live_image and image and live_image != image:
            source += f" (the live Deployment runs {live_image})"
            prev = replace(prev, source=source)
    ctx.previous = prev
    rev_text = (
        f", Helm revision {prev.helm_revision} of {prev.namespace}/{prev.release}"
        if prev.helm_revision
        else ""
    )
    return _check(
        "previous_stable_recorded",
        True,
        f"previous stable {prev.text}{rev_text} ({prev.source})",
        evidence=[
            Evidence(kind="digest", ref=prev.image or prev.digest or "unknown", detail="previous stable")
        ],
    )


def _backup_age(text: str, now: datetime) -> int | None:
    m = _AGE.search(text)
    if m:
        return int(m.group(1))
    m = _LAST.search(text)
    if m:
        try:
            ts = datetime.fromisoformat(m.group(1))
        except ValueError:
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return int((now - ts).total_seconds())
    return None


def check_backup(ctx: PromotionContext, now: datetime) -> Check:

    backup = ctx.decl.backup
    if not backup.stateful:
        return _check("backup_posture_current", True, "not stateful: no backup posture to check")
    assert backup.check is not None  # the declaration refuses a stateful workload without one
    env = {**os.environ, "RAILIANCE_WORKLOAD": ctx.workload}
    if backup.max_age is not None:
        env["RAILIANCE_BACKUP_MAX_AGE_SECONDS"] = str(backup.max_age)
    res = run_command(argv=list(backup.check), cwd=ctx.decl.railiance_dir, timeout=120.0, env=env)
    cmd = " ".join(backup.check)
    if not res.ok:
        why = "timed out" if res.timed_out else f"exit {res.exit_code}"
        return _check(
            "backup_posture_current", False, f"backup check `{cmd}` {why}: {res.output_tail[-300:]}"
        )
    age = _backup_age(res.output_tail, now)
    if backup.max_age is not None:
        if age is None:
            return _check(
                "backup_posture_current",
                False,
                f"backup check `{cmd}` exited 0 but stated no backup age (print age_seconds=N or "
                f"last_backup=ISO-8601); freshness within {backup.max_age}s cannot be shown",
            )
        if age > backup.max_age:
            return _check(
                "backup_posture_current",
                False,
                f"latest backup is {age}s old, older than backup.max_age {backup.max_age}s",
            )
    return _check(
        "backup_posture_current",
        True,
        f"backup check `{cmd}` exit 0" + (f"; latest backup {age}s old" if age is not None else ""),
        evidence=[Evidence(kind="summary", ref=f"command:{cmd}", detail="exit 0")],
    )


def _stage3_approval(store: EventStore, ctx: PromotionContext) -> tuple[RecordedEvent | None, str]:

    state = approval_state(store, ctx.workload, ctx.digest, 3)
    if not state.granted:
        why = (
            f"revoked by {state.revoked_by} ({state.revocation_reason})"
            if state.revoked
            else "no approval.granted for stage 3 and this digest"
        )
        return None, why
    ev = next(e for e in ctx.history if e.event_id == state.approval_id)
    return ev, f"approved by {ev.actor} (event {ev.event_id})"


def check_migrations(store: EventStore, ctx: PromotionContext) -> Check:
    mig = ctx.decl.migrations
    cls = mig.classification
    if cls is None:
        return _check(
            "migrations_approved",
            False,
            "migrations are unclassified: classify them (none, reversible, forward-only, requires-approval)",
        )
    if cls in ("none", "reversible"):
        return _check(
            "migrations_approved",
            True,
            f"migrations {cls}: no approval needed; rollback restores the previous manifests",
        )
    ev, why = _stage3_approval(store, ctx)
    if ev is None:
        return _check("migrations_approved", False, f"{cls} migrations need a Stage 3 approval: {why}")
    seq = (
        f"run by `{' '.join(mig.command)}` before traffic moves"
        if mig.command
        else "run by the chart with the release upgrade"
    )
    extra = (
        "; automatic rollback is blocked after promotion (a human decides)" if cls == "forward-only" else ""
    )
    return _check("migrations_approved", True, f"{cls} migrations {why}; sequenced: {seq}{extra}")


def check_statehub(ctx: PromotionContext, hub: StateHubPort | None) -> Check:
    """The State Hub progress note is required Stage 3 evidence: production traffic does not change
    while no State Hub is configured to receive it, unless a stage 3 ``statehub_note`` waiver says so."""

    name = "statehub_configured"
    if hub is not None:
        return _check(
            name, True, "State Hub configured; the promotion note is posted and its id kept in the ledger"
        )
    waiver = active_waivers(ctx.history, digest=ctx.digest, stage=3).get("statehub_note")
    if waiver is not None:
        return Check(
            name=name,
            status=CheckStatus.WAIVED,
            waiver=waiver.event_id,
            reason=f"no State Hub configured; waived by {waiver.actor}: {waiver.payload.get('reason', '')}",
        )
    return _check(
        name,
        False,
        "no State Hub configured (RAILIANCE_STATEHUB_URL is not set): Stage 3 evidence "
        "includes a State Hub progress note; configure it or record a stage 3 waiver for "
        "statehub_note",
    )


def check_human(store: EventStore, ctx: PromotionContext) -> Check:
    if not ctx.decl.production_critical:
        return _check("human_approval", True, "not required (workload is not production-critical)")
    ev, why = _stage3_approval(store, ctx)
    if ev is None:
        return _check(
            "human_approval",
            False,
            f"production-critical: {why}; explicit human approval is required before production traffic "
            "changes",
        )
    if ev.actor == ctx.operator:
        return _check(
            "human_approval",
            False,
            f"separation of duties: {ctx.operator} approved this candidate and cannot also promote it",
        )
    if not signed_principal(ev.payload):
        return _check(
            "human_approval", False, f"production-critical approval {ev.event_id} by {ev.actor} {UNSIGNED}"
        )
    ok, noted = _noted(ctx, ev, f"production-critical approval {ev.event_id} by {ev.actor}")
    if not ok:
        return _check("human_approval", False, noted)
    ctx.approval = ev
    return _check(
        "human_approval",
        True,
        why + noted,
        evidence=[Evidence(kind="summary", ref=f"ledger:{ev.event_id}", detail=f"approval by {ev.actor}")],
    )


def _noted(ctx: PromotionContext, ev: RecordedEvent, what: str) -> tuple[bool, str]:
    """``notes.note_gate`` with the stage 3 ``statehub_note`` waiver."""
    waiver = active_waivers(ctx.history, digest=ctx.digest, stage=3).get("statehub_note")
    return note_gate(ctx.history, ev.event_id, what, waiver)


def check_rollback(ctx: PromotionContext, kube: KubePort, helm: HelmPort) -> Check:
    rbk = ctx.decl.rollback
    names = ctx.decl.check_names()
    if not rbk.verification:
        return _check(
            "rollback_available", False, "no rollback verification check declared (rollback.verification)"
        )
    if rbk.verification not in names:
        return _check(
            "rollback_available", False, f"rollback.verification {rbk.verification!r} names no declared check"
        )
    prev = ctx.previous
    switch_text = ""
    if ctx.form == "routing-switch":
        if prev is None:
            return _check("rollback_available", False, "no previous stable to switch back to")
        problem = _plan_switch(ctx, kube, helm)
        if problem:
            return _check("rollback_available", False, problem)
        assert ctx.switch is not None
        switch_text = (
            f"; routing switch: Service {ctx.namespace}/{ctx.decl.routing.service} selector "
            f"{ctx.switch['selector_before']} -> {ctx.switch['selector_text']}, undone by restoring the "
            f"previous selector ({ctx.switch['previous_pods']})"
        )
    elif prev is not None and (prev.serving_release or prev.release) != ctx.release:
        return _check(
            "rollback_available",
            False,
            f"the current stable {prev.text} is served by release {prev.serving_release or prev.release} "
            f"after a routing switch; replacing release {ctx.release} would leave the stable Service on the "
            "switched release and no rollback could restore it. Promote with promotion.form = "
            '"routing-switch" (the candidate in another canary release), or roll back first',
        )
    if rbk.strategy == "manual":
        return _check(
            "rollback_available",
            True,
            f"manual recovery path {rbk.runbook}; verification {rbk.verification}{switch_text}",
        )
    if not (rbk.command or rbk.previous_stable):
        return _check(
            "rollback_available", False, "no rollback command or previous-stable reference declared"
        )
    if prev is None:
        return _check("rollback_available", False, "no previous stable to roll back to")
    if rbk.strategy == "helm-revision" and prev.helm_revision is None and not prev.manifests_sha256:
        return _check(
            "rollback_available",
            False,
            f"strategy helm-revision but release {ctx.namespace}/{ctx.release} has no deployed revision",
        )
    if rbk.strategy == "digest-and-values" and not prev.manifests_sha256:
        return _check(
            "rollback_available",
            False,
            f"strategy digest-and-values but no manifests are stored for {prev.text}",
        )
    if rbk.strategy == "routing" and ctx.form != "routing-switch":
        return _check(
            "rollback_available",
            False,
            "strategy routing rolls back by re-applying the routing a routing-switch promotion replaced; "
            "this workload promotes by release-replace (promotion.form), so a routing rollback could not "
            'restore the previous stable. Declare [promotion] form = "routing-switch", or rollback.strategy '
            "helm-revision or digest-and-values",
        )
    how = {
        "helm-revision": f"helm rollback {ctx.release} {prev.helm_revision}",
        "digest-and-values": f"re-apply manifests sha256:{prev.manifests_sha256}",
        "routing": f"re-apply the previous routing of {prev.text}",
    }[rbk.strategy]
    return _check(
        "rollback_available",
        True,
        f"`{rbk.command or 'railiance rollback ' + ctx.workload}` ({how}); verification "
        f"{rbk.verification}{switch_text}",
    )


def _plan_switch(ctx: PromotionContext, kube: KubePort, helm: HelmPort) -> str | None:
    """What a routing switch would change, checked before anything changes; the problem, or None.

    The candidate's Stage 2 canary release must be deployed in the production namespace, be neither
    the production release nor the release serving the current stable (else there would be nothing
    to switch back to), and its Service must select ready pods running exactly the candidate. The
    stable Service must exist and select ready pods of the previous stable (the rollback target).
    Sets ``ctx.switch``.
    """
    prev = ctx.previous
    assert prev is not None
    if ctx.canary is None:
        return (
            f"promotion.form routing-switch needs the Stage 2 canary release of {ctx.digest} still deployed "
            "(the stable Service is pointed at its pods); none is (Stage 2 skipped or its canary removed)"
        )
    p = ctx.canary.payload
    release, namespace = str(p["release"]["name"]), str(p["release"]["namespace"])
    serving = prev.serving_release or prev.release
    if namespace != ctx.namespace:
        return f"the canary release {namespace}/{release} is not in the production namespace {ctx.namespace}"
    if release in (ctx.release, serving):
        return (
            f"the canary release {release} is the release serving the current stable {prev.text}: switching "
            "to "
            "it would leave no previous workload to switch back to. With routing-switch, alternate "
            "stages.canary.release between two names so a canary never lands in the serving release"
        )
    spec = dc.RoutingSpec.from_dict(p["routing"])
    service = ctx.decl.routing.service
    stable_svc, before, prev_pods = selected_pods(kube, ctx.namespace, service)
    if stable_svc is None:
        return f"the stable Service {ctx.namespace}/{service} does not exist"
    canary_svc, after, pods = selected_pods(kube, ctx.namespace, spec.canary_service)
    selector = ((canary_svc or {}).get("spec") or {}).get("selector") or {}
    if canary_svc is None or not selector:
        return f"the canary Service {ctx.namespace}/{spec.canary_service} is missing or selects nothing"
    images = sorted(
        {str(c.get("image")) for q in pods for c in (q.get("spec") or {}).get("containers") or []}
    )
    ready = sum(1 for q in pods if pod_ready(q))
    if images != [ctx.image] or ready == 0:
        return (
            f"the canary release's pods ({after}) are not ready on the candidate: {ready}/{len(pods)} ready, "
            f"images {', '.join(images) or 'none'}"
        )
    prev_images = sorted(
        {str(c.get("image")) for q in prev_pods for c in (q.get("spec") or {}).get("containers") or []}
    )
    prev_ready = sum(1 for q in prev_pods if pod_ready(q))
    if prev_ready == 0 or (prev.image and prev_images != [prev.image]):
        return (
            f"the stable Service {service} ({before}) does not select ready pods of the previous stable "
            f"{prev.text} ({prev_ready}/{len(prev_pods)} ready, images {', '.join(prev_images) or 'none'}): "
            "a routing rollback would have nothing to switch back to"
        )
    man = p.get("manifests") or {}
    ctx.switch = {
        "release": release,
        "namespace": namespace,
        "helm_revision": helm_revision(helm, release, namespace),
        "manifests_sha256": man.get("sha256"),
        "canary_service": spec.canary_service,
        "spec": spec,
        "selector": {str(k): str(v) for k, v in selector.items()},
        "selector_text": after,
        "selector_before": before,
        "service_before": clean_object(stable_svc),
        "previous_serving_release": serving,
        "previous_pods": f"{prev_ready}/{len(prev_pods)} pods ready on "
        f"{prev.image or ', '.join(prev_images)}",
    }
    return None
