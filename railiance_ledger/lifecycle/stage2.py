"""Stage 2: production canary — deploy, observe, accept or roll back.

``deploy_canary`` runs every precheck before anything is applied (the spec's eight plus
``canary_form_declared``, ``declared_references``, ``observation_window`` and, for
production-critical workloads, ``operator_approval``). Any failure: ``stage.completed`` (stage 2,
fail), nothing applied, exit 1. Otherwise the canary is installed as its own Helm release pinned to
the candidate digest, its routing objects are applied and read back, and ``stage.started`` (with
the deploy evidence) and ``routing.changed`` are appended, followed by a State Hub progress note.

``observe_canary`` samples every ``canary.sample_interval`` over the observation window, appends
one ``canary.sample`` per sample, resumes from the recorded samples after a crash, and rolls back
immediately (helm uninstall of the canary release, canary routing removed, patched stable routing
restored) when ``domain.canary.immediate_rollback_reason`` names a symptom: the rollback starts in
the same iteration that saw the symptom, so within two sample intervals of it. At the end of the
window it appends ``stage.completed`` with the acceptance gates as checks (``ACCEPTANCE_CHECKS``),
including the required evidence the spec lists: ``canary_release_identity`` (rendered release
identity, namespace and release name, read back from helm) and ``statehub_note`` (the State Hub
progress note about the result was delivered). Evidence that could not be collected fails its check
closed unless a stage 2 waiver names it; a rejected canary is always removed (see ``_finish`` for
the order of the note and the ``statehub_note`` verdict).

Rendered manifests are stored content-addressed under ``$RAILIANCE_HOME/manifests/<sha256>.yaml``
(sha256 of the exact rendered text); the ledger records the sha256 and size, so the text is never
duplicated into the hash chain and can be verified when read back.
"""

from __future__ import annotations

import hashlib
import math
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.digests import parse_image_ref
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.domain.rules import stage_excepted, stage_passed
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
from railiance_ledger.errors import AdapterError, AdapterNotFound, InvalidInput, RuleViolation
from railiance_ledger.lifecycle.checks import guarded as _guard
from railiance_ledger.lifecycle.checks import make_check as _check

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.lifecycle.notes import NoteOutcome
    from railiance_ledger.ports import HelmPort, KubePort, MetricsPort, RegistryPort, StateHubPort

__all__ = [
    "ACCEPTANCE_CHECKS",
    "IDENTITY_GATE",
    "PRECHECKS",
    "STATEHUB_GATE",
    "StageOutcome",
    "deploy_canary",
    "observe_canary",
    "remove_canary",
]

PRECHECKS: tuple[str, ...] = (
    "canary_form_declared",
    "canary_distinguishable",
    "stage1_passed",
    "cluster_ready",
    "digest_in_registry",
    "server_dry_run",
    "routing_prerequisites",
    "dependencies_healthy",
    "rollback_target_known",
    "monitoring_available",
    "declared_references",
    "observation_window",
    "operator_approval",
)
"""Every Stage 2 precheck, in the order they run (all before anything is applied)."""

STATEHUB_GATE = "statehub_note"
"""The end-of-window check that the Stage 2 progress note reached State Hub (required evidence)."""
IDENTITY_GATE = "canary_release_identity"
"""The end-of-window check that the recorded canary release (name, namespace, revision, rendered
manifests sha256) is still what is deployed, pinned to the candidate digest."""
ACCEPTANCE_CHECKS: tuple[str, ...] = (*dc.GATE_NAMES, IDENTITY_GATE, "operator_approval", STATEHUB_GATE)
"""Every check of a Stage 2 result completed at the end of the window, in order (an immediate
rollback puts ``immediate_rollback`` first)."""

GATEWAY_GV = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
FIELD_MANAGER = "railiance-ledger"
INGRESS_GV = "networking.k8s.io/v1"


@dataclass
class StageOutcome:
    """What a Stage 2 service call did: the document to render, the exit code, the events appended.

    ``document`` is a stage-result document (``railiance.stage-result/v1``) when the stage completed
    (prechecks failed, canary accepted, canary rejected or rolled back); for a successful deploy or
    an observation that is still running it is a progress document with ``"phase"`` set to
    ``"deployed"`` or ``"observing"`` and the checks run so far.
    """

    document: dict[str, Any]
    exit_code: int
    events: list[RecordedEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rolled_back: bool = False
    samples: int = 0
    expected_samples: int = 0

    @property
    def passed(self) -> bool:
        """True when the call succeeded (exit 0)."""
        return self.exit_code == 0


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
    namespace: str
    release: str
    stable_release: str
    stable_namespace: str
    waivers: dict[str, RecordedEvent]
    history: list[RecordedEvent]
    rendered_text: str = ""
    rendered_docs: list[dict[str, Any]] = field(default_factory=list)
    routing: dc.RoutingSpec | None = None
    form_decision: dc.FormDecision | None = None
    rollback_target: dict[str, Any] | None = None
    approval_event: RecordedEvent | None = None
    home: Path | None = None

    @property
    def workload(self) -> str:
        return self.decl.workload.name


def _resolve_candidate(
    store: EventStore, decl: Declaration, image: str | None
) -> tuple[str, str, str, str | None]:
    """``(digest, pinned image, repository, revision)`` of ``image`` or the newest registered candidate."""
    from railiance_ledger.lifecycle.candidates import (
        find_registration,
        newest_candidate,
        parse_candidate_image,
    )

    workload = decl.workload.name
    if image:
        _, digest = parse_candidate_image(image)
        reg = find_registration(store, workload, digest)
    else:
        reg = newest_candidate(store, workload)
        if reg is None:
            raise InvalidInput(
                f"no candidate is registered for {workload}",
                hint="register one with `railiance candidate add APP_DIR --image REF@sha256:...`",
            )
        digest = str(reg.candidate)
    if reg is None:
        raise InvalidInput(
            f"candidate {digest} is not registered for {workload}",
            hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
        )
    pinned = str(reg.payload.get("image") or f"{decl.image.repository}@{digest}")
    repository = parse_image_ref(pinned).repository
    return digest, pinned, repository, reg.payload.get("revision")


def _waivers(history: Sequence[RecordedEvent], digest: str) -> dict[str, RecordedEvent]:
    from railiance_ledger.lifecycle.waivers import active_waivers

    return active_waivers(history, digest=digest, stage=2)


def _approval(history: Sequence[RecordedEvent], digest: str) -> RecordedEvent | None:
    """The latest ``approval.granted`` for ``digest`` and stage 2 not revoked afterwards."""
    current: RecordedEvent | None = None
    for ev in history:
        if ev.candidate != digest:
            continue
        stage = ev.stage if ev.stage is not None else (ev.payload.get("stage"))
        if stage is not None and int(stage) != 2:
            continue
        if ev.kind == EventKind.APPROVAL_GRANTED:
            current = ev
        elif ev.kind == EventKind.APPROVAL_REVOKED:
            current = None
    return current


def _repo_path(repository: str) -> str:
    """The registry path of ``registry.host[:port]/path`` (the host part is the registry itself)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repository


def _values_files(decl: Declaration) -> list[Path]:
    files: list[Path] = []
    if decl.chart.values:
        files.append(decl.resolve(decl.chart.values))
    if decl.stages.canary.values:
        files.append(decl.resolve(decl.stages.canary.values))
    return files


def _set_values(ctx: _Ctx) -> dict[str, str]:
    """Pin the candidate digest (literal strings); booleans go in ``CANARY_OVERRIDES`` instead."""
    return {
        "image.repository": ctx.repository,
        "image.digest": ctx.digest,
        "track": "canary",
    }


CANARY_OVERRIDES = (
    "# Railiance Stage 2: the canary's routing objects belong to the ledger\n"
    "ingress:\n  enabled: false\ncanary:\n  enabled: false\n"
)
"""Typed values applied last to the canary release: the chart's own Ingress (and its canary
annotations) off. They are a values file, not ``--set-literal``: a literal ``"false"`` is a
non-empty string, which Go templates treat as true (the chart would render its Ingress anyway)."""


def _overrides_file(home: Path | None = None) -> Path:
    """``CANARY_OVERRIDES`` written once to ``$RAILIANCE_HOME/values/canary-overrides-<sha12>.yaml``."""
    from railiance_ledger import config

    sha = hashlib.sha256(CANARY_OVERRIDES.encode()).hexdigest()[:12]
    base = (home or config.railiance_home()) / "values"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"canary-overrides-{sha}.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != CANARY_OVERRIDES:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(CANARY_OVERRIDES, encoding="utf-8")
        tmp.replace(path)
    return path


def _canary_values_files(ctx: _Ctx) -> list[Path]:
    """The declared values files, then the typed canary overrides."""
    return [*_values_files(ctx.decl), _overrides_file(ctx.home)]


def _split_docs(text: str) -> list[dict[str, Any]]:
    import yaml  # type: ignore[import-untyped]

    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def canonical_manifests(text: str) -> str:
    """The canonical rendered text: trailing whitespace stripped per line, one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def store_manifests(text: str, home: Path | None = None) -> tuple[str, Path]:
    """Write ``text`` to ``$RAILIANCE_HOME/manifests/<sha256>.yaml`` (idempotent); return (sha256, path)."""
    from railiance_ledger import config

    canonical = canonical_manifests(text)
    sha = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    base = (home or config.railiance_home()) / "manifests"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{sha}.yaml"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(canonical, encoding="utf-8")
        tmp.replace(path)
    return sha, path


def load_manifests(sha: str, home: Path | None = None) -> str:
    """The stored rendered text of ``sha``, verified against its hash (``InvalidInput`` if altered)."""
    from railiance_ledger import config

    path = (home or config.railiance_home()) / "manifests" / f"{sha}.yaml"
    text = path.read_text(encoding="utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
        raise InvalidInput(f"stored manifests {path} do not match their sha256 {sha}")
    return text


def _first(docs: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((d for d in docs if d.get("kind") == kind), None)


def _canary_selector(ctx: _Ctx) -> str:
    dep = _first(ctx.rendered_docs, "Deployment") or _first(ctx.rendered_docs, "StatefulSet")
    labels = (((dep or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        labels = {"app.kubernetes.io/instance": ctx.release}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _canary_service(ctx: _Ctx) -> str:
    svc = _first(ctx.rendered_docs, "Service")
    return str(((svc or {}).get("metadata") or {}).get("name") or ctx.release)


def _routing_spec(
    ctx: _Ctx, form: dc.CanaryForm, provider: dc.Provider, fallback_from: str | None
) -> dc.RoutingSpec:
    decl = ctx.decl
    c = decl.canary
    return dc.RoutingSpec(
        workload=ctx.workload,
        namespace=ctx.namespace,
        host=decl.routing.host or "",
        stable_service=decl.routing.service,
        canary_service=_canary_service(ctx),
        port=int(decl.routing.port),
        form=form,
        provider=provider,
        weight=int(c.weight or 0) if form is dc.CanaryForm.WEIGHTED else 0,
        header=c.header or dc.DEFAULT_HEADER,
        path_prefix=c.path_prefix or "/canary",
        ingress_class=decl.routing.ingress_class or "nginx",
        tls_secret=decl.routing.tls_secret,
        canary_release=ctx.release,
        route_name=decl.routing.service,
        fallback_from=fallback_from,
    )


# ---------------------------------------------------------------------------------------- prechecks


def _check_form(ctx: _Ctx, kube: KubePort) -> Check:
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
    ctx.routing = _routing_spec(
        ctx, decision.form, decision.provider, str(decision.fallback_from) if decision.fallback_from else None
    )
    ev = [Evidence(kind="summary", ref=f"form:{decision.form}", detail=decision.reason)]
    return _check("canary_form_declared", True, decision.reason, evidence=ev)


def _check_distinguishable(ctx: _Ctx, store: EventStore) -> Check:
    """The canary must not land in the release that serves production (spec: Stage 2 fails closed
    when the canary cannot be distinguished from stable production)."""
    from railiance_ledger.ledger.projections import lineage

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
            f"release {ctx.release} in {ctx.namespace} serves production (stable {stable.digest}, promoted at "
            f"{stable.promoted_at}); deploying the canary into it would silently replace stable production. "
            "Use another stages.canary.release for this canary (alternate two names after routing switches)",
        )
    return _check(
        name,
        True,
        f"canary release {ctx.release} in {ctx.namespace} is separate from the release "
        f"serving production ({serving} in {serving_ns})",
    )


def _check_stage1(ctx: _Ctx) -> Check:
    if stage_passed(ctx.history, ctx.digest, 1):
        return _check(
            "stage1_passed",
            True,
            f"Stage 1 passed for {ctx.digest}",
            evidence=[Evidence(kind="digest", ref=ctx.digest, detail="stage 1 pass")],
        )
    if stage_excepted(ctx.history, ctx.digest, 1):
        return _check(
            "stage1_passed", True, f"Stage 1 skipped by a recorded emergency exception for {ctx.digest}"
        )
    return _check("stage1_passed", False, f"no passing Stage 1 result for {ctx.digest} (the same digest)")


def _check_cluster(ctx: _Ctx, kube: KubePort) -> Check:
    if kube.namespace_ready(namespace=ctx.namespace):
        return _check(
            "cluster_ready",
            True,
            f"cluster reachable; namespace {ctx.namespace} active",
            evidence=[Evidence(kind="k8s-object", ref=f"Namespace/{ctx.namespace}", detail="Active")],
        )
    return _check("cluster_ready", False, f"namespace {ctx.namespace} is missing or not active")


def _check_registry(ctx: _Ctx, registry: RegistryPort) -> Check:
    repo = _repo_path(ctx.repository)
    if registry.digest_exists(repository=repo, digest=ctx.digest):
        return _check(
            "digest_in_registry",
            True,
            f"{repo}@{ctx.digest} exists in the registry",
            evidence=[Evidence(kind="digest", ref=ctx.image, detail="manifest present")],
        )
    return _check("digest_in_registry", False, f"{repo}@{ctx.digest} does not exist in the registry")


def _check_dry_run(ctx: _Ctx, kube: KubePort, helm: HelmPort) -> Check:
    decl = ctx.decl
    text = helm.template(
        chart=decl.resolve(decl.chart.path),
        release=ctx.release,
        namespace=ctx.namespace,
        values_files=_canary_values_files(ctx),
        set_values=_set_values(ctx),
        kube_version=getattr(decl.workload, "kubernetes_version", None),
    )
    ctx.rendered_text = canonical_manifests(text)
    ctx.rendered_docs = _split_docs(ctx.rendered_text)
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


def _check_routing_prereqs(ctx: _Ctx, kube: KubePort, resolve: Callable[[str], bool]) -> Check:
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
        f"{spec.provider} available, TLS secret {spec.tls_secret or '(none declared)'} present, {spec.host} resolves",
    )


def _check_dependencies(ctx: _Ctx, http: httpx.Client) -> Check:
    from railiance_ledger.adapters.health import HttpProbe

    probe = HttpProbe(http)
    bad: list[str] = []
    ok: list[str] = []
    for dep in ctx.decl.dependencies:
        if not dep.health_url:
            ok.append(f"{dep.name} (no health URL declared)")
            continue
        res = probe.probe(url=dep.health_url, retries=1, timeout=3.0, backoff=0.1)
        (ok if res.ok else bad).append(
            f"{dep.name}: {res.reason}" if not res.ok else f"{dep.name} {res.reason}"
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
    return _check("dependencies_healthy", True, "healthy: " + (", ".join(ok) or "no dependencies declared"))


def _stable_helm_target(ctx: _Ctx, helm: HelmPort) -> dict[str, Any] | None:
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


def _check_rollback_target(ctx: _Ctx, store: EventStore, helm: HelmPort) -> Check:
    from railiance_ledger.lifecycle.approvals import current_stable_target

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


def _check_monitoring(ctx: _Ctx, kube: KubePort, metrics: MetricsPort) -> Check:
    obs = ctx.decl.observability
    selector = _join_selector(obs.prometheus_selector, f'{obs.track_label}="canary"')
    try:
        metrics.instant(query=f"count(up{{{_strip_braces(obs.prometheus_selector)}}}) or vector(0)")
    except AdapterError as exc:
        return _check("monitoring_available", False, f"metrics unavailable: {exc}", technical=True)
    # Pod-log reads are proven on a running pod: the canary namespace's, else (an isolated canary
    # namespace is empty before the deploy) the stable namespace's.
    namespaces = list(dict.fromkeys([ctx.namespace, ctx.stable_namespace]))
    found = [(ns, p) for ns in namespaces for p in kube.list(api_version="v1", kind="Pod", namespace=ns)[:1]]
    if not found:
        return _check(
            "monitoring_available",
            False,
            f"no pod in {' or '.join(namespaces)} to prove pod-log reads work",
            technical=True,
        )
    ns, pod = found[0]
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = f"{ns}/{pod['metadata']['name']}"
    kube.pod_logs(
        namespace=ns,
        selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        tail_lines=1,
        max_pods=1,
    )
    return _check(
        "monitoring_available",
        True,
        f"Prometheus answers for {{{selector}}}; pod logs readable ({name})",
        evidence=[Evidence(kind="query", ref=f"{{{selector}}}", detail="prometheus")],
    )


def _check_references(ctx: _Ctx) -> Check:
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


def _check_window(ctx: _Ctx) -> Check:
    decl = ctx.decl
    from railiance_ledger.domain.durations import format_duration

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


def _check_approval(ctx: _Ctx) -> Check:
    if not ctx.decl.production_critical:
        return _check("operator_approval", True, "not required (workload is not production-critical)")
    ev = _approval(ctx.history, ctx.digest)
    if ev is None:
        return _check(
            "operator_approval",
            False,
            "production-critical: no approval.granted for this digest and stage 2 before traffic changes",
        )
    ctx.approval_event = ev
    return _check("operator_approval", True, f"approved by {ev.actor} (event {ev.event_id})")


def _default_resolve(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False


def _join_selector(*parts: str) -> str:
    return ",".join(_strip_braces(p) for p in parts if _strip_braces(p))


def _strip_braces(selector: str) -> str:
    return selector.strip().removeprefix("{").removesuffix("}").strip()


# ---------------------------------------------------------------------------------------- results


def _candidate(ctx: _Ctx) -> Candidate:
    return Candidate(digest=ctx.digest, image=ctx.image, revision=ctx.revision)


def _approval_model(ctx: _Ctx) -> Approval:
    if not ctx.decl.production_critical:
        return Approval(required=False, decision="not required")
    ev = ctx.approval_event or _approval(ctx.history, ctx.digest)
    if ev is None:
        return Approval(required=True, decision="missing")
    return Approval(required=True, decision=ev.event_id, operator=ev.actor)


def _result(
    ctx: _Ctx, checks: list[Check], evidence: list[Evidence], started: datetime, finished: datetime
) -> StageResult:
    return StageResult(
        workload=Workload(name=ctx.workload, repo=ctx.decl.workload.repo),
        stage=2,
        candidate=_candidate(ctx),
        target_environment="canary",
        checks=checks,
        status=overall_status(checks),
        evidence=evidence,
        rollback_target=ctx.rollback_target,
        approval=_approval_model(ctx),
        started_at=_iso(started),
        finished_at=_iso(finished),
    )


def _complete(
    store: EventStore, ctx: _Ctx, result: StageResult, operator: str
) -> tuple[dict[str, Any], list[RecordedEvent], list[str]]:
    """Append ``stage.completed`` and return the document with its ledger reference."""
    doc = result.to_document()
    try:
        ev = store.append(
            [
                NewEvent(
                    stream=ctx.workload,
                    kind=EventKind.STAGE_COMPLETED,
                    actor=operator,
                    candidate=ctx.digest,
                    stage=2,
                    payload=redact_value(doc),
                )
            ]
        )[0]
    except RuleViolation as exc:
        return doc, [], [f"stage result not recorded: {exc}"]
    doc["ledger"] = {"seq": ev.seq, "hash": ev.hash}
    return doc, [ev], []


def _make_ctx(store: EventStore, decl: Declaration, image: str | None) -> _Ctx:
    digest, pinned, repository, revision = _resolve_candidate(store, decl, image)
    history = store.read_stream(decl.workload.name)
    return _Ctx(
        decl=decl,
        digest=digest,
        image=pinned,
        repository=repository,
        revision=revision,
        namespace=decl.stages.canary.namespace,
        release=decl.stages.canary.release,
        stable_release=decl.stages.production.release,
        stable_namespace=decl.stages.production.namespace,
        waivers=_waivers(history, digest),
        history=history,
    )


# ---------------------------------------------------------------------------------------- deploy


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
    now: Callable[[], datetime] = _utcnow,
    resolve_host: Callable[[str], bool] = _default_resolve,
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
    started = now()
    ctx = _make_ctx(store, decl, image)
    ctx.home = home
    checks: list[Check] = [_guard("canary_form_declared", lambda: _check_form(ctx, kube))]
    checks.append(_guard("canary_distinguishable", lambda: _check_distinguishable(ctx, store)))
    checks.append(_guard("stage1_passed", lambda: _check_stage1(ctx)))
    checks.append(_guard("cluster_ready", lambda: _check_cluster(ctx, kube)))
    checks.append(_guard("digest_in_registry", lambda: _check_registry(ctx, registry)))
    checks.append(_guard("server_dry_run", lambda: _check_dry_run(ctx, kube, helm)))
    checks.append(_guard("routing_prerequisites", lambda: _check_routing_prereqs(ctx, kube, resolve_host)))
    checks.append(_guard("dependencies_healthy", lambda: _check_dependencies(ctx, http)))
    checks.append(_guard("rollback_target_known", lambda: _check_rollback_target(ctx, store, helm)))
    checks.append(_guard("monitoring_available", lambda: _check_monitoring(ctx, kube, metrics)))
    checks.append(_guard("declared_references", lambda: _check_references(ctx)))
    checks.append(_guard("observation_window", lambda: _check_window(ctx)))
    checks.append(_guard("operator_approval", lambda: _check_approval(ctx)))
    if overall_status(checks) == "fail":
        doc, events, failed_warnings = _complete(
            store, ctx, _result(ctx, checks, [], started, now()), operator
        )
        return StageOutcome(document=doc, exit_code=1, events=events, warnings=failed_warnings)

    assert ctx.routing is not None
    spec = ctx.routing
    applied: list[dict[str, Any]] = []
    previous: list[dict[str, Any]] = []
    try:
        status = helm.install_or_upgrade(
            chart=decl.resolve(decl.chart.path),
            release=ctx.release,
            namespace=ctx.namespace,
            values_files=_canary_values_files(ctx),
            set_values=_set_values(ctx),
            extra_args=list(helm_upgrade_args),
        )
        revision = status.get("version")
        rollout = _await_rollout(kube, ctx.namespace, _canary_selector(ctx), rollout_timeout, sleep, clock)
        sha, _path = store_manifests(ctx.rendered_text, home)
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
        previous = [_clean(o) for o in (stable_ing, stable_route) if o is not None]
        for obj in plan.objects:
            kube.apply(manifests=[obj], field_manager=FIELD_MANAGER)
            applied.append(obj)
        observed = _read_routing(kube, spec)
        ok, reason = dc.routing_matches(spec, observed)
        if not ok:
            raise _ApplyFailed(f"routing read back after apply does not match: {reason}")
    except (AdapterError, _ApplyFailed, ValueError) as exc:
        patched = {(o["kind"], o["metadata"]["name"]) for o in previous}
        cleanup = _remove(
            kube=kube,
            helm=helm,
            spec=spec,
            release=ctx.release,
            namespace=ctx.namespace,
            creates=[o for o in applied if (o["kind"], o["metadata"]["name"]) not in patched],
            previous=previous,
        )
        checks.append(
            _check(
                "canary_applied", False, f"{exc}; cleanup: {cleanup}", technical=isinstance(exc, AdapterError)
            )
        )
        doc, events, failed_warnings = _complete(
            store, ctx, _result(ctx, checks, [], started, now()), operator
        )
        return StageOutcome(document=doc, exit_code=1, events=events, warnings=failed_warnings)

    # A stable HTTPRoute built because none existed is ours: rollback deletes it (nothing to restore).
    built_route = [o for o in plan.patches if o.get("kind") == "HTTPRoute" and stable_route is None]
    creates = [_clean(o) for o in [*plan.creates, *built_route]]
    evidence = _deploy_evidence(ctx, revision, sha, spec, reason)
    evidence.append(Evidence(kind="pod-status", ref=_canary_selector(ctx), detail=rollout))
    payload = {
        "phase": "deployed",
        "release": {
            "name": ctx.release,
            "namespace": ctx.namespace,
            "revision": revision,
            "chart": str(decl.chart.path),
            "image": ctx.image,
        },
        "manifests": {
            "sha256": sha,
            "bytes": len(ctx.rendered_text.encode()),
            "store": "$RAILIANCE_HOME/manifests/<sha256>.yaml",
        },
        "selector": _canary_selector(ctx),
        "rollout": rollout,
        "routing": spec.as_dict(),
        "routing_objects": [f"{o['kind']}/{o['metadata']['name']}" for o in plan.objects],
        "routing_created": creates,
        "routing_previous": previous,
        "fallback": ctx.form_decision.reason
        if ctx.form_decision and ctx.form_decision.fallback_from
        else None,
        "rollback_target": ctx.rollback_target,
        "prechecks": [c.model_dump(mode="json") for c in checks],
        "evidence": [e.model_dump(mode="json") for e in evidence],
        "observation_window_seconds": decl.observation_window_seconds,
        "sample_interval_seconds": int(decl.canary.sample_interval),
        "started_at": _iso(started),
    }
    events = store.append(
        [
            NewEvent(
                stream=ctx.workload,
                kind=EventKind.STAGE_STARTED,
                actor=operator,
                candidate=ctx.digest,
                stage=2,
                payload=redact_value(payload),
            ),
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
                    }
                ),
            ),
        ]
    )
    warnings: list[str] = []
    note = _post_note(
        store,
        statehub,
        events[0],
        decl,
        title=f"{ctx.workload}: Stage 2 canary deployed ({spec.form})",
        body=(
            f"Canary {ctx.image} deployed as release {ctx.release} revision {revision} in "
            f"{ctx.namespace}; routing: {reason}. Observation window "
            f"{decl.observation_window_seconds}s. Rollback: {_target_text(ctx.rollback_target)}."
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
        "candidate": _candidate(ctx).model_dump(mode="json"),
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


def _await_rollout(
    kube: KubePort,
    namespace: str,
    selector: str,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> str:
    """Wait until the canary's pods exist and are all ready, one is crash-looping, or ``timeout``.

    Returns the pod summary text for the evidence. Never raises for the pods' state: a canary that
    is not ready is for the observation to judge (and roll back); only adapter errors propagate.
    """
    deadline = clock() + timeout
    while True:
        summary = kube.pod_summary(namespace=namespace, selector=selector)
        text = (
            f"{summary.ready}/{summary.total} ready, {summary.restarts_max} restarts, "
            f"{summary.pending} pending, {summary.crashlooping} crash-looping"
        )
        if summary.total > 0 and (summary.ready == summary.total or summary.crashlooping):
            return text
        if clock() >= deadline:
            return f"{text} after {timeout:g}s"
        sleep(0.2)


class _ApplyFailed(Exception):
    """The canary could not be applied as declared."""


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    out["metadata"] = meta
    return out


def _deploy_evidence(ctx: _Ctx, revision: Any, sha: str, spec: dc.RoutingSpec, reason: str) -> list[Evidence]:
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


def _target_text(target: Mapping[str, Any] | None) -> str:
    if not target:
        return "unknown"
    return str(
        target.get("image")
        or target.get("digest")
        or (
            f"{target.get('release')} revision {target.get('revision')}"
            if target.get("release")
            else target.get("detail")
        )
    )


def _post_note(
    store: EventStore,
    statehub: StateHubPort | None,
    event: RecordedEvent,
    decl: Declaration,
    *,
    title: str,
    body: str,
    evidence: list[dict[str, Any]],
    warnings: list[str],
) -> NoteOutcome:
    """Post a Stage 2 progress note about ``event`` (``statehub``, else ``RAILIANCE_STATEHUB_URL``, else none)
    and record the outcome as ``note.posted``; an undelivered or unposted note adds a warning."""
    from railiance_ledger.lifecycle.notes import post_and_record, statehub_from_env

    hub = statehub if statehub is not None else statehub_from_env()
    note = post_and_record(
        store=store,
        statehub=hub,
        event=event,
        title=title,
        body=body,
        evidence=evidence,
        required=True,
        required_reason="Stage 2 evidence includes a State Hub progress note",
    )
    if note.warning:
        warnings.append(note.warning)
    return note


# ---------------------------------------------------------------------------------------- routing I/O


def _read_routing(kube: KubePort, spec: dc.RoutingSpec) -> list[dict[str, Any]]:
    """Every Ingress (and HTTPRoute when served) in the namespace: what routing looks like now."""
    objs = [
        dict(o, kind="Ingress")
        for o in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=spec.namespace)
    ]
    if spec.provider is dc.Provider.GATEWAY_API or kube.has_api(
        group=GATEWAY_GROUP, version=GATEWAY_VERSION, kind="HTTPRoute"
    ):
        try:
            objs += [
                dict(o, kind="HTTPRoute")
                for o in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=spec.namespace)
            ]
        except AdapterError:
            if spec.provider is dc.Provider.GATEWAY_API:
                raise
    return objs


def _remove(
    *,
    kube: KubePort,
    helm: HelmPort | None,
    spec: dc.RoutingSpec,
    release: str,
    namespace: str,
    creates: Sequence[Mapping[str, Any]],
    previous: Sequence[Mapping[str, Any]],
) -> str:
    """Remove the canary: routing first (restore patched stable objects, delete ours), then the release."""
    done: list[str] = []
    for obj in previous:
        try:
            kube.apply(manifests=[dict(obj)], field_manager=FIELD_MANAGER)
            done.append(f"restored {obj['kind']}/{obj['metadata']['name']}")
        except AdapterError as exc:
            done.append(f"FAILED to restore {obj['kind']}/{obj['metadata']['name']}: {exc.reason}")
    for obj in creates:
        try:
            kube.delete(
                api_version=str(obj["apiVersion"]),
                kind=str(obj["kind"]),
                name=str(obj["metadata"]["name"]),
                namespace=namespace,
            )
            done.append(f"deleted {obj['kind']}/{obj['metadata']['name']}")
        except AdapterError as exc:
            if "not found" in str(exc).lower() or "404" in str(exc):
                done.append(f"{obj['kind']}/{obj['metadata']['name']} already gone")
            else:
                done.append(f"FAILED to delete {obj['kind']}/{obj['metadata']['name']}: {exc.reason}")
    if helm is not None:
        try:
            helm.uninstall(release=release, namespace=namespace)
            done.append(f"helm uninstall {release}")
        except AdapterError as exc:
            gone = isinstance(exc, AdapterNotFound) or "not found" in str(exc).lower()
            done.append(
                f"release {release} already gone"
                if gone
                else f"FAILED helm uninstall {release}: {exc.reason}"
            )
    return "; ".join(done) or "nothing to remove"


# ---------------------------------------------------------------------------------------- observe


@dataclass
class _Deployment:
    started: RecordedEvent
    samples: list[dc.CanarySample]
    spec: dc.RoutingSpec
    release: str
    namespace: str
    selector: str


def _open_deployment(history: Sequence[RecordedEvent], digest: str | None) -> _Deployment | None:
    """The latest stage 2 ``stage.started`` (for ``digest`` when given) not yet completed or rolled back."""
    current: RecordedEvent | None = None
    samples: list[dc.CanarySample] = []
    for ev in history:
        if digest is not None and ev.candidate not in (digest, None):
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 2:
            current, samples = ev, []
        elif current is None or ev.candidate not in (current.candidate, None):
            continue
        elif ev.kind == EventKind.CANARY_SAMPLE:
            samples.append(dc.CanarySample.from_payload(ev.payload))
        elif (
            ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 2
        ) or ev.kind == EventKind.ROLLBACK_COMPLETED:
            current, samples = None, []
    if current is None:
        return None
    p = current.payload
    return _Deployment(
        started=current,
        samples=samples,
        spec=dc.RoutingSpec.from_dict(p["routing"]),
        release=str(p["release"]["name"]),
        namespace=str(p["release"]["namespace"]),
        selector=str(p.get("selector") or ""),
    )


def _metric(value: Any) -> dc.Metric:
    if value is None:
        return dc.Metric(None, False, dc.METRICS_UNAVAILABLE)
    v = getattr(value, "value", None)
    ok = bool(getattr(value, "available", False))
    reason = str(getattr(value, "reason", "") or "")
    if ok and (v is None or not math.isfinite(float(v))):
        ok, reason = False, "no finite value"
    return dc.Metric(
        float(v) if v is not None else None, ok, redact(reason), str(getattr(value, "query", "") or "")
    )


def _track(metrics: MetricsPort, selector: str, window: str) -> dc.TrackMetrics:
    out: dict[str, dc.Metric] = {}
    for name in ("error_rate", "p95_latency_ms", "saturation"):
        try:
            out[name] = _metric(getattr(metrics, name)(selector=selector, window=window))
        except AdapterError as exc:
            out[name] = dc.Metric(None, False, f"{dc.METRICS_UNAVAILABLE}: {exc.reason}")
    return dc.TrackMetrics(**out)


def _status_of(answer: Any) -> int | None:
    if isinstance(answer, int):
        return answer
    if isinstance(answer, tuple) and answer:
        return int(answer[0])
    for attr in ("status_code", "status"):
        v = getattr(answer, attr, None)
        if isinstance(v, int):
            return v
    return None


def _scan_pod_logs(kube: KubePort, namespace: str, selector: str) -> dc.LogScan:
    """Scan the canary pods' recent logs; only kinds and counts are kept, never the text."""
    kinds: dict[str, int] = {}
    auth = lines = 0
    try:
        by_pod = kube.pod_logs(namespace=namespace, selector=selector, tail_lines=500)
    except AdapterError as exc:
        return dc.LogScan(read_ok=False, reason=redact(exc.reason))
    for text in by_pod.values():
        scan = dc.scan_logs(text)
        for k, n in scan.secret_kinds.items():
            kinds[k] = kinds.get(k, 0) + n
        auth += scan.auth_failures
        lines += scan.lines
    return dc.LogScan(read_ok=True, secret_kinds=kinds, auth_failures=auth, lines=lines)


def _collect(
    *,
    index: int,
    at: datetime,
    elapsed: float,
    decl: Declaration,
    dep: _Deployment,
    kube: KubePort,
    metrics: MetricsPort,
    http: httpx.Client,
    thresholds: dc.Thresholds,
    history: Sequence[RecordedEvent],
    digest: str,
    metrics_window: str,
    ingress_url: str | None = None,
) -> dc.CanarySample:
    spec = dep.spec
    try:
        summary = kube.pod_summary(namespace=dep.namespace, selector=dep.selector)
        pod_state = dc.PodState(
            total=summary.total,
            ready=summary.ready,
            restarts=summary.restarts_max,
            crashloop=summary.crashlooping,
            pending=summary.pending,
            pending_reasons=sorted(
                {p.waiting_reason for p in summary.pods if p.phase == "Pending" and p.waiting_reason}
            ),
            reasons=sorted({p.waiting_reason for p in summary.pods if p.waiting_reason}),
        )
    except AdapterError as exc:
        pod_state = dc.PodState(available=False, reason=redact(exc.reason))
    key = decl.key_health
    inside: dc.Probe | None
    try:
        answer = kube.service_proxy_get(
            namespace=dep.namespace, service=spec.canary_service, port=spec.port, path=key.path
        )
        code = _status_of(answer)
        inside = dc.Probe(
            code == key.expect_status, code, f"HTTP {code}", f"service/{spec.canary_service}{key.path}"
        )
    except AdapterError as exc:
        inside = dc.Probe(False, None, redact(exc.reason), f"service/{spec.canary_service}{key.path}")
    outside: dc.Probe | None = None
    if spec.form in (dc.CanaryForm.WEIGHTED, dc.CanaryForm.HEADER, dc.CanaryForm.PATH) and spec.host:
        outside = _outside_probe(http, spec, key.path, key.expect_status, ingress_url)
    obs = decl.observability
    base = _strip_braces(obs.prometheus_selector)
    canary_m = _track(metrics, _join_selector(base, f'{obs.track_label}="canary"'), metrics_window)
    stable_m = _track(metrics, _join_selector(base, f'{obs.track_label}="stable"'), metrics_window)
    try:
        observed = _read_routing(kube, spec)
        ok, reason = dc.routing_matches(spec, observed)
        routing = dc.RoutingState(ok, redact(reason), (not ok) and reason.startswith(dc.MORE_TRAFFIC))
    except AdapterError as exc:
        routing = dc.RoutingState(
            False, f"routing read-back failed: {redact(exc.reason)}", False, available=False
        )
    logs = _scan_pod_logs(kube, dep.namespace, dep.selector)
    revoked = _approval_revoked_since(history, digest, dep.started.seq)
    er = stable_m.error_rate
    prod_ok = not (er.usable and er.value is not None and er.value > thresholds.max_error_rate)
    return dc.CanarySample(
        index=index,
        at=_iso(at),
        elapsed_seconds=round(elapsed, 3),
        pods=pod_state,
        health_inside=inside,
        health_outside=outside,
        canary=canary_m,
        stable=stable_m,
        routing=routing,
        logs=logs,
        approval_revoked=revoked,
        production_available=prod_ok,
    )


def _outside_probe(
    http: httpx.Client, spec: dc.RoutingSpec, path: str, expect: int, ingress_url: str | None = None
) -> dc.Probe:
    """GET the production URL the way operator traffic reaches the canary (header / path / weighted).

    ``ingress_url`` (``RAILIANCE_INGRESS_URL``) sends the request to that ingress address instead of
    ``routing.host`` from DNS, with ``Host: <routing.host>`` (as ``curl --resolve`` would).
    """
    scheme = "https" if spec.tls_secret else "http"
    headers: dict[str, str] = {}
    url_path = path
    if spec.form is dc.CanaryForm.HEADER:
        headers[spec.header] = spec.header_value
    elif spec.form is dc.CanaryForm.PATH:
        url_path = spec.path_prefix.rstrip("/") + path
    url = f"{scheme}://{spec.host}{url_path}"
    if ingress_url:
        url = ingress_url.rstrip("/") + url_path
        headers["Host"] = spec.host
    try:
        r = http.get(url, headers=headers, timeout=5.0)
        return dc.Probe(r.status_code == expect, r.status_code, f"HTTP {r.status_code}", url)
    except Exception as exc:  # noqa: BLE001 - httpx errors of any shape fail the probe
        return dc.Probe(False, None, redact(f"{type(exc).__name__}: {exc}"), url)


def _approval_revoked_since(history: Sequence[RecordedEvent], digest: str, after_seq: int) -> bool:
    return any(
        ev.kind == EventKind.APPROVAL_REVOKED
        and ev.candidate == digest
        and ev.seq > after_seq
        and (ev.stage in (None, 2))
        for ev in history
    )


def _thresholds(decl: Declaration) -> dc.Thresholds:
    t = decl.canary.thresholds
    return dc.Thresholds.from_mapping(t.model_dump())


def observe_canary(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    metrics: MetricsPort,
    http: httpx.Client,
    helm: HelmPort | None = None,
    statehub: StateHubPort | None = None,
    image: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = _utcnow,
    on_progress: Callable[[int, int, dc.CanarySample], None] | None = None,
    max_samples: int | None = None,
    metrics_window: str | None = None,
    ingress_url: str | None = None,
) -> StageOutcome:
    """Observe the deployed canary over the window; accept, reject or roll it back.

    Resumable: samples already recorded since the last stage 2 ``stage.started`` of the candidate
    count toward the window. ``max_samples`` stops after that many new samples (exit 0, phase
    ``observing``) without completing the stage. ``on_progress(done, expected, sample)`` is called
    after every sample. ``helm`` (default: the real binary) uninstalls the canary on rollback.
    ``metrics_window`` is the PromQL range of each sample (default ``default_metrics_window``);
    ``ingress_url`` is where outside probes enter (default: ``routing.host`` as DNS resolves it).
    """
    if helm is None:
        from railiance_ledger.lifecycle.stage1 import default_helm

        helm = default_helm()
    digest: str | None = None
    if image:
        from railiance_ledger.lifecycle.candidates import parse_candidate_image

        digest = parse_candidate_image(image)[1]
    workload = decl.workload.name
    dep = _open_deployment(store.read_stream(workload), digest)
    if dep is None:
        raise InvalidInput(
            f"no Stage 2 canary of {workload} is being observed",
            hint="deploy one first with `railiance deploy --stage 2 APP_DIR`",
        )
    digest = str(dep.started.candidate)
    ctx = _make_ctx(store, decl, str(dep.started.payload["release"]["image"]))
    ctx.rollback_target = dep.started.payload.get("rollback_target")
    thresholds = _thresholds(decl)
    interval = float(decl.canary.sample_interval)
    window = float(decl.observation_window_seconds)
    expected = max(1, math.ceil(window / interval))
    mwin = metrics_window or default_metrics_window(interval)
    samples = list(dep.samples)
    resumed = len(samples)
    events: list[RecordedEvent] = []
    t0 = clock()
    taken = 0
    while len(samples) < expected:
        if max_samples is not None and taken >= max_samples:
            return StageOutcome(
                document=_progress_doc(ctx, dep, samples, expected, resumed),
                exit_code=0,
                events=events,
                samples=len(samples),
                expected_samples=expected,
            )
        tick = clock()
        history = store.read_stream(workload)
        ctx.history = history  # approvals revoked mid-window count in the final operator_approval check
        sample = _collect(
            index=len(samples),
            at=now(),
            elapsed=tick - t0 + (samples[-1].elapsed_seconds if samples else 0.0),
            decl=decl,
            dep=dep,
            kube=kube,
            metrics=metrics,
            http=http,
            thresholds=thresholds,
            history=history,
            digest=digest,
            metrics_window=mwin,
            ingress_url=ingress_url,
        )
        events += store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.CANARY_SAMPLE,
                    actor=operator,
                    candidate=digest,
                    stage=2,
                    payload=redact_value(sample.to_payload()),
                )
            ]
        )
        samples.append(sample)
        taken += 1
        if on_progress is not None:
            on_progress(len(samples), expected, sample)
        symptom = dc.immediate_rollback_reason(sample, thresholds)
        if symptom is not None:
            return _rollback_and_fail(
                store=store,
                ctx=ctx,
                dep=dep,
                kube=kube,
                helm=helm,
                statehub=statehub,
                operator=operator,
                samples=samples,
                thresholds=thresholds,
                symptom=symptom,
                expected=expected,
                events=events,
                now=now,
            )
        if len(samples) < expected:
            sleep(max(0.0, interval - (clock() - tick)))
    return _finish(
        store=store,
        ctx=ctx,
        dep=dep,
        kube=kube,
        helm=helm,
        statehub=statehub,
        operator=operator,
        samples=samples,
        thresholds=thresholds,
        expected=expected,
        events=events,
        now=now,
    )


def default_metrics_window(interval: float) -> str:
    """The PromQL range each sample reads: three sample intervals, at least 3 s.

    ``rate()`` needs two scrapes inside the range; three intervals keep that true when the scrape
    interval equals the sample interval, and a rise in errors still shows in the next sample.
    """
    return f"{max(math.ceil(interval * 3), 3)}s"


def _progress_doc(
    ctx: _Ctx, dep: _Deployment, samples: Sequence[dc.CanarySample], expected: int, resumed: int
) -> dict[str, Any]:
    return {
        "phase": "observing",
        "stage": 2,
        "workload": {"name": ctx.workload, "repo": ctx.decl.workload.repo},
        "candidate": _candidate(ctx).model_dump(mode="json"),
        "samples": len(samples),
        "expected_samples": expected,
        "resumed_from": resumed,
        "status": "pass",
        "checks": [
            v.to_check().model_dump(mode="json")
            for v in dc.evaluate_sample(samples[-1], _thresholds(ctx.decl))
        ]
        if samples
        else [],
    }


def _verdicts(
    ctx: _Ctx,
    dep: _Deployment,
    samples: Sequence[dc.CanarySample],
    thresholds: dc.Thresholds,
    expected: int,
    helm: HelmPort | None,
    *,
    read_back: bool,
) -> list[Check]:
    """The acceptance gates, ``canary_release_identity`` and ``operator_approval`` (``statehub_note``
    is added by the caller once the note about them was posted)."""
    rb = ctx.decl.rollback
    target = ctx.rollback_target
    readiness = dc.RollbackReadiness(
        target_known=bool(target),
        target=_target_text(target),
        tested=bool(rb.tested),
        command=rb.command or "",
    )
    waivers = {name: ev.event_id for name, ev in ctx.waivers.items()}
    verdicts = dc.evaluate_window(
        samples, thresholds, expected_samples=expected, rollback=readiness, waivers=waivers
    )
    checks = [v.to_check() for v in verdicts]
    identity = _guard(IDENTITY_GATE, lambda: _check_release_identity(ctx, dep, helm if read_back else None))
    checks.append(_waive(ctx, identity))
    checks.append(_check_approval(ctx))
    return checks


def _waive(ctx: _Ctx, check: Check) -> Check:
    """``check`` as ``waived`` when it failed and a stage 2 waiver for its name and this candidate is recorded."""
    waiver = ctx.waivers.get(check.name)
    if check.status != CheckStatus.FAIL or waiver is None:
        return check
    return Check(
        name=check.name,
        status=CheckStatus.WAIVED,
        waiver=waiver.event_id,
        evidence=check.evidence,
        reason=redact(f"{check.reason} (waived by {waiver.actor}, event {waiver.event_id})"),
    )


_SHA256_HEX = frozenset("0123456789abcdef")


def _check_release_identity(ctx: _Ctx, dep: _Deployment, helm: HelmPort | None) -> Check:
    """``canary_release_identity``: the rendered release identity, namespace and release name were
    recorded at deploy and, read back from helm, are still what runs: the recorded revision is the
    deployed one and its manifest pins the candidate digest. ``helm=None`` (the canary was already
    removed by an immediate rollback) checks the record only and says so."""
    name = IDENTITY_GATE
    p = dep.started.payload
    rel = p.get("release") or {}
    sha = str((p.get("manifests") or {}).get("sha256") or "")
    release, namespace, revision = rel.get("name"), rel.get("namespace"), rel.get("revision")
    missing = [
        what
        for what, value in (("release name", release), ("namespace", namespace), ("revision", revision))
        if value in (None, "")
    ]
    if len(sha) != 64 or not set(sha) <= _SHA256_HEX:
        missing.append("rendered manifests sha256")
    if missing:
        return _check(
            name,
            False,
            "release identity not recorded in stage.started: missing " + ", ".join(missing),
            technical=True,
        )
    ident = f"release {namespace}/{release} revision {revision}, rendered manifests sha256:{sha}"
    evidence = [
        Evidence(kind="k8s-object", ref=f"helm-release/{namespace}/{release}", detail=f"revision {revision}"),
        Evidence(kind="summary", ref=f"manifests:sha256:{sha}", detail="rendered release identity"),
    ]
    if helm is None:
        return _check(
            name,
            True,
            f"{ident} recorded (not read back: the immediate rollback removed the release)",
            evidence=evidence,
        )
    try:
        history = helm.history(release=str(release), namespace=str(namespace))
    except AdapterNotFound:
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} not found: removed during the window "
            f"(recorded revision {revision})",
        )
    deployed = [r for r in history if str(r.get("status", "")).lower() == "deployed"]
    if not deployed:
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} has no deployed revision (recorded revision {revision})",
        )
    live = deployed[-1].get("revision")
    if str(live) != str(revision):
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} is at revision {live}, not the recorded "
            f"revision {revision}: it was changed during the window",
        )
    get_manifest: Callable[..., str] | None = getattr(helm, "get_manifest", None)
    if get_manifest is not None:
        manifest = get_manifest(release=str(release), namespace=str(namespace), revision=int(str(revision)))
        if ctx.digest not in manifest:
            return _check(
                name,
                False,
                f"the deployed manifest of {namespace}/{release} revision {revision} does not "
                f"pin the candidate {ctx.digest}",
            )
    return _check(name, True, f"{ident}: deployed as recorded, pinned to {ctx.digest}", evidence=evidence)


def _check_statehub_note(ctx: _Ctx, note: NoteOutcome) -> Check:
    """``statehub_note``: the Stage 2 progress note about this result reached State Hub (its id is in
    the ledger as ``note.posted`` delivered=true); else fail closed with why, unless waived."""
    from railiance_ledger.lifecycle.notes import STATEHUB_URL_ENV

    rec = note.record
    if note.delivered and note.note_id and rec is not None and rec.payload.get("delivered"):
        return _check(
            STATEHUB_GATE,
            True,
            f"progress note {note.note_id} delivered to State Hub (ledger note.posted seq {rec.seq})",
            evidence=[Evidence(kind="statehub", ref=note.note_id, detail=f"note.posted seq {rec.seq}")],
        )
    if not note.configured:
        reason = (
            f"no State Hub configured: {STATEHUB_URL_ENV} is not set, so the required Stage 2 progress "
            "note was not posted"
        )
    else:
        where = f" (ledger note.posted seq {rec.seq}, delivered=false)" if rec is not None else ""
        reason = (
            f"State Hub progress note not delivered after {note.attempts} attempt(s): {note.error}{where}"
        )
    return _waive(ctx, _check(STATEHUB_GATE, False, reason, technical=True))


def _window_evidence(
    ctx: _Ctx, dep: _Deployment, samples: Sequence[dc.CanarySample], note: NoteOutcome
) -> list[Evidence]:
    rel = dep.started.payload.get("release") or {}
    man = dep.started.payload.get("manifests") or {}
    last = samples[-1] if samples else None
    ev = [
        Evidence(kind="digest", ref=ctx.image, detail="candidate"),
        Evidence(
            kind="summary", ref=f"manifests:sha256:{man.get('sha256')}", detail="rendered release identity"
        ),
        Evidence(
            kind="k8s-object",
            ref=f"helm-release/{rel.get('namespace')}/{rel.get('name')}",
            detail=f"revision {rel.get('revision')}",
        ),
    ]
    if last is not None:
        pods = last.pods
        ev.append(
            Evidence(
                kind="pod-status",
                ref=dep.selector,
                detail=f"{pods.ready}/{pods.total} ready, {pods.restarts} restarts"
                if pods.available
                else f"pod status unavailable: {pods.reason}",
            )
        )
        ev.append(Evidence(kind="summary", ref=f"routing:{dep.spec.form}", detail=last.routing.reason))
        key = ctx.decl.key_health
        if last.health_inside is not None:
            ev.append(
                Evidence(
                    kind="http-status",
                    ref=last.health_inside.target or "inside",
                    detail=f"key health inside: {last.health_inside.reason} ({key.name} {key.path})",
                )
            )
        if last.health_outside is not None:
            ev.append(
                Evidence(
                    kind="http-status",
                    ref=last.health_outside.target or "outside",
                    detail=f"key health outside: {last.health_outside.reason} ({key.name} {key.path})",
                )
            )
        unavailable = [
            s.index for s in samples if not (s.canary.error_rate.usable and s.canary.p95_latency_ms.usable)
        ]
        if unavailable:
            ev.append(
                Evidence(
                    kind="query",
                    ref=ctx.decl.observability.prometheus_selector,
                    detail=f"metrics unavailable in samples {unavailable}",
                )
            )
        else:
            ev.append(
                Evidence(
                    kind="query",
                    ref=ctx.decl.observability.prometheus_selector,
                    detail=f"metrics window: {len(samples)} samples from {samples[0].at} to {last.at}",
                )
            )
    ref = (
        note.note_id
        if note.delivered and note.note_id
        else ("not configured" if not note.configured else "not delivered")
    )
    ev.append(Evidence(kind="statehub", ref=ref, detail="progress note"))
    return ev


def _refresh(store: EventStore, ctx: _Ctx) -> None:
    """Re-read the ledger: approvals revoked and waivers recorded during the window count at its end."""
    ctx.history = store.read_stream(ctx.workload)
    ctx.waivers = _waivers(ctx.history, ctx.digest)


def _finish(
    *,
    store: EventStore,
    ctx: _Ctx,
    dep: _Deployment,
    kube: KubePort,
    helm: HelmPort,
    statehub: StateHubPort | None,
    operator: str,
    samples: list[dc.CanarySample],
    thresholds: dc.Thresholds,
    expected: int,
    events: list[RecordedEvent],
    now: Callable[[], datetime],
) -> StageOutcome:
    """End of the window: the gates; then the State Hub note about them; then ``statehub_note``.

    Gates passed: the note says "acceptance gates passed" (never "accepted": the stage accepts only
    once the note is recorded as delivered) and ``statehub_note`` judges its delivery; if that fails
    (no waiver), the canary is rejected and removed like any other. Gates failed: the canary is
    removed first, then the "rejected" note is posted and ``statehub_note`` judges it too.
    """
    _refresh(store, ctx)
    checks = _verdicts(ctx, dep, samples, thresholds, expected, helm, read_back=True)
    warnings: list[str] = []
    rolled_back = False
    if overall_status(checks) == "pass":
        head = events[-1].seq if events else dep.started.seq
        note = _post_note(
            store,
            statehub,
            dep.started,
            ctx.decl,
            warnings=warnings,
            evidence=[],
            title=f"{ctx.workload}: Stage 2 canary acceptance gates passed",
            body=(
                f"Canary {ctx.image}: every acceptance gate passed over {len(samples)}/{expected} "
                f"samples (ledger up to seq {head}). Stage 2 accepts the candidate only once this "
                "note is recorded as delivered; the result follows in the ledger as stage.completed "
                f"(stage 2) of {ctx.workload} for {ctx.digest}."
            ),
        )
        checks.append(_check_statehub_note(ctx, note))
        if overall_status(checks) == "fail":
            events += _rollback(
                store=store,
                ctx=ctx,
                dep=dep,
                kube=kube,
                helm=helm,
                operator=operator,
                now=now,
                symptom=f"canary rejected at the end of the window: {STATEHUB_GATE}",
            )
            rolled_back = True
    else:
        failed = ", ".join(c.name for c in checks if c.status == CheckStatus.FAIL)
        events += _rollback(
            store=store,
            ctx=ctx,
            dep=dep,
            kube=kube,
            helm=helm,
            operator=operator,
            symptom=f"canary rejected at the end of the window: {failed}",
            now=now,
        )
        rolled_back = True
        note = _post_rejection(store, ctx, dep, statehub, samples, checks, expected, warnings)
        checks.append(_check_statehub_note(ctx, note))
    return _close(
        store=store,
        ctx=ctx,
        dep=dep,
        note=note,
        operator=operator,
        samples=samples,
        checks=checks,
        events=events,
        warnings=warnings,
        rolled_back=rolled_back,
        expected=expected,
        now=now,
    )


def _post_rejection(
    store: EventStore,
    ctx: _Ctx,
    dep: _Deployment,
    statehub: StateHubPort | None,
    samples: Sequence[dc.CanarySample],
    checks: Sequence[Check],
    expected: int,
    warnings: list[str],
) -> NoteOutcome:
    """The "rejected" progress note, posted after the canary was removed."""
    failed = [f"{c.name}: {c.reason}" for c in checks if c.status == CheckStatus.FAIL]
    body = (
        f"Canary {ctx.image}: fail; {len(samples)}/{expected} samples. Failed gates: "
        + "; ".join(failed)
        + ". The canary was rolled back."
    )
    return _post_note(
        store,
        statehub,
        dep.started,
        ctx.decl,
        title=f"{ctx.workload}: Stage 2 canary rejected",
        body=body,
        evidence=[],
        warnings=warnings,
    )


def _close(
    *,
    store: EventStore,
    ctx: _Ctx,
    dep: _Deployment,
    note: NoteOutcome,
    operator: str,
    samples: list[dc.CanarySample],
    checks: list[Check],
    events: list[RecordedEvent],
    warnings: list[str],
    rolled_back: bool,
    expected: int,
    now: Callable[[], datetime],
) -> StageOutcome:
    status = overall_status(checks)
    started = datetime.fromisoformat(str(dep.started.payload.get("started_at") or dep.started.recorded_at))
    result = _result(ctx, checks, _window_evidence(ctx, dep, samples, note), started, now())
    doc, evs, w = _complete(store, ctx, result, operator)
    doc["phase"] = "completed"
    doc["rolled_back"] = rolled_back
    doc["statehub_note"] = note.note_id if note.delivered else None
    return StageOutcome(
        document=doc,
        exit_code=0 if status == "pass" else 1,
        events=events + evs,
        warnings=warnings + w,
        rolled_back=rolled_back,
        samples=len(samples),
        expected_samples=expected,
    )


def _rollback(
    *,
    store: EventStore,
    ctx: _Ctx,
    dep: _Deployment,
    kube: KubePort,
    helm: HelmPort | None,
    operator: str,
    symptom: str,
    now: Callable[[], datetime],
) -> list[RecordedEvent]:
    """Append ``rollback.started``, remove the canary, append ``rollback.completed``."""
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
                        "at": _iso(now()),
                        "action": "remove canary routing and release",
                        "rollback_target": target,
                    }
                ),
            )
        ]
    )
    p = dep.started.payload
    action = _remove(
        kube=kube,
        helm=helm,
        spec=dep.spec,
        release=dep.release,
        namespace=dep.namespace,
        creates=p.get("routing_created") or [],
        previous=p.get("routing_previous") or [],
    )
    failed = "FAILED" in action
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
                        "final_image": _target_text(target),
                        "remaining_cleanup": "retry the failed removal steps listed in action"
                        if failed
                        else "none",
                        "candidate_disposition": "returned to Stage 1",
                        "succeeded": not failed,
                        "at": _iso(now()),
                    }
                ),
            ),
        ]
    )
    return begun + done


def _rollback_and_fail(
    *,
    store: EventStore,
    ctx: _Ctx,
    dep: _Deployment,
    kube: KubePort,
    helm: HelmPort,
    statehub: StateHubPort | None,
    operator: str,
    samples: list[dc.CanarySample],
    thresholds: dc.Thresholds,
    symptom: str,
    expected: int,
    events: list[RecordedEvent],
    now: Callable[[], datetime],
) -> StageOutcome:
    events += _rollback(
        store=store, ctx=ctx, dep=dep, kube=kube, helm=helm, operator=operator, symptom=symptom, now=now
    )
    _refresh(store, ctx)
    checks = _verdicts(ctx, dep, samples, thresholds, expected, helm, read_back=False)
    checks.insert(0, _check("immediate_rollback", False, f"rolled back immediately: {symptom}"))
    warnings: list[str] = []
    note = _post_rejection(store, ctx, dep, statehub, samples, checks, expected, warnings)
    checks.append(_check_statehub_note(ctx, note))
    return _close(
        store=store,
        ctx=ctx,
        dep=dep,
        note=note,
        operator=operator,
        samples=samples,
        checks=checks,
        events=events,
        warnings=warnings,
        rolled_back=True,
        expected=expected,
        now=now,
    )


def remove_canary(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    reason: str,
    now: Callable[[], datetime] = _utcnow,
) -> list[RecordedEvent]:
    """Operator-triggered Stage 2 rollback of the canary being observed (``railiance rollback`` during Stage 2)."""
    dep = _open_deployment(store.read_stream(decl.workload.name), None)
    if dep is None:
        raise InvalidInput(f"no Stage 2 canary of {decl.workload.name} is deployed")
    ctx = _make_ctx(store, decl, str(dep.started.payload["release"]["image"]))
    ctx.rollback_target = dep.started.payload.get("rollback_target")
    return _rollback(
        store=store, ctx=ctx, dep=dep, kube=kube, helm=helm, operator=operator, symptom=reason, now=now
    )
