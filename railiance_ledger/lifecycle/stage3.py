"""Stage 3: production promotion of the accepted candidate, with automatic rollback.

``promote`` runs the spec's six prechecks as named checks, all before anything changes:

    stage2_accepted           Stage 2 acceptance (latest stage 2 result passed) for the same digest,
                              or a recorded emergency exception skipping Stage 2; not after a
                              rollback that blocked/abandoned the candidate or returned it to Stage 1
    previous_stable_recorded  the stable being replaced: the ledger lineage's current stable, else
                              (first promotion) the declared rollback.previous_stable or the live
                              production Deployment, with the production release's Helm revision
                              and a snapshot of its live objects and routing (the rollback target)
    backup_posture_current    stateful workloads: the declared backup.check exits 0 (and states a
                              backup age within backup.max_age when one is declared)
    migrations_approved       forward-only / requires-approval migrations need a Stage 3 approval
                              in force; none / reversible pass; unclassified fails
    human_approval            production-critical: an approval.granted for stage 3 and this digest,
                              not revoked, by someone other than the promoting operator
    rollback_available        a rollback command (or runbook) and a rollback verification check
                              naming a declared check, and a usable target for the strategy

Any failure: ``stage.completed`` (stage 3, fail), nothing changed, exit 1. Otherwise the promotion
(``stage.started`` 3 first, so an interrupted promotion is visible and ``rollback`` can finish it):

1. weighted canaries first take all the host's traffic (canary weight 100 / HTTPRoute canary
   backend 100), so production is served by the observed candidate while the stable release is
   replaced (``routing.changed``);
2. the stable Helm release is upgraded to the candidate pinned by digest (production values); its
   rendered manifests are stored content-addressed and the values files digested; the rollout is
   awaited (every pod on the candidate image and ready);
3. the canary routing and release are removed (the stable release now serves the candidate);
4. production routing is read back (the host routes to the stable service, nothing routes to the
   canary, the stable service selects only candidate pods) and the declared ``[[smoke]]`` checks are
   run through the production URL (``routing.changed``);
5. when routing and smoke pass: ``promotion.completed`` (the payload the lineage projection folds),
   a State Hub note, and ``stage.completed`` (stage 3, pass). Otherwise the previous stable is
   restored automatically (``rollback.started``/``rollback.completed`` via ``lifecycle.rollback``)
   and ``stage.completed`` (stage 3, fail) records it; a forward-only migration blocks the automatic
   rollback and the result says that a human must decide.

With ``[promotion] form = "routing-switch"`` steps 1-3 are replaced by a routing switch: the
canary's own routing is removed (its release is kept: it becomes the stable workload), the exact
routing objects are recorded (``routing_previous``), the stable Service's selector is set to the
canary Service's selector, and the production release is left untouched as the previous stable's
workload. Read-back and smoke follow as above; a failure re-applies ``routing_previous``
(``rollback`` with strategy ``routing``).

``lineage_with_evidence`` is the read helper for ``railiance lineage WORKLOAD --at TIMESTAMP``: the
projection plus, per stable, the Stage 3 stage-result ledger reference and the State Hub note ids.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.domain.rules import stage_excepted
from railiance_ledger.domain.stage_result import (
    Approval,
    Candidate,
    Check,
    CheckStatus,
    Evidence,
    StageResult,
    Workload,
    overall_status,
)
from railiance_ledger.errors import AdapterError, RailianceError, RuleViolation
from railiance_ledger.lifecycle import rollback as rb
from railiance_ledger.lifecycle.checks import guarded as _guard
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.stage2 import StageOutcome

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort

__all__ = [
    "PRECHECKS",
    "PromotionOutcome",
    "lineage_with_evidence",
    "promote",
]

PRECHECKS: tuple[str, ...] = (
    "stage2_accepted",
    "previous_stable_recorded",
    "backup_posture_current",
    "migrations_approved",
    "human_approval",
    "rollback_available",
    "statehub_configured",
)
"""Every Stage 3 precheck, in the order they run (all before anything changes): the spec's six, then
that the required State Hub note has somewhere to go."""
PROMOTION_CHECKS: tuple[str, ...] = (
    "promotion_applied",
    "stable_routing_points_at_candidate",
    "post_promotion_smoke",
)
"""The checks a Stage 3 result reports after the prechecks, once the promotion was attempted (a failed
one adds ``automatic_rollback``); all pass in a passing result."""

FIELD_MANAGER = "railiance-ledger"
INGRESS_GV = "networking.k8s.io/v1"
GATEWAY_GV = "gateway.networking.k8s.io/v1"
_AGE = re.compile(r"\bage_seconds\s*[=:]\s*(\d+)")
_LAST = re.compile(r"\blast_backup\s*[=:]\s*(\S+)")


@dataclass
class PromotionOutcome(StageOutcome):
    """A Stage 3 result: the stage-result document (``phase`` ``completed``), exit code, events.

    ``rolled_back`` is True when the promotion failed after changing production and the previous
    stable was restored; ``rollback`` is that rollback's document; ``workflow_id`` names the
    promotion (also in the ledger and the State Hub note).
    """

    workflow_id: str | None = None
    rollback: dict[str, Any] | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    decl: Declaration
    digest: str
    image: str
    repository: str
    revision: str | None
    history: list[RecordedEvent]
    namespace: str
    release: str
    operator: str
    home: Path | None
    stage2_result: RecordedEvent | None = None
    exception: RecordedEvent | None = None
    rendered_text: str = ""
    rendered_docs: list[dict[str, Any]] = field(default_factory=list)
    previous: rb.RestoreTarget | None = None
    approval: RecordedEvent | None = None
    canary: RecordedEvent | None = None
    switch: dict[str, Any] | None = None

    @property
    def workload(self) -> str:
        return self.decl.workload.name

    @property
    def form(self) -> str:
        """The declared promotion form (``[promotion] form``): ``release-replace`` or ``routing-switch``."""
        return str(self.decl.promotion.form)


def _values_files(decl: Declaration) -> list[Path]:
    files: list[Path] = []
    if decl.chart.values:
        files.append(decl.resolve(decl.chart.values))
    if decl.stages.production.values:
        files.append(decl.resolve(decl.stages.production.values))
    return files


def _set_values(ctx: _Ctx) -> dict[str, str]:
    return {"image.repository": ctx.repository, "image.digest": ctx.digest}


def _helm_command(ctx: _Ctx) -> str:
    decl = ctx.decl
    args = ["helm", "upgrade", "--install", ctx.release, str(decl.chart.path), "--namespace", ctx.namespace]
    for vf in (decl.chart.values, decl.stages.production.values):
        if vf:
            args += ["--values", str(vf)]
    for k, v in _set_values(ctx).items():
        args += ["--set-literal", f"{k}={v}"]
    return shlex.join(args + ["--wait"])


def _render(ctx: _Ctx, helm: HelmPort) -> None:
    from railiance_ledger.lifecycle.stage2 import canonical_manifests

    if ctx.rendered_text:
        return
    decl = ctx.decl
    text = helm.template(
        chart=decl.resolve(decl.chart.path),
        release=ctx.release,
        namespace=ctx.namespace,
        values_files=_values_files(decl),
        set_values=_set_values(ctx),
        kube_version=decl.workload.kubernetes_version,
    )
    ctx.rendered_text = canonical_manifests(text)
    ctx.rendered_docs = rb.split_docs(ctx.rendered_text)
    for doc in ctx.rendered_docs:
        doc.setdefault("metadata", {}).setdefault("namespace", ctx.namespace)


def _store_values(
    decl: Declaration, home: Path | None, files: Sequence[str | None] | None = None
) -> list[dict[str, Any]]:
    """sha256 of every production values file (or of ``files``); each copied to ``$RAILIANCE_HOME/values/<sha256>.yaml``."""
    from railiance_ledger import config

    out: list[dict[str, Any]] = []
    base = (home or config.railiance_home()) / "values"
    for rel in files if files is not None else (decl.chart.values, decl.stages.production.values):
        if not rel:
            continue
        path = decl.resolve(rel)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        base.mkdir(parents=True, exist_ok=True)
        target = base / f"{sha}.yaml"
        if not target.exists():
            target.write_bytes(data)
        out.append({"file": str(rel), "sha256": sha, "bytes": len(data)})
    return out


def _latest(
    history: Sequence[RecordedEvent], kind: str, digest: str, stage: int | None = None
) -> RecordedEvent | None:
    found: RecordedEvent | None = None
    for ev in history:
        if ev.kind == kind and ev.candidate == digest and (stage is None or ev.stage == stage):
            found = ev
    return found


def _canary_deployment(history: Sequence[RecordedEvent], digest: str) -> RecordedEvent | None:
    """The candidate's latest Stage 2 ``stage.started`` whose canary was not rolled back since."""
    started = _latest(history, EventKind.STAGE_STARTED, digest, 2)
    if started is None:
        return None
    for ev in history:
        if (
            ev.seq > started.seq
            and ev.candidate == digest
            and ev.kind == EventKind.ROLLBACK_COMPLETED
            and ev.stage == 2
        ):
            return None
    return started


# ---------------------------------------------------------------------------------------- prechecks


def _check_stage2(ctx: _Ctx) -> Check:
    last_rb = _latest(ctx.history, EventKind.ROLLBACK_COMPLETED, ctx.digest)
    if last_rb is not None and last_rb.payload.get("candidate_fate") in ("blocked", "abandoned"):
        return _check(
            "stage2_accepted",
            False,
            f"{ctx.digest} was {last_rb.payload['candidate_fate']} by rollback {last_rb.event_id}: "
            "it may not be promoted again",
        )
    after = last_rb.seq if last_rb is not None and last_rb.stage == 3 else 0
    result = _latest(ctx.history, EventKind.STAGE_COMPLETED, ctx.digest, 2)
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
        return _check(
            "stage2_accepted",
            True,
            f"Stage 2 skipped by emergency exception {exc.event_id} ({exc.actor}: "
            f"{exc.payload.get('reason')}); a retrospective approval must follow",
            evidence=[Evidence(kind="summary", ref=f"ledger:{exc.event_id}", detail="exception.emergency")],
        )
    if result is not None and result.seq <= after:
        return _check(
            "stage2_accepted",
            False,
            f"the Stage 2 acceptance of {ctx.digest} predates its rollback {last_rb.event_id if last_rb else ''}"
            ": the candidate was returned to Stage 1 and needs new Stage 1 and Stage 2 results",
        )
    if result is None:
        return _check("stage2_accepted", False, f"no Stage 2 result for {ctx.digest} (the same digest)")
    return _check(
        "stage2_accepted", False, f"the latest Stage 2 result for {ctx.digest} is a fail (seq {result.seq})"
    )


def _live_image(kube: KubePort, ctx: _Ctx) -> str | None:
    name, _ = rb.deployment_of(ctx.rendered_docs, ctx.release)
    dep = kube.get(api_version="apps/v1", kind="Deployment", namespace=ctx.namespace, name=name)
    containers = ((((dep or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return str(containers[0].get("image")) if containers else None


def _routing_snapshot(kube: KubePort, decl: Declaration, namespace: str) -> list[dict[str, Any]]:
    """The production routing objects (Ingress/HTTPRoute for the host or the stable service), cleaned."""
    out: list[dict[str, Any]] = []
    for obj in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=namespace):
        obj = dict(obj, kind="Ingress", apiVersion=INGRESS_GV)
        if decl.routing.service in _ingress_services(obj, decl.routing.host) and not _is_canary(obj):
            out.append(rb.clean_object(obj))
    if kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute"):
        for obj in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=namespace):
            obj = dict(obj, kind="HTTPRoute", apiVersion=GATEWAY_GV)
            if decl.routing.service in _route_services(obj, decl.routing.host):
                out.append(rb.clean_object(obj))
    return out


def _snapshot_live(kube: KubePort, ctx: _Ctx) -> str | None:
    """Store the live objects the production release renders (the pre-ledger stable) in the content store."""
    import yaml  # type: ignore[import-untyped]

    from railiance_ledger.lifecycle.stage2 import store_manifests

    live: list[dict[str, Any]] = []
    for doc in ctx.rendered_docs:
        obj = kube.get(
            api_version=str(doc.get("apiVersion")),
            kind=str(doc.get("kind")),
            namespace=ctx.namespace,
            name=str(doc["metadata"]["name"]),
        )
        if obj is not None:
            live.append(rb.clean_object(obj))
    if not live:
        return None
    sha, _ = store_manifests(yaml.safe_dump_all(live, sort_keys=True), ctx.home)
    return sha


def _helm_revision(helm: HelmPort, release: str, namespace: str) -> int | None:
    try:
        revisions = helm.history(release=release, namespace=namespace)
    except AdapterError as exc:
        if "not found" in str(exc).lower():
            return None
        raise
    deployed = [r for r in revisions if str(r.get("status", "")).lower() == "deployed"]
    if not deployed:
        return None
    rev = deployed[-1].get("revision")
    return int(rev) if isinstance(rev, (int, str)) and str(rev).isdigit() else None


def _check_previous(ctx: _Ctx, store: EventStore, kube: KubePort, helm: HelmPort) -> Check:
    from railiance_ledger.ledger.projections import lineage

    _render(ctx, helm)
    decl = ctx.decl
    lin = lineage(store, ctx.workload)
    current = lin.current_stable
    helm_rev = _helm_revision(helm, ctx.release, ctx.namespace)
    routing = _routing_snapshot(kube, decl, ctx.namespace)
    if current is not None:
        if current.digest == ctx.digest:
            return _check("previous_stable_recorded", False, f"{ctx.digest} is already the current stable")
        prev = rb.RestoreTarget.from_restore(
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
        digest = rb.image_digest(image)
        if digest is None and helm_rev is None:
            return _check(
                "previous_stable_recorded",
                False,
                "previous stable unknown: no stable in the ledger lineage, no rollback.previous_stable, "
                f"no deployed revision of release {ctx.release} and no live Deployment to read",
            )
        sha = _snapshot_live(kube, ctx)
        prev = rb.RestoreTarget(
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


def _check_backup(ctx: _Ctx, now: datetime) -> Check:
    import os

    from railiance_ledger.adapters.process import run_command

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


def _stage3_approval(store: EventStore, ctx: _Ctx) -> tuple[RecordedEvent | None, str]:
    from railiance_ledger.lifecycle.approvals import approval_state

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


def _check_migrations(store: EventStore, ctx: _Ctx) -> Check:
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


def _check_statehub(ctx: _Ctx, hub: StateHubPort | None) -> Check:
    """The State Hub progress note is required Stage 3 evidence: production traffic does not change
    while no State Hub is configured to receive it, unless a stage 3 ``statehub_note`` waiver says so."""
    from railiance_ledger.lifecycle.waivers import active_waivers

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


def _check_human(store: EventStore, ctx: _Ctx) -> Check:
    if not ctx.decl.production_critical:
        return _check("human_approval", True, "not required (workload is not production-critical)")
    ev, why = _stage3_approval(store, ctx)
    if ev is None:
        return _check(
            "human_approval",
            False,
            f"production-critical: {why}; explicit human approval is required before production traffic changes",
        )
    if ev.actor == ctx.operator:
        return _check(
            "human_approval",
            False,
            f"separation of duties: {ctx.operator} approved this candidate and cannot also promote it",
        )
    ctx.approval = ev
    return _check(
        "human_approval",
        True,
        why,
        evidence=[Evidence(kind="summary", ref=f"ledger:{ev.event_id}", detail=f"approval by {ev.actor}")],
    )


def _check_rollback(ctx: _Ctx, kube: KubePort, helm: HelmPort) -> Check:
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


def _plan_switch(ctx: _Ctx, kube: KubePort, helm: HelmPort) -> str | None:
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
            f"the canary release {release} is the release serving the current stable {prev.text}: switching to "
            "it would leave no previous workload to switch back to. With routing-switch, alternate "
            "stages.canary.release between two names so a canary never lands in the serving release"
        )
    spec = dc.RoutingSpec.from_dict(p["routing"])
    service = ctx.decl.routing.service
    stable_svc, before, prev_pods = rb._selected_pods(kube, ctx.namespace, service)
    if stable_svc is None:
        return f"the stable Service {ctx.namespace}/{service} does not exist"
    canary_svc, after, pods = rb._selected_pods(kube, ctx.namespace, spec.canary_service)
    selector = ((canary_svc or {}).get("spec") or {}).get("selector") or {}
    if canary_svc is None or not selector:
        return f"the canary Service {ctx.namespace}/{spec.canary_service} is missing or selects nothing"
    images = sorted(
        {str(c.get("image")) for q in pods for c in (q.get("spec") or {}).get("containers") or []}
    )
    ready = sum(1 for q in pods if rb._ready(q))
    if images != [ctx.image] or ready == 0:
        return (
            f"the canary release's pods ({after}) are not ready on the candidate: {ready}/{len(pods)} ready, "
            f"images {', '.join(images) or 'none'}"
        )
    prev_images = sorted(
        {str(c.get("image")) for q in prev_pods for c in (q.get("spec") or {}).get("containers") or []}
    )
    prev_ready = sum(1 for q in prev_pods if rb._ready(q))
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
        "helm_revision": _helm_revision(helm, release, namespace),
        "manifests_sha256": man.get("sha256"),
        "canary_service": spec.canary_service,
        "spec": spec,
        "selector": {str(k): str(v) for k, v in selector.items()},
        "selector_text": after,
        "selector_before": before,
        "service_before": rb.clean_object(stable_svc),
        "previous_serving_release": serving,
        "previous_pods": f"{prev_ready}/{len(prev_pods)} pods ready on "
        f"{prev.image or ', '.join(prev_images)}",
    }
    return None


# ---------------------------------------------------------------------------------------- routing read-back


def _is_canary(obj: Mapping[str, Any]) -> bool:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(dc.NGINX + "canary", "")).lower() == "true"


def _ingress_services(obj: Mapping[str, Any], host: str | None) -> set[str]:
    out: set[str] = set()
    spec = obj.get("spec") or {}
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        out.add(str(default))
    for rule in spec.get("rules") or []:
        if host and rule.get("host") not in (None, "", host):
            continue
        for p in (rule.get("http") or {}).get("paths") or []:
            name = ((p.get("backend") or {}).get("service") or {}).get("name")
            if name:
                out.add(str(name))
    return out


def _route_services(obj: Mapping[str, Any], host: str | None) -> dict[str, float]:
    spec = obj.get("spec") or {}
    if host and spec.get("hostnames") and host not in (spec.get("hostnames") or []):
        return {}
    out: dict[str, float] = {}
    for rule in spec.get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            w = ref.get("weight", 1)
            out[str(ref.get("name"))] = out.get(str(ref.get("name")), 0.0) + float(
                w if isinstance(w, (int, float)) else 1
            )
        for flt in rule.get("filters") or []:
            if flt.get("type") == "RequestMirror":
                name = ((flt.get("requestMirror") or {}).get("backendRef") or {}).get("name")
                out.setdefault(f"mirror:{name}", 1.0)
    return out


def production_routing(
    kube: KubePort, decl: Declaration, *, namespace: str, image: str, canary_service: str | None
) -> dict[str, Any]:
    """Read production routing back: what the host routes to, and what the stable service selects.

    ``ok`` is True when the host routes only to the stable service (no canary Ingress, no canary
    backend or mirror), and every live pod the stable service selects runs ``image`` (at least one
    of them ready).
    """
    host, stable = decl.routing.host, decl.routing.service
    serving: list[str] = []
    canary_left: list[str] = []
    for obj in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=namespace):
        name = f"Ingress/{obj['metadata']['name']}"
        services = _ingress_services(obj, host)
        if canary_service and canary_service in services or (_is_canary(obj) and services):
            canary_left.append(name)
        elif stable in services:
            serving.append(name)
    if kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute"):
        for obj in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=namespace):
            name = f"HTTPRoute/{obj['metadata']['name']}"
            weights = _route_services(obj, host)
            if canary_service and (
                weights.get(canary_service, 0) > 0 or f"mirror:{canary_service}" in weights
            ):
                canary_left.append(name)
            elif weights.get(stable, 0) > 0:
                serving.append(name)
    svc = kube.get(api_version="v1", kind="Service", namespace=namespace, name=stable)
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = [
        p
        for p in (
            kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=sel) if sel else []
        )
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    images = sorted(
        {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
    )
    ready = sum(
        1
        for p in pods
        if any(
            c.get("type") == "Ready" and str(c.get("status")) == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )
    problems: list[str] = []
    if svc is None:
        problems.append(f"stable Service {stable} not found")
    if host and not serving:
        problems.append(f"no Ingress or HTTPRoute routes {host} to the stable service {stable}")
    if canary_left:
        problems.append("canary routing still present: " + ", ".join(canary_left))
    if not pods or ready == 0:
        problems.append(f"the stable service {stable} selects no ready pod")
    if images and images != [image]:
        problems.append(
            f"the stable service {stable} selects pods running {', '.join(images)}, not only {image}"
        )
    return {
        "ok": not problems,
        "host": host,
        "stable_service": stable,
        "serving_objects": serving,
        "canary_objects": canary_left,
        "selector": sel,
        "pods": f"{ready}/{len(pods)} ready",
        "pod_images": images,
        "detail": "; ".join(problems)
        if problems
        else f"{host or 'service'} -> {stable} ({', '.join(serving) or 'service only'}); {ready}/{len(pods)} pods ready on {image}",
    }


def _judge_promotion(
    decl: Declaration, kube: KubePort, http: httpx.Client, namespace: str, routing: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], Check, str | None]:
    """After a promotion: the smoke results, the ``post_promotion_smoke`` check, and why the promotion
    failed (stable routing not on the candidate, or a failed smoke), or ``None`` when it stands."""
    smoke = _smoke(decl, kube, http, namespace)
    smoke_ok = bool(smoke) and all(s["ok"] for s in smoke)
    check = _check(
        "post_promotion_smoke",
        smoke_ok,
        "; ".join(f"{s['name']} {s['target']}: {s['detail']}" for s in smoke)
        or "no [[smoke]] checks declared: Stage 3 requires a smoke result after promotion",
        evidence=[
            Evidence(kind="http-status", ref=str(s["target"]), detail=f"{s['name']}: {s['detail']}")
            for s in smoke
        ],
    )
    failure: str | None = None
    if not routing["ok"]:
        failure = f"stable routing does not point at the promoted candidate: {routing['detail']}"
    elif not smoke_ok:
        failure = "post-promotion smoke failed: " + "; ".join(
            f"{s['name']}: {s['detail']}" for s in smoke if not s["ok"]
        )
    return smoke, check, failure


def _smoke(decl: Declaration, kube: KubePort, http: httpx.Client, namespace: str) -> list[dict[str, Any]]:
    """Every declared ``[[smoke]]`` check through the production URL (else the stable service proxy)."""
    out: list[dict[str, Any]] = []
    for s in decl.smoke:
        if decl.routing.host:
            res = rb.probe_url(http, decl, s.path, s.expect_status, retries=2)
        else:
            res = rb.run_check(decl=decl, kube=kube, http=http, name=s.name, namespace=namespace)
        out.append({"name": s.name, "path": s.path, "expect_status": s.expect_status, **res})
    return out


# ---------------------------------------------------------------------------------------- results


def _approval_model(ctx: _Ctx) -> Approval:
    if not ctx.decl.production_critical:
        return Approval(required=False, decision="not required")
    if ctx.approval is None:
        return Approval(required=True, decision="missing")
    return Approval(required=True, decision=ctx.approval.event_id, operator=ctx.approval.actor)


def _rollback_target(ctx: _Ctx) -> dict[str, Any] | None:
    if ctx.previous is None:
        return None
    kind = ctx.decl.rollback.strategy
    return {"kind": kind, **ctx.previous.as_dict(), "retained": True}


def _result(
    ctx: _Ctx, checks: list[Check], evidence: list[Evidence], started: datetime, finished: datetime
) -> StageResult:
    return StageResult(
        workload=Workload(name=ctx.workload, repo=ctx.decl.workload.repo),
        stage=3,
        candidate=Candidate(digest=ctx.digest, image=ctx.image, revision=ctx.revision),
        target_environment="production",
        checks=checks,
        status=overall_status(checks),
        evidence=evidence,
        rollback_target=_rollback_target(ctx),
        approval=_approval_model(ctx),
        started_at=_iso(started),
        finished_at=_iso(finished),
    )


def _complete(
    store: EventStore, ctx: _Ctx, result: StageResult
) -> tuple[dict[str, Any], list[RecordedEvent], list[str]]:
    doc = result.to_document()
    try:
        ev = store.append(
            [
                NewEvent(
                    stream=ctx.workload,
                    kind=EventKind.STAGE_COMPLETED,
                    actor=ctx.operator,
                    candidate=ctx.digest,
                    stage=3,
                    payload=redact_value(doc),
                )
            ]
        )[0]
    except RuleViolation as exc:
        return {**doc, "phase": "completed"}, [], [f"stage result not recorded: {exc}"]
    doc["ledger"] = {"seq": ev.seq, "hash": ev.hash}
    doc["phase"] = "completed"
    return doc, [ev], []


def _make_ctx(
    store: EventStore, decl: Declaration, image: str | None, operator: str, home: Path | None
) -> _Ctx:
    from railiance_ledger.lifecycle.stage2 import _resolve_candidate

    digest, pinned, repository, revision = _resolve_candidate(store, decl, image)
    return _Ctx(
        decl=decl,
        digest=digest,
        image=pinned,
        repository=repository,
        revision=revision,
        history=store.read_stream(decl.workload.name),
        namespace=decl.stages.production.namespace,
        release=decl.stages.production.release,
        operator=operator,
        home=home,
    )


# ---------------------------------------------------------------------------------------- promote


def promote(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None = None,
    image: str | None = None,
    now: Callable[[], datetime] = _utcnow,
    home: Path | None = None,
    ready_timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    helm_upgrade_args: Sequence[str] = (),
) -> PromotionOutcome:
    """Stage 3: every precheck first, then the promotion, read-back, smoke, and the record.

    Exit 0 with a passing stage-result document when the smoke passed and stable routing points at
    the candidate; exit 1 with a failing one when a precheck failed (nothing changed) or the
    promotion failed (the previous stable was restored automatically, unless a forward-only
    migration blocks that: then the result says a human must decide). ``image`` names the
    candidate (default: the newest registered). ``ready_timeout`` bounds each rollout wait.
    """
    from railiance_ledger.lifecycle.approvals import require_operator

    who = require_operator(operator, what="a promotion")
    started = now()
    ctx = _make_ctx(store, decl, image, who, home)
    ctx.canary = _canary_deployment(ctx.history, ctx.digest)
    checks: list[Check] = [_guard("stage2_accepted", lambda: _check_stage2(ctx))]
    checks.append(_guard("previous_stable_recorded", lambda: _check_previous(ctx, store, kube, helm)))
    checks.append(_guard("backup_posture_current", lambda: _check_backup(ctx, started)))
    checks.append(_guard("migrations_approved", lambda: _check_migrations(store, ctx)))
    checks.append(_guard("human_approval", lambda: _check_human(store, ctx)))
    checks.append(_guard("rollback_available", lambda: _check_rollback(ctx, kube, helm)))
    from railiance_ledger.lifecycle.notes import statehub_from_env

    hub = statehub if statehub is not None else statehub_from_env()
    checks.append(_guard("statehub_configured", lambda: _check_statehub(ctx, hub)))
    statehub = hub
    if overall_status(checks) == "fail":
        doc, events, warnings = _complete(store, ctx, _result(ctx, checks, [], started, now()))
        return PromotionOutcome(document=doc, exit_code=1, events=events, warnings=warnings)
    return _promote(
        store=store,
        ctx=ctx,
        checks=checks,
        kube=kube,
        helm=helm,
        http=http,
        statehub=statehub,
        now=now,
        started=started,
        ready_timeout=ready_timeout,
        sleep=sleep,
        helm_upgrade_args=helm_upgrade_args,
    )


def _shift_weight(kube: KubePort, spec: dc.RoutingSpec) -> str:
    """Send all of the host's traffic to the canary (weight 100); return the read-back text."""
    from railiance_ledger.lifecycle.stage2 import _read_routing

    full = replace(spec, weight=100)
    if full.provider is dc.Provider.GATEWAY_API:
        route = kube.get(
            api_version=GATEWAY_GV, kind="HTTPRoute", namespace=spec.namespace, name=spec.route_name
        )
        obj = dc.gateway_route_patch(route, full)
    else:
        obj = dc.nginx_canary_ingress(full)
    kube.apply(manifests=[obj], field_manager=FIELD_MANAGER)
    ok, reason = dc.routing_matches(full, _read_routing(kube, full))
    if not ok:
        raise _PromotionFailed(f"weighted shift to the candidate did not read back: {reason}")
    return reason


class _PromotionFailed(Exception):
    """A promotion step failed after production may have changed."""


def _promote(
    *,
    store: EventStore,
    ctx: _Ctx,
    checks: list[Check],
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    started: datetime,
    ready_timeout: float,
    sleep: Callable[[float], None],
    helm_upgrade_args: Sequence[str],
) -> PromotionOutcome:
    from railiance_ledger.lifecycle.stage2 import _remove, store_manifests

    if ctx.form == "routing-switch":
        return _promote_switch(
            store=store,
            ctx=ctx,
            checks=checks,
            kube=kube,
            helm=helm,
            http=http,
            statehub=statehub,
            now=now,
            started=started,
            ready_timeout=ready_timeout,
            sleep=sleep,
        )
    decl, workload = ctx.decl, ctx.workload
    assert ctx.previous is not None
    workflow_id = rb.new_workflow_id("promote", workload, ctx.digest)
    command = _helm_command(ctx)
    sha, _ = store_manifests(ctx.rendered_text, ctx.home)
    values = _store_values(decl, ctx.home)
    canary_payload = ctx.canary.payload if ctx.canary is not None else {}
    spec = dc.RoutingSpec.from_dict(canary_payload["routing"]) if canary_payload.get("routing") else None
    weighted = spec is not None and spec.form is dc.CanaryForm.WEIGHTED
    form = "weighted-shift-then-release-replace" if weighted else "release-replace"
    candidate_restore = {
        "digest": ctx.digest,
        "image": ctx.image,
        "release": ctx.release,
        "namespace": ctx.namespace,
        "manifests_sha256": sha,
        "migrations": decl.migrations.classification,
    }
    plan = {
        "workflow_id": workflow_id,
        "form": form,
        "command": command,
        "strategy": decl.rollback.strategy,
        "candidate": {"digest": ctx.digest, "image": ctx.image, "revision": ctx.revision},
        "previous_stable": ctx.previous.as_dict(),
        "candidate_restore": candidate_restore,
        "manifests": {"sha256": sha, "bytes": len(ctx.rendered_text.encode())},
        "values": values,
        "prechecks": [c.model_dump(mode="json") for c in checks],
        "started_at": _iso(started),
    }
    events = store.append(
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
    started_ev = events[0]
    steps: list[Check] = []
    routing: dict[str, Any] = {}
    smoke: list[dict[str, Any]] = []
    new_rev: Any = None
    failure: str | None = None
    try:
        if weighted and spec is not None:
            reason = _shift_weight(kube, spec)
            events += store.append(
                [
                    NewEvent(
                        stream=workload,
                        kind=EventKind.ROUTING_CHANGED,
                        actor=ctx.operator,
                        candidate=ctx.digest,
                        stage=3,
                        payload=redact_value(
                            {
                                "action": "weighted traffic shifted to the candidate",
                                "weight": 100,
                                "workflow_id": workflow_id,
                                "read_back": reason,
                            }
                        ),
                    )
                ]
            )
        status = helm.install_or_upgrade(
            chart=decl.resolve(decl.chart.path),
            release=ctx.release,
            namespace=ctx.namespace,
            values_files=_values_files(decl),
            set_values=_set_values(ctx),
            wait=True,
            extra_args=list(helm_upgrade_args),
            timeout=ready_timeout,
        )
        new_rev = status.get("version")
        name, _ = rb.deployment_of(ctx.rendered_docs, ctx.release)
        ok, detail = rb.await_rollout(
            kube=kube,
            namespace=ctx.namespace,
            deployment=name,
            image=ctx.image,
            timeout=ready_timeout,
            sleep=sleep,
        )
        steps.append(
            _check(
                "promotion_applied",
                ok,
                f"`{command}` -> revision {new_rev}; {detail}",
                evidence=[Evidence(kind="workflow", ref=workflow_id, detail=command)],
            )
        )
        if not ok:
            raise _PromotionFailed(f"the stable release did not become ready on the candidate: {detail}")
        removal = "no canary to remove"
        if ctx.canary is not None and spec is not None:
            p = ctx.canary.payload
            removal = _remove(
                kube=kube,
                helm=helm,
                spec=spec,
                release=str(p["release"]["name"]),
                namespace=str(p["release"]["namespace"]),
                creates=p.get("routing_created") or [],
                previous=p.get("routing_previous") or [],
            )
        routing = production_routing(
            kube,
            decl,
            namespace=ctx.namespace,
            image=ctx.image,
            canary_service=spec.canary_service if spec else None,
        )
        routing["canary_removal"] = removal
        steps.append(
            _check(
                "stable_routing_points_at_candidate",
                routing["ok"],
                routing["detail"],
                evidence=[
                    Evidence(kind="k8s-object", ref=o, detail="serves the host")
                    for o in routing["serving_objects"]
                ],
            )
        )
        events += store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.ROUTING_CHANGED,
                    actor=ctx.operator,
                    candidate=ctx.digest,
                    stage=3,
                    payload=redact_value(
                        {
                            "action": "production routing serves the promoted candidate; canary removed",
                            "workflow_id": workflow_id,
                            "read_back": routing,
                            "canary_removal": removal,
                        }
                    ),
                )
            ]
        )
        smoke, smoke_check, failure = _judge_promotion(decl, kube, http, ctx.namespace, routing)
        steps.append(smoke_check)
    except (_PromotionFailed, AdapterError, RailianceError) as exc:
        failure = str(exc)
        if not any(c.name == "promotion_applied" for c in steps):
            steps.append(_check("promotion_applied", False, failure, technical=isinstance(exc, AdapterError)))
    if failure is not None:
        return _fail_and_restore(
            store=store,
            ctx=ctx,
            checks=checks + steps,
            kube=kube,
            helm=helm,
            http=http,
            statehub=statehub,
            now=now,
            started=started,
            started_ev=started_ev,
            events=events,
            failure=failure,
            workflow_id=workflow_id,
            candidate_restore=candidate_restore,
            ready_timeout=ready_timeout,
            sleep=sleep,
        )

    snapshot = _routing_snapshot(kube, decl, ctx.namespace)
    prev = ctx.previous
    payload = {
        "digest": ctx.digest,
        "image": ctx.image,
        "revision": ctx.revision,
        "previous_stable": prev.digest,
        "previous_image": prev.image,
        "release": ctx.release,
        "namespace": ctx.namespace,
        "serving_release": ctx.release,
        "helm_revision": new_rev,
        "previous_helm_revision": prev.helm_revision,
        "manifests_sha256": sha,
        "values": values,
        "routing": {k: v for k, v in routing.items() if k != "ok"},
        "routing_snapshot": snapshot,
        "workflow_id": workflow_id,
        "command": command,
        "form": form,
        "strategy": decl.rollback.strategy,
        "migrations": decl.migrations.classification,
        "smoke": smoke,
        "approval_id": ctx.approval.event_id if ctx.approval else None,
        "stage3_started_seq": started_ev.seq,
        "previous_restore": {k: v for k, v in prev.as_dict().items() if k in rb.RESTORE_KEYS},
    }
    return _record_promotion(
        store=store,
        ctx=ctx,
        checks=checks + steps,
        payload=payload,
        routing=routing,
        smoke=smoke,
        statehub=statehub,
        now=now,
        started=started,
        events=events,
    )


def _promote_switch(
    *,
    store: EventStore,
    ctx: _Ctx,
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
    """The routing-switch form: the stable Service is pointed at the accepted canary release's pods.

    The production release is not touched (it keeps serving nothing but stays installed as the
    rollback target's workload). Steps: the canary's own routing is removed (its release is kept:
    it becomes the stable workload), the exact routing objects are read (``routing_previous``), the
    stable Service's selector is set to the canary Service's selector, routing is read back, the
    smoke runs through the production URL. Any failure restores ``routing_previous`` automatically.
    """
    from railiance_ledger.lifecycle.stage2 import _remove

    decl, workload = ctx.decl, ctx.workload
    prev, sw, canary = ctx.previous, ctx.switch, ctx.canary
    assert prev is not None and sw is not None and canary is not None
    ns, service = ctx.namespace, decl.routing.service
    spec: dc.RoutingSpec = sw["spec"]
    workflow_id = rb.new_workflow_id("promote", workload, ctx.digest)
    patch = json.dumps({"spec": {"selector": sw["selector"]}}, sort_keys=True, separators=(",", ":"))
    command = shlex.join(
        ["kubectl", "--namespace", ns, "patch", "service", service, "--type", "merge", "--patch", patch]
    )
    values = _store_values(decl, ctx.home, files=(decl.chart.values, decl.stages.canary.values))
    service_before: dict[str, Any] = sw["service_before"]
    candidate_restore = {
        "digest": ctx.digest,
        "image": ctx.image,
        "release": sw["release"],
        "namespace": ns,
        "serving_release": sw["release"],
        "helm_revision": sw["helm_revision"],
        "manifests_sha256": sw["manifests_sha256"],
        "migrations": decl.migrations.classification,
        "routing_previous": [service_before],
    }
    switch = {
        "service": f"{ns}/{service}",
        "selector_before": sw["selector_before"],
        "selector_after": sw["selector_text"],
        "canary_release": sw["release"],
        "canary_service": sw["canary_service"],
        "canary_helm_revision": sw["helm_revision"],
        "stable_release_kept": sw["previous_serving_release"],
    }
    plan = {
        "workflow_id": workflow_id,
        "form": "routing-switch",
        "command": command,
        "strategy": decl.rollback.strategy,
        "candidate": {"digest": ctx.digest, "image": ctx.image, "revision": ctx.revision},
        "previous_stable": prev.as_dict(),
        "candidate_restore": candidate_restore,
        "switch": switch,
        "manifests": {"sha256": sw["manifests_sha256"]},
        "values": values,
        "prechecks": [c.model_dump(mode="json") for c in checks],
        "started_at": _iso(started),
    }
    events = store.append(
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
    started_ev = events[0]
    steps: list[Check] = []
    routing: dict[str, Any] = {}
    smoke: list[dict[str, Any]] = []
    routing_previous: list[dict[str, Any]] = [service_before]
    routing_new: list[dict[str, Any]] = []
    removal: str | None = None
    failure: str | None = None
    p = canary.payload
    try:
        removal = _remove(
            kube=kube,
            helm=None,
            spec=spec,
            release=sw["release"],
            namespace=ns,
            creates=p.get("routing_created") or [],
            previous=p.get("routing_previous") or [],
        )
        if "FAILED" in removal:
            raise _PromotionFailed(f"the canary's own routing could not be removed: {removal}")
        routing_previous = [service_before, *_routing_snapshot(kube, decl, ns)]
        switched = rb.clean_object(service_before)
        switched["spec"] = {**(switched.get("spec") or {}), "selector": dict(sw["selector"])}
        kube.apply(manifests=[switched], field_manager=FIELD_MANAGER, force=True)
        live = kube.get(api_version="v1", kind="Service", namespace=ns, name=service)
        routing_new = [rb.clean_object(live or switched), *routing_previous[1:]]
        read = rb.routing_read_back(
            kube, [switched, *routing_previous[1:]], namespace=ns, service=service, image=ctx.image
        )
        steps.append(
            _check(
                "promotion_applied",
                bool(read["ok"]),
                f"`{command}` (canary release {sw['release']} revision {sw['helm_revision']} is now the "
                f"stable workload; release {ctx.release} untouched); {read['detail']}",
                evidence=[Evidence(kind="workflow", ref=workflow_id, detail=command)],
            )
        )
        if not read["ok"]:
            raise _PromotionFailed(
                f"the stable Service did not read back switched to the candidate: {read['detail']}"
            )
        routing = production_routing(
            kube, decl, namespace=ns, image=ctx.image, canary_service=spec.canary_service
        )
        routing["canary_removal"] = removal
        routing["switch"] = switch
        steps.append(
            _check(
                "stable_routing_points_at_candidate",
                routing["ok"],
                routing["detail"],
                evidence=[
                    Evidence(kind="k8s-object", ref=o, detail="serves the host")
                    for o in routing["serving_objects"]
                ]
                + [
                    Evidence(
                        kind="k8s-object",
                        ref=f"Service/{service}",
                        detail=f"selector {sw['selector_before']} -> {sw['selector_text']}",
                    )
                ],
            )
        )
        events += store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.ROUTING_CHANGED,
                    actor=ctx.operator,
                    candidate=ctx.digest,
                    stage=3,
                    payload=redact_value(
                        {
                            "action": "stable Service switched to the canary release's pods; canary routing "
                            "removed",
                            "workflow_id": workflow_id,
                            "switch": switch,
                            "routing_previous": routing_previous,
                            "routing_new": routing_new,
                            "read_back": routing,
                            "canary_removal": removal,
                        }
                    ),
                )
            ]
        )
        smoke, smoke_check, failure = _judge_promotion(decl, kube, http, ns, routing)
        steps.append(smoke_check)
    except (_PromotionFailed, AdapterError, RailianceError) as exc:
        failure = str(exc)
        if not any(c.name == "promotion_applied" for c in steps):
            steps.append(_check("promotion_applied", False, failure, technical=isinstance(exc, AdapterError)))
    if failure is not None:
        return _fail_and_restore(
            store=store,
            ctx=ctx,
            checks=checks + steps,
            kube=kube,
            helm=helm,
            http=http,
            statehub=statehub,
            now=now,
            started=started,
            started_ev=started_ev,
            events=events,
            failure=failure,
            workflow_id=workflow_id,
            candidate_restore={**candidate_restore, "routing_previous": routing_previous},
            ready_timeout=ready_timeout,
            sleep=sleep,
            strategy="routing",
        )

    payload = {
        "digest": ctx.digest,
        "image": ctx.image,
        "revision": ctx.revision,
        "previous_stable": prev.digest,
        "previous_image": prev.image,
        "release": sw["release"],
        "namespace": ns,
        "serving_release": sw["release"],
        "helm_revision": sw["helm_revision"],
        "previous_helm_revision": prev.helm_revision,
        "manifests_sha256": sw["manifests_sha256"],
        "values": values,
        "routing": {k: v for k, v in routing.items() if k != "ok"},
        "routing_snapshot": routing_new,
        "routing_previous": routing_previous,
        "routing_new": routing_new,
        "switch": switch,
        "stable_release": {
            "name": ctx.release,
            "namespace": ns,
            "helm_revision": _helm_revision(helm, ctx.release, ns),
            "changed": False,
        },
        "previous_serving_release": sw["previous_serving_release"],
        "workflow_id": workflow_id,
        "command": command,
        "form": "routing-switch",
        "strategy": decl.rollback.strategy,
        "migrations": decl.migrations.classification,
        "smoke": smoke,
        "approval_id": ctx.approval.event_id if ctx.approval else None,
        "stage3_started_seq": started_ev.seq,
        "previous_restore": {k: v for k, v in prev.as_dict().items() if k in rb.RESTORE_KEYS},
    }
    return _record_promotion(
        store=store,
        ctx=ctx,
        checks=checks + steps,
        payload=payload,
        routing=routing,
        smoke=smoke,
        statehub=statehub,
        now=now,
        started=started,
        events=events,
    )


def _record_promotion(
    *,
    store: EventStore,
    ctx: _Ctx,
    checks: list[Check],
    payload: dict[str, Any],
    routing: Mapping[str, Any],
    smoke: Sequence[Mapping[str, Any]],
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    started: datetime,
    events: list[RecordedEvent],
) -> PromotionOutcome:
    """``promotion.completed`` (``payload``), the State Hub note, ``stage.completed`` (3): the promotion passed."""
    from railiance_ledger.lifecycle.notes import post_and_record, statehub_from_env

    prev = ctx.previous
    assert prev is not None
    workload, workflow_id, form = ctx.workload, str(payload["workflow_id"]), str(payload["form"])
    release, new_rev = str(payload["release"]), payload.get("helm_revision")
    promo = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.PROMOTION_COMPLETED,
                actor=ctx.operator,
                candidate=ctx.digest,
                stage=3,
                payload=redact_value(payload),
            )
        ]
    )[0]
    events.append(promo)
    warnings: list[str] = []
    hub = statehub if statehub is not None else statehub_from_env()
    evidence = _evidence(ctx, workflow_id, str(payload["command"]), new_rev, routing, smoke, release=release)
    note = post_and_record(
        store=store,
        statehub=hub,
        event=promo,
        title=f"{workload}: promoted {ctx.image} to stable",
        body=(
            f"Stage 3 promotion {workflow_id} of {ctx.image} ({form}).\nPrevious stable: {prev.text}.\n"
            f"New stable: {ctx.image}, Helm revision {new_rev} of {ctx.namespace}/{release}.\n"
            f"Routing: {routing['detail']}.\nSmoke: "
            + "; ".join(f"{s['name']} {s['detail']}" for s in smoke)
            + f".\nRollback target retained: {prev.text} (Helm revision {prev.helm_revision}, "
            f"manifests {prev.manifests_sha256 or 'not stored'}"
            + (
                f", previous routing of {len(payload['routing_previous'])} objects"
                if payload.get("routing_previous")
                else ""
            )
            + f").\nLedger event {promo.event_id} (seq {promo.seq})."
        ),
        evidence=[e.model_dump(mode="json") for e in evidence],
        required=True,
        required_reason="Stage 3 evidence includes a State Hub progress note",
    )
    if note.warning:
        warnings.append(note.warning)
    evidence.append(Evidence(kind="statehub", ref=note.note_id or "not delivered", detail="progress note"))
    doc, evs, w = _complete(store, ctx, _result(ctx, checks, evidence, started, now()))
    doc.update(
        {
            "workflow_id": workflow_id,
            "rolled_back": False,
            "promotion": {"seq": promo.seq, "event_id": promo.event_id},
            "statehub_note": note.note_id,
        }
    )
    exit_code = 0 if doc["status"] == "pass" else 1
    return PromotionOutcome(
        document=doc, exit_code=exit_code, events=events + evs, warnings=warnings + w, workflow_id=workflow_id
    )


def _evidence(
    ctx: _Ctx,
    workflow_id: str,
    command: str,
    new_rev: Any,
    routing: Mapping[str, Any],
    smoke: Sequence[Mapping[str, Any]],
    *,
    release: str | None = None,
) -> list[Evidence]:
    prev = ctx.previous
    assert prev is not None
    release = release or ctx.release
    ev = [
        Evidence(kind="workflow", ref=workflow_id, detail=command),
        Evidence(kind="digest", ref=prev.image or prev.digest or "unknown", detail="previous stable"),
        Evidence(kind="digest", ref=ctx.image, detail="new stable"),
        Evidence(
            kind="k8s-object",
            ref=f"helm-release/{ctx.namespace}/{release}",
            detail=f"revision {new_rev} (previous stable: {prev.serving_release or prev.release} revision "
            f"{prev.helm_revision})",
        ),
        Evidence(
            kind="summary",
            ref=f"routing:{routing.get('host') or routing.get('stable_service')}",
            detail=str(routing.get("detail")),
        ),
    ]
    ev += [
        Evidence(kind="http-status", ref=str(s.get("target")), detail=f"smoke {s['name']}: {s['detail']}")
        for s in smoke
    ]
    ev.append(
        Evidence(
            kind="summary",
            ref=f"rollback-target:{prev.image or prev.digest}",
            detail=f"retained: Helm revision {prev.helm_revision}, manifests {prev.manifests_sha256}",
        )
    )
    if ctx.stage2_result is not None:
        ev.append(
            Evidence(kind="summary", ref=f"ledger:{ctx.stage2_result.event_id}", detail="stage 2 acceptance")
        )
    return ev


def _fail_and_restore(
    *,
    store: EventStore,
    ctx: _Ctx,
    checks: list[Check],
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    started: datetime,
    started_ev: RecordedEvent,
    events: list[RecordedEvent],
    failure: str,
    workflow_id: str,
    candidate_restore: dict[str, Any],
    ready_timeout: float,
    sleep: Callable[[float], None],
    strategy: str | None = None,
) -> PromotionOutcome:
    """The promotion changed production and failed: restore the previous stable, then record the stage.

    ``strategy`` overrides the declared rollback strategy (a routing switch is always undone by
    restoring the routing it replaced).
    """
    assert ctx.previous is not None
    strategy = strategy or ctx.decl.rollback.strategy
    warnings: list[str] = []
    rollback_doc: dict[str, Any] | None = None
    if ctx.decl.migrations.classification == "forward-only":
        checks.append(
            _check(
                "automatic_rollback",
                False,
                f"{failure}. Automatic rollback BLOCKED: the candidate carries a forward-only migration; "
                "production may still serve the candidate. A human must decide: "
                "`railiance rollback APP_DIR --reason TEXT --accept-forward-only --approval <id>`",
            )
        )
        rolled_back = False
    else:
        plan = rb._Plan(
            leaving_digest=ctx.digest,
            leaving_image=ctx.image,
            leaving_restore=candidate_restore,
            leaving_seq=started_ev.seq,
            target=ctx.previous,
            open_stage3=started_ev,
        )
        out = rb._perform(
            store=store,
            decl=ctx.decl,
            operator=ctx.operator,
            kube=kube,
            helm=helm,
            http=http,
            plan=plan,
            symptom=failure,
            fate="returned-to-stage1",
            strategy=strategy,
            started_payload={
                "symptom": failure,
                "reason": failure,
                "at": _iso(now()),
                "automatic": True,
                "workflow_id": workflow_id,
                "strategy": strategy,
                "from_stable": ctx.digest,
                "rollback_target": ctx.previous.as_dict(),
            },
            statehub=statehub,
            now=now,
            home=ctx.home,
            ready_timeout=ready_timeout,
            sleep=sleep,
        )
        events += out.events
        warnings += out.warnings
        rollback_doc = out.document
        rolled_back = True
        checks.append(
            _check(
                "automatic_rollback",
                out.passed,
                f"{failure}. Previous stable {ctx.previous.text} restored automatically: "
                f"{out.document.get('action')}; verification "
                f"{'passed' if out.passed else 'FAILED'}: {out.document['verification']['check'].get('detail')}",
            )
        )
    evidence = [Evidence(kind="workflow", ref=workflow_id, detail="promotion (failed)")]
    if rollback_doc is not None:
        evidence.append(
            Evidence(
                kind="summary", ref=f"ledger:seq {rollback_doc['ledger']['seq']}", detail="rollback.completed"
            )
        )
        if rollback_doc.get("statehub_note"):
            evidence.append(
                Evidence(kind="statehub", ref=str(rollback_doc["statehub_note"]), detail="rollback note")
            )
    doc, evs, w = _complete(store, ctx, _result(ctx, checks, evidence, started, now()))
    doc.update({"workflow_id": workflow_id, "rolled_back": rolled_back, "rollback": rollback_doc})
    return PromotionOutcome(
        document=doc,
        exit_code=1,
        events=events + evs,
        warnings=warnings + w,
        rolled_back=rolled_back,
        workflow_id=workflow_id,
        rollback=rollback_doc,
    )


# ---------------------------------------------------------------------------------------- lineage read helper


def lineage_with_evidence(store: EventStore, workload: str, *, at: str | None = None) -> dict[str, Any]:
    """``ledger.projections.lineage`` (as a dict) with each stable's evidence added.

    For every stable promoted through the ledger, ``evidence`` gives the Stage 3 stage-result ledger
    reference (seq, hash, status), the promotion's workflow id, and the State Hub note ids recorded
    for the promotion and its stage result; ``approvals`` (from the projection) says who approved
    it. With ``at`` only events recorded at or before that instant count (what was stable then, who
    approved it, with which evidence).
    """
    from railiance_ledger.ledger.projections import _normalize_at, lineage

    lin = lineage(store, workload, at=at)
    data = lin.as_dict()
    bound = _normalize_at(at)
    history = [ev for ev in store.read_stream(workload) if bound is None or ev.recorded_at <= bound]
    notes: dict[str, list[str]] = {}
    for ev in history:
        if ev.kind == EventKind.NOTE_POSTED and ev.payload.get("delivered") and ev.payload.get("note_id"):
            notes.setdefault(str(ev.payload.get("ref_event_id")), []).append(str(ev.payload["note_id"]))
    by_event = {ev.event_id: ev for ev in history}

    def evidence(stable: dict[str, Any]) -> dict[str, Any]:
        promo = by_event.get(str(stable.get("event_id")))
        if promo is None:
            return {"promotion": None, "stage_result": None, "notes": []}
        result = next(
            (
                ev
                for ev in history
                if ev.seq > promo.seq
                and ev.kind == EventKind.STAGE_COMPLETED
                and ev.stage == 3
                and ev.candidate == promo.candidate
            ),
            None,
        )
        ids = notes.get(promo.event_id, []) + (notes.get(result.event_id, []) if result else [])
        return {
            "promotion": {
                "event_id": promo.event_id,
                "seq": promo.seq,
                "hash": promo.hash,
                "workflow_id": promo.payload.get("workflow_id"),
                "helm_revision": promo.payload.get("helm_revision"),
            },
            "stage_result": {
                "event_id": result.event_id,
                "seq": result.seq,
                "hash": result.hash,
                "status": result.payload.get("status"),
            }
            if result
            else None,
            "notes": ids,
        }

    for stable in data["stables"]:
        stable["evidence"] = evidence(stable)
    if data["current_stable"] is not None:
        data["current_stable"]["evidence"] = evidence(data["current_stable"])
    return data
