"""Stage 2 prechecks: every check that runs before anything is applied."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from railiance_ledger.adapters.health import HttpProbe
from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.digests import parse_image_ref
from railiance_ledger.domain.durations import format_duration
from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import (
    Check,
    CheckStatus,
    Evidence,
)
from railiance_ledger.errors import AdapterError
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.lifecycle.approvals import current_stable_target
from railiance_ledger.lifecycle.approvals.signing import (
    DEGRADED_DEPENDENCY_GATE_PREFIX,
    UNSIGNED,
    signed_principal,
)
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.manifests import canonical_manifests
from railiance_ledger.lifecycle.cluster.objects import (
    FIELD_MANAGER,
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    split_docs,
)
from railiance_ledger.lifecycle.notes import note_gate
from railiance_ledger.lifecycle.stage2.context import (
    STATEHUB_GATE,
    CanaryContext,
    canary_values_files,
    repo_path,
    routing_spec,
    set_values,
)

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, RegistryPort


def check_form(ctx: CanaryContext, kube: KubePort) -> Check:
    decl = ctx.decl
    declared = dc.CanaryForm(decl.canary.form)
    provider = dc.Provider(decl.canary.provider or "ingress-nginx")
    ingress_ok = bool(decl.routing.ingress_class) and kube.ingress_class_exists(
        name=decl.routing.ingress_class or ""
    )
    gateway_ok = kube.has_api(group=GATEWAY_GROUP, version=GATEWAY_VERSION, kind="HTTPRoute")
    decision = dc.choose_form(
        declared, provider, ingress_class_available=ingress_ok, gateway_api_available=gateway_ok
    )
    ctx.form_decision = decision
    if decision.form is None:
        return _check("canary_form_declared", False, decision.reason)
    ctx.routing = routing_spec(
        ctx, decision.form, decision.provider, str(decision.fallback_from) if decision.fallback_from else None
    )
    ev = [Evidence(kind="summary", ref=f"form:{decision.form}", detail=decision.reason)]
    return _check("canary_form_declared", True, decision.reason, evidence=ev)


def check_distinguishable(ctx: CanaryContext, store: EventStore) -> Check:
    """The canary must not land in the release that serves production (spec: Stage 2 fails closed
    when the canary cannot be distinguished from stable production)."""

    name = "canary_distinguishable"
    stable = lineage(store, ctx.workload).current_stable
    if stable is None:
        return _check(
            name,
            True,
            f"no stable recorded in the ledger; canary release {ctx.release} in "
            f"{ctx.namespace} is separate from production release {ctx.stable_release}",
        )
    restore = stable.restore or {}
    serving = str(restore.get("serving_release") or restore.get("release") or ctx.stable_release)
    serving_ns = str(restore.get("namespace") or ctx.stable_namespace)
    if (serving, serving_ns) == (ctx.release, ctx.namespace):
        return _check(
            name,
            False,
            f"release {ctx.release} in {ctx.namespace} serves production (stable {stable.digest}, promoted "
            "at "
            f"{stable.promoted_at}); deploying the canary into it would silently replace stable production. "
            "Use another stages.canary.release for this canary (alternate two names after routing switches)",
        )
    return _check(
        name,
        True,
        f"canary release {ctx.release} in {ctx.namespace} is separate from the release "
        f"serving production ({serving} in {serving_ns})",
    )


def check_stage1(ctx: CanaryContext) -> Check:
    """Stage 1 passed (or was skipped by an emergency exception) for the digest, by the one definition
    the ledger's rule also applies (``CandidateState``): results before the candidate's latest rollback
    do not count, and a blocked or abandoned candidate never deploys again."""
    state = CandidateState.from_events(ctx.history, ctx.digest)
    if state.terminal:
        return _check(
            "stage1_passed",
            False,
            f"{ctx.digest} was {state.fate} by a rollback and may not move toward production again",
        )
    if state.passed(1):
        return _check(
            "stage1_passed",
            True,
            f"Stage 1 passed for {ctx.digest}",
            evidence=[Evidence(kind="digest", ref=ctx.digest, detail="stage 1 pass")],
        )
    if state.excepted(1):
        exc = next(
            ev
            for ev in reversed(ctx.history)
            if ev.kind == EventKind.EXCEPTION_EMERGENCY
            and ev.candidate == ctx.digest
            and int(ev.payload.get("skip_stage", 0) or 0) == 1
        )
        ok, noted = note_gate(
            ctx.history, exc.event_id, f"emergency exception {exc.event_id}", ctx.waivers.get(STATEHUB_GATE)
        )
        if not ok:
            return _check("stage1_passed", False, f"Stage 1 is skipped, but {noted}")
        return _check(
            "stage1_passed",
            True,
            f"Stage 1 skipped by a recorded emergency exception for {ctx.digest} ({exc.event_id}){noted}",
        )
    if state.rolled_back and 1 in state.all_results:
        return _check(
            "stage1_passed",
            False,
            f"the Stage 1 result of {ctx.digest} predates its rollback "
            f"({state.fate or 'returned-to-stage1'}): "
            "run Stage 1 again (`railiance run APP_DIR`)",
        )
    return _check("stage1_passed", False, f"no passing Stage 1 result for {ctx.digest} (the same digest)")


def check_cluster(ctx: CanaryContext, kube: KubePort) -> Check:
    if kube.namespace_ready(namespace=ctx.namespace):
        return _check(
            "cluster_ready",
            True,
            f"cluster reachable; namespace {ctx.namespace} active",
            evidence=[Evidence(kind="k8s-object", ref=f"Namespace/{ctx.namespace}", detail="Active")],
        )
    return _check("cluster_ready", False, f"namespace {ctx.namespace} is missing or not active")


def check_registry(ctx: CanaryContext, registry: RegistryPort) -> Check:
    repo = repo_path(ctx.repository)
    if registry.digest_exists(repository=repo, digest=ctx.digest):
        return _check(
            "digest_in_registry",
            True,
            f"{repo}@{ctx.digest} exists in the registry",
            evidence=[Evidence(kind="digest", ref=ctx.image, detail="manifest present")],
        )
    return _check("digest_in_registry", False, f"{repo}@{ctx.digest} does not exist in the registry")


def check_dry_run(ctx: CanaryContext, kube: KubePort, helm: HelmPort) -> Check:
    decl = ctx.decl
    text = helm.template(
        chart=decl.resolve(decl.chart.path),
        release=ctx.release,
        namespace=ctx.namespace,
        values_files=canary_values_files(ctx),
        set_values=set_values(ctx),
        kube_version=getattr(decl.workload, "kubernetes_version", None),
    )
    ctx.rendered_text = canonical_manifests(text)
    ctx.rendered_docs = split_docs(ctx.rendered_text)
    if not ctx.rendered_docs:
        return _check("server_dry_run", False, "the chart rendered no objects")
    refused: list[str] = []
    for doc in ctx.rendered_docs:
        doc.setdefault("metadata", {}).setdefault("namespace", ctx.namespace)
        ref = f"{doc.get('kind')}/{doc['metadata'].get('name')}"
        try:
            kube.dry_run_apply(manifests=[doc], field_manager=FIELD_MANAGER)
        except AdapterError as exc:
            refused.append(f"{ref}: {exc.reason}")
    if refused:
        return _check("server_dry_run", False, "server-side dry-run refused " + "; ".join(refused))
    sha = hashlib.sha256(ctx.rendered_text.encode()).hexdigest()
    return _check(
        "server_dry_run",
        True,
        f"{len(ctx.rendered_docs)} objects accepted by server-side dry-run",
        evidence=[Evidence(kind="summary", ref=f"manifests:sha256:{sha}", detail=ctx.release)],
    )


def check_routing_prereqs(ctx: CanaryContext, kube: KubePort, resolve: Callable[[str], bool]) -> Check:
    spec = ctx.routing
    if spec is None:
        return _check("routing_prerequisites", False, "no canary form decided")
    if spec.form is dc.CanaryForm.ISOLATED_NAMESPACE:
        return _check(
            "routing_prerequisites", True, "not applicable: isolated namespace, no production routing"
        )
    problems: list[str] = []
    if not spec.host:
        problems.append("routing.host is not declared")
    if spec.provider is dc.Provider.INGRESS_NGINX and not kube.ingress_class_exists(name=spec.ingress_class):
        problems.append(f"IngressClass {spec.ingress_class} not found")
    if spec.provider is dc.Provider.GATEWAY_API and not kube.has_api(
        group=GATEWAY_GROUP, version=GATEWAY_VERSION, kind="HTTPRoute"
    ):
        problems.append("Gateway API (HTTPRoute) not served")
    if spec.tls_secret and not kube.secret_exists(namespace=ctx.namespace, name=spec.tls_secret):
        problems.append(f"TLS secret {spec.tls_secret} not found in {ctx.namespace}")
    if spec.host and not resolve(spec.host):
        problems.append(f"DNS name {spec.host} does not resolve")
    if problems:
        return _check("routing_prerequisites", False, "; ".join(problems))
    return _check(
        "routing_prerequisites",
        True,
        f"{spec.provider} available, TLS secret {spec.tls_secret or '(none declared)'} present, {spec.host} "
        "resolves",
    )


def check_dependencies(ctx: CanaryContext, http: httpx.Client) -> Check:
    """Every declared platform dependency healthy, or explicitly degraded with operator approval.

    A dependency with a health URL is probed; one without is "unknown" (nothing shows it healthy).
    A required dependency that is unhealthy or unknown fails the gate unless a signed
    ``dependency:NAME`` approval is recorded for the candidate (the spec's "explicitly degraded with
    operator approval"); the older ``dependencies_healthy`` waiver still covers unhealthy ones, not
    unknown ones. A dependency declared ``required = false`` never blocks.
    """
    probe = HttpProbe(http)
    bad: list[str] = []
    unknown: list[str] = []
    approved: list[tuple[str, str]] = []
    ok: list[str] = []
    for dep in ctx.decl.dependencies:
        if not dep.health_url:
            verdict: str | None = f"{dep.name}: unknown (no health URL declared)"
        else:
            res = probe.probe(url=dep.health_url, retries=1, timeout=3.0, backoff=0.1)
            verdict = None if res.ok else f"{dep.name}: {res.reason}"
            if res.ok:
                ok.append(f"{dep.name} {res.reason}")
        if verdict is None:
            continue
        if not dep.required:
            ok.append(f"{verdict} (not required)")
            continue
        approval = ctx.waivers.get(DEGRADED_DEPENDENCY_GATE_PREFIX + dep.name)
        if approval is not None and approval.payload.get("signature"):
            approved.append((verdict, approval.event_id))
        elif dep.health_url:
            bad.append(verdict)
        else:
            unknown.append(verdict)
    gates = ", ".join(DEGRADED_DEPENDENCY_GATE_PREFIX + v.split(":", 1)[0] for v in unknown + bad)
    hint = f"record a signed approval: railiance waive APP --stage 2 --gate {gates}"
    if unknown:
        return _check(
            "dependencies_healthy",
            False,
            "dependencies unknown, not approved as degraded: " + "; ".join(unknown + bad) + f" ({hint})",
        )
    if bad:
        waiver = ctx.waivers.get("dependencies_healthy")
        if waiver is not None:
            return Check(
                name="dependencies_healthy",
                status=CheckStatus.WAIVED,
                waiver=waiver.event_id,
                reason=redact("degraded with operator approval: " + "; ".join(bad)),
            )
        return _check("dependencies_healthy", False, "dependencies unhealthy: " + "; ".join(bad))
    if approved:
        return Check(
            name="dependencies_healthy",
            status=CheckStatus.WAIVED,
            waiver=approved[0][1],
            reason=redact(
                "degraded with operator approval: "
                + "; ".join(f"{what} (approved by {ev})" for what, ev in approved)
                + (f"; healthy: {', '.join(ok)}" if ok else "")
            ),
        )
    return _check("dependencies_healthy", True, "healthy: " + (", ".join(ok) or "no dependencies declared"))


def _stable_helm_target(ctx: CanaryContext, helm: HelmPort) -> dict[str, Any] | None:
    try:
        revisions = helm.history(release=ctx.stable_release, namespace=ctx.stable_namespace)
    except AdapterError:
        return None
    deployed = [r for r in revisions if str(r.get("status", "")).lower() == "deployed"]
    if not deployed:
        return None
    rev = deployed[-1]
    return {
        "kind": "helm-revision",
        "release": ctx.stable_release,
        "namespace": ctx.stable_namespace,
        "revision": rev.get("revision"),
        "chart": rev.get("chart"),
        "source": "helm history of the stable release",
    }


def check_rollback_target(ctx: CanaryContext, store: EventStore, helm: HelmPort) -> Check:

    target = current_stable_target(store, ctx.workload)
    if target is not None:
        target["source"] = "ledger lineage (current stable)"
    elif ctx.decl.rollback.previous_stable:
        prev = ctx.decl.rollback.previous_stable
        try:
            ref = parse_image_ref(prev)
            target = {"kind": "digest-and-values", "image": ref.pinned, "digest": ref.digest}
        except ValueError:
            target = {"kind": "manual", "detail": prev}
        target["source"] = "declaration rollback.previous_stable"
    else:
        target = _stable_helm_target(ctx, helm)
    if target is None:
        return _check(
            "rollback_target_known",
            False,
            "rollback target unknown: no stable in the ledger lineage, no rollback.previous_stable, "
            f"no deployed revision of release {ctx.stable_release}",
        )
    target["canary_removal"] = {
        "release": ctx.release,
        "namespace": ctx.namespace,
        "action": "helm uninstall",
    }
    ctx.rollback_target = target
    what = (
        target.get("image")
        or target.get("digest")
        or f"{target.get('release')} revision {target.get('revision')}"
        if target.get("kind") != "manual"
        else target.get("detail")
    )
    return _check("rollback_target_known", True, f"{target['kind']}: {what} ({target['source']})")


def check_references(ctx: CanaryContext) -> Check:
    if not ctx.rendered_docs:
        return _check("declared_references", False, "no rendered manifests to inspect")
    secrets = [{"name": s.name, "kind": s.kind} for s in ctx.decl.secrets]
    deps = [{"name": d.name, "health_url": d.health_url} for d in ctx.decl.dependencies]
    extra = [ctx.decl.routing.tls_secret] if ctx.decl.routing.tls_secret else []
    missing = dc.undeclared_references(
        ctx.rendered_docs, secrets=secrets, dependencies=deps, extra_secret_names=extra
    )
    if missing:
        return _check(
            "declared_references",
            False,
            "the candidate needs what was not declared before the canary: " + ", ".join(missing),
        )
    return _check(
        "declared_references", True, "every secret, config map and dependency the pods use is declared"
    )


def check_window(ctx: CanaryContext) -> Check:
    decl = ctx.decl

    window = format_duration(decl.observation_window_seconds)
    if getattr(decl, "window_needs_waiver", False):
        waiver = ctx.waivers.get("observation_window")
        if waiver is None:
            return _check(
                "observation_window",
                False,
                f"production-critical window {window} is under 60m and no waiver is recorded",
            )
        return Check(
            name="observation_window",
            status=CheckStatus.WAIVED,
            waiver=waiver.event_id,
            reason=f"window {window} under 60m, waived",
        )
    return _check(
        "observation_window",
        True,
        f"window {window}, sample every {format_duration(int(decl.canary.sample_interval))}",
    )


def check_approval(ctx: CanaryContext) -> Check:
    if not ctx.decl.production_critical:
        return _check("operator_approval", True, "not required (workload is not production-critical)")
    ev = ctx.run.approval_in_force()
    if ev is None:
        return _check(
            "operator_approval",
            False,
            "production-critical: no approval.granted for this digest and stage 2 before traffic changes",
        )
    ctx.approval_event = ev
    if not signed_principal(ev.payload.model_dump()):
        return _check(
            "operator_approval", False, f"production-critical approval {ev.event_id} by {ev.actor} {UNSIGNED}"
        )
    ok, noted = note_gate(
        ctx.history,
        ev.event_id,
        f"production-critical approval {ev.event_id} by {ev.actor}",
        ctx.waivers.get(STATEHUB_GATE),
    )
    if not ok:
        return _check("operator_approval", False, noted)
    return _check("operator_approval", True, f"approved by {ev.actor} (event {ev.event_id}){noted}")


def default_resolve(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False
