"""Rollback: return production to the previous stable, verify it, and record what happened.

The spec ("Rollback Expectations") asks every Stage 2 and Stage 3 action to identify a previous
stable Helm revision, a previous image digest and values file, a previous routing configuration, or
a documented manual recovery path; and, after a rollback, to record the triggering symptom, the
rollback action, the final stable version, the remaining cleanup, and whether the failed candidate
is blocked, abandoned or returned to Stage 1. ``rollback`` does exactly that:

1. The target comes from the ledger's lineage (``ledger.projections.lineage``): the stable before
   the current one, with the restore information its ``promotion.completed`` recorded (Helm
   revision, rendered-manifests sha256 in the content store, values digests, routing snapshot).
   When the current stable was the first one the ledger saw, the target is the pre-ledger stable
   recorded in that promotion's ``previous_restore``. While a Stage 3 promotion is still open
   (crashed mid-way), the target is the stable it was replacing.
2. The action follows ``rollback.strategy``: ``helm-revision`` (``helm rollback RELEASE REV``),
   ``digest-and-values`` (re-apply exactly the stored rendered manifests of the target, prune
   what only the left stable had), ``routing`` (re-apply exactly the routing objects the
   routing-switch promotion of the left stable replaced, its ``routing_previous``, then retire the
   release the left candidate served from once verified), or
   ``manual`` (record the runbook and act on nothing; call again with ``manual_done=True`` once a
   human has followed it).
3. A rollback verification follows: the rollout is awaited, the live objects are compared with the
   target's stored manifests and image, and the declared ``rollback.verification`` check (a
   ``[[health]]``, ``[[smoke]]`` or ``[[acceptance]]`` entry) is run. Its result is evidence; a
   failed verification is reported (exit 1), never hidden.
4. ``rollback.started`` and ``rollback.completed`` are appended (``final_stable`` is the digest the
   lineage projection returns to), and a State Hub note is posted and recorded.

Deferral (``defer=True``) records ``rollback.deferred`` only with a human approval by another
operator (``approval_id`` of an ``approval.granted`` for the stable being left, recorded after its
promotion and still in force) and a State Hub note; without them it is refused (``GateFailed``).

A forward-only migration in the stable being left blocks the rollback: an automatic caller gets a
``GateFailed`` naming it; an operator may proceed only with ``accept_forward_only=True`` plus such
an approval (the data written by the migration is not undone by re-deploying older code, so a human
must decide that the older code can run against it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.digests import parse_image_ref
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.errors import AdapterError, GateFailed, InvalidInput, RailianceError

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort

__all__ = [
    "CANDIDATE_FATES",
    "RestoreTarget",
    "RollbackOutcome",
    "rollback",
]

CANDIDATE_FATES: tuple[str, ...] = ("returned-to-stage1", "blocked", "abandoned")
"""What becomes of the candidate that was rolled back (the spec's blocked / abandoned / returned to Stage 1)."""

FATE_TEXT = {"returned-to-stage1": "returned to Stage 1", "blocked": "blocked", "abandoned": "abandoned"}
FIELD_MANAGER = "railiance-ledger"
RESTORE_KEYS = (
    "digest",
    "image",
    "release",
    "namespace",
    "helm_revision",
    "manifests_sha256",
    "values",
    "routing_snapshot",
    "serving_release",
    "source",
)
"""The keys of a restore record kept for a stable (never nested further: payloads stay bounded)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class RestoreTarget:
    """Everything needed to put one stable back: what it was and how it was deployed.

    ``routing_snapshot`` holds the production routing objects (cleaned Ingress/HTTPRoute dicts) as
    they were while this stable served; ``manifests_sha256`` names its rendered manifests in the
    content store (``$RAILIANCE_HOME/manifests``).
    """

    digest: str | None
    image: str | None
    release: str
    namespace: str
    helm_revision: int | None = None
    manifests_sha256: str | None = None
    values: tuple[dict[str, Any], ...] = ()
    routing_snapshot: tuple[dict[str, Any], ...] = ()
    serving_release: str | None = None
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready restore record (the keys of ``RESTORE_KEYS``)."""
        data = asdict(self)
        data["values"] = list(self.values)
        data["routing_snapshot"] = list(self.routing_snapshot)
        return data

    @property
    def text(self) -> str:
        """How an operator would name it: the image, else the digest, else the Helm revision."""
        if self.image or self.digest:
            return str(self.image or self.digest)
        return f"{self.namespace}/{self.release} revision {self.helm_revision}"

    @classmethod
    def from_restore(
        cls,
        restore: Mapping[str, Any],
        decl: Declaration,
        *,
        source: str,
        digest: str | None = None,
        image: str | None = None,
    ) -> RestoreTarget:
        """Build one from a promotion payload or a ``previous_restore`` record."""
        prod = decl.stages.production
        rev = restore.get("helm_revision")
        return cls(
            digest=digest or restore.get("digest"),
            image=image or restore.get("image"),
            release=str(restore.get("release") or prod.release),
            namespace=str(restore.get("namespace") or prod.namespace),
            helm_revision=int(rev) if isinstance(rev, (int, str)) and str(rev).isdigit() else None,
            manifests_sha256=restore.get("manifests_sha256"),
            values=tuple(restore.get("values") or ()),
            routing_snapshot=tuple(restore.get("routing_snapshot") or ()),
            serving_release=restore.get("serving_release"),
            source=source or str(restore.get("source") or ""),
        )


@dataclass
class RollbackOutcome:
    """What a rollback call did: the document to render, the exit code and the events appended.

    ``phase`` is one of ``rolled-back`` (verified), ``verification-failed`` (restored, the check
    failed: exit 1), ``deferred``, ``manual-action-required`` (the runbook was recorded; nothing was
    done by us: exit 1), ``canary-removed`` (a Stage 2 canary was rolled back) or ``failed``.
    """

    document: dict[str, Any]
    exit_code: int
    phase: str
    events: list[RecordedEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the call succeeded (exit 0)."""
        return self.exit_code == 0


# ---------------------------------------------------------------------------------------- helpers


def clean_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes object without status and server-assigned metadata (what can be re-applied)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in (
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
    ):
        meta.pop(key, None)
    ann = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def split_docs(text: str) -> list[dict[str, Any]]:
    """The mappings of a multi-document YAML text."""
    import yaml  # type: ignore[import-untyped]

    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def _api_version_of(doc: Mapping[str, Any]) -> str:
    return str(doc.get("apiVersion") or "v1")


def subset_mismatches(want: Any, have: Any, path: str = "") -> list[str]:
    """Where ``have`` (a live object) differs from ``want`` (a rendered one); fields the server added are fine."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [f"{path or '.'}: expected a mapping"]
        out: list[str] = []
        for k, v in want.items():
            out += subset_mismatches(v, have.get(k), f"{path}.{k}")
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [f"{path}: expected {len(want)} items"]
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += subset_mismatches(w, h, f"{path}[{i}]")
        return out
    if want is None:
        return []
    if want != have and str(want) != str(have):
        return [f"{path}: expected {want!r}, found {have!r}"]
    return []


def compare_live(kube: KubePort, docs: Sequence[Mapping[str, Any]], namespace: str) -> list[str]:
    """Mismatches between the rendered ``docs`` and the live objects (``spec``/``data`` and labels)."""
    problems: list[str] = []
    for doc in docs:
        kind, name = str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))
        live = kube.get(api_version=_api_version_of(doc), kind=kind, namespace=namespace, name=name)
        if live is None:
            problems.append(f"{kind}/{name} is missing")
            continue
        for key in ("spec", "data", "stringData"):
            if key in doc:
                problems += [
                    f"{kind}/{name}{m}" for m in subset_mismatches(doc[key], live.get(key), f".{key}")
                ]
        labels = (doc.get("metadata") or {}).get("labels") or {}
        problems += [
            f"{kind}/{name}{m}"
            for m in subset_mismatches(
                labels, (live.get("metadata") or {}).get("labels") or {}, ".metadata.labels"
            )
        ]
    return problems


def deployment_of(docs: Sequence[Mapping[str, Any]], release: str) -> tuple[str, dict[str, str]]:
    """``(name, matchLabels)`` of the first Deployment in ``docs`` (else the release name and instance label)."""
    dep = next((d for d in docs if d.get("kind") == "Deployment"), None)
    if dep is None:
        return release, {"app.kubernetes.io/instance": release}
    labels = (((dep.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return str(dep["metadata"]["name"]), {str(k): str(v) for k, v in labels.items()}


def await_rollout(
    *,
    kube: KubePort,
    namespace: str,
    deployment: str,
    image: str | None,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 0.2,
) -> tuple[bool, str]:
    """Wait until the Deployment's wanted replicas are ready and every live pod runs ``image``.

    Returns ``(ok, detail)``; on timeout ``detail`` says what was last seen. A Deployment that
    cannot be read fails (technical failures fail closed).
    """
    deadline = clock() + timeout
    detail = "not checked"
    while True:
        try:
            dep = kube.get(api_version="apps/v1", kind="Deployment", namespace=namespace, name=deployment)
        except AdapterError as exc:
            return False, f"Deployment {namespace}/{deployment} could not be read: {exc.reason}"
        if dep is None:
            detail = f"Deployment {namespace}/{deployment} not found"
        else:
            spec = dep.get("spec") or {}
            want = int(spec.get("replicas", 1) or 0)
            images = [
                str(c.get("image"))
                for c in (((spec.get("template") or {}).get("spec") or {}).get("containers") or [])
            ]
            labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = [
                p
                for p in kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=selector)
                if not (p.get("metadata") or {}).get("deletionTimestamp")
            ]
            ready = [
                p
                for p in pods
                if any(
                    c.get("type") == "Ready" and str(c.get("status")) == "True"
                    for c in (p.get("status") or {}).get("conditions") or []
                )
            ]
            pod_images = sorted(
                {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
            )
            wrong_template = image is not None and image not in images
            stale = image is not None and any(i != image for i in pod_images)
            detail = (
                f"Deployment {deployment}: template image {', '.join(images) or '?'}; {len(ready)}/{want} ready; "
                f"pod images {', '.join(pod_images) or 'none'}"
            )
            if not wrong_template and not stale and len(ready) >= want and len(pods) == want:
                return True, detail
        if clock() >= deadline:
            return False, f"timed out after {timeout:g}s: {detail}"
        sleep(poll)


def _human_decision(
    store: EventStore,
    workload: str,
    *,
    approval_id: str | None,
    operator: str,
    digest: str,
    after_seq: int,
    what: str,
) -> RecordedEvent:
    """The approval that authorises ``what``: in force, for ``digest``, after ``after_seq``, by someone else."""
    from railiance_ledger.lifecycle.approvals import approval_state

    if not approval_id:
        raise GateFailed(
            f"{what} needs a recorded human approval: none was given",
            hint=(
                "ask another operator to record one (`railiance approve APP_DIR --stage 3 --image <stable> "
                "--operator OTHER`) and pass its event id with --approval"
            ),
        )
    grant = next(
        (
            ev
            for ev in store.read_stream(workload)
            if ev.event_id == approval_id and ev.kind == EventKind.APPROVAL_GRANTED
        ),
        None,
    )
    if grant is None:
        raise GateFailed(f"{what}: approval {approval_id} is not an approval.granted of {workload}")
    if grant.candidate != digest:
        raise GateFailed(f"{what}: approval {approval_id} is for {grant.candidate}, not for {digest}")
    if grant.seq <= after_seq:
        raise GateFailed(
            f"{what}: approval {approval_id} predates the promotion it would cover (seq {grant.seq} "
            f"<= {after_seq}); a decision about this incident needs a fresh approval"
        )
    if grant.actor == operator:
        raise GateFailed(
            f"{what}: {operator} cannot approve their own request; another operator must approve"
        )
    state = approval_state(store, workload, digest, int(grant.stage or 3))
    if not state.granted or state.approval_id != grant.event_id:
        raise GateFailed(f"{what}: approval {approval_id} has been revoked or superseded")
    return grant


# ---------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class _Plan:
    """Where we are and where we go back to."""

    leaving_digest: str | None
    leaving_image: str | None
    leaving_restore: dict[str, Any]
    leaving_seq: int
    target: RestoreTarget
    open_stage3: RecordedEvent | None


def _open_stage3(history: Sequence[RecordedEvent]) -> RecordedEvent | None:
    """The latest stage 3 ``stage.started`` with no ``stage.completed`` (stage 3) or rollback after it."""
    current: RecordedEvent | None = None
    for ev in history:
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 3:
            current = ev
        elif (
            current is not None
            and ev.candidate == current.candidate
            and (
                (ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 3)
                or ev.kind == EventKind.ROLLBACK_COMPLETED
            )
        ):
            current = None
    return current


def _plan(store: EventStore, decl: Declaration) -> _Plan:
    from railiance_ledger.ledger.projections import lineage

    workload = decl.workload.name
    history = store.read_stream(workload)
    open3 = _open_stage3(history)
    if open3 is not None:
        prev = open3.payload.get("previous_stable") or {}
        return _Plan(
            leaving_digest=open3.candidate,
            leaving_image=(open3.payload.get("candidate") or {}).get("image"),
            leaving_restore=dict(open3.payload.get("candidate_restore") or {}),
            leaving_seq=open3.seq,
            target=RestoreTarget.from_restore(
                prev, decl, source="the stable an unfinished Stage 3 was replacing"
            ),
            open_stage3=open3,
        )
    lin = lineage(store, workload)
    current = lin.current_stable
    if current is None:
        raise GateFailed(
            f"{workload} has no stable version in the ledger: nothing was promoted, so there is nothing to roll back",
            hint="a Stage 2 canary is rolled back by `railiance rollback` while it is observed",
        )
    target = lin.rollback_target
    if target is None:
        raise GateFailed(f"{workload}: no earlier stable is known to roll back to from {current.digest}")
    if target.known:
        restore = RestoreTarget.from_restore(
            target.restore,
            decl,
            source="ledger lineage (previous stable)",
            digest=target.digest,
            image=target.image,
        )
    else:
        prev = dict(current.restore.get("previous_restore") or {})
        restore = RestoreTarget.from_restore(
            prev,
            decl,
            source="pre-ledger stable recorded by the first promotion",
            digest=target.digest,
            image=prev.get("image") or target.image,
        )
    return _Plan(
        leaving_digest=current.digest,
        leaving_image=current.image,
        leaving_restore=dict(current.restore),
        leaving_seq=current.seq,
        target=restore,
        open_stage3=None,
    )


# ---------------------------------------------------------------------------------------- actions


def restore_stable(
    *,
    decl: Declaration,
    kube: KubePort,
    helm: HelmPort,
    target: RestoreTarget,
    leaving: Mapping[str, Any],
    strategy: str,
    home: Path | None = None,
) -> tuple[str, list[str], list[str]]:
    """Put ``target`` back by ``strategy``; return ``(action, failures, remaining cleanup)``.

    Never raises for an adapter failure: what could not be done is listed in ``failures``.
    """
    from railiance_ledger.lifecycle.stage2 import load_manifests

    failures: list[str] = []
    cleanup: list[str] = []
    ns, release = target.namespace, target.release
    if strategy == "helm-revision" and target.helm_revision is None:
        if target.manifests_sha256:
            strategy = "digest-and-values"
            cleanup.append(
                "no Helm revision was recorded for the target: its stored manifests were re-applied instead"
            )
        else:
            return (
                f"helm rollback {release}: no revision recorded for {target.text}",
                [f"no Helm revision and no stored manifests recorded for {target.text}"],
                cleanup,
            )
    if strategy == "helm-revision":
        action = f"helm rollback {release} {target.helm_revision} --namespace {ns}"
        rollback_fn = getattr(helm, "rollback", None)
        if rollback_fn is None:
            failures.append("the Helm adapter cannot roll back releases")
        else:
            try:
                rollback_fn(release=release, namespace=ns, revision=target.helm_revision, wait=True)
            except AdapterError as exc:
                failures.append(f"{action} failed: {exc.reason}")
    elif strategy == "digest-and-values":
        if not target.manifests_sha256:
            return (
                f"re-apply stored manifests of {target.text}",
                [f"no rendered manifests were stored for {target.text}"],
                cleanup,
            )
        action = f"re-applied the stored rendered manifests sha256:{target.manifests_sha256} of {target.text} to {ns}"
        try:
            docs = split_docs(load_manifests(target.manifests_sha256, home))
        except (OSError, InvalidInput) as exc:
            return action, [f"stored manifests unavailable: {exc}"], cleanup
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = ns
        try:
            kube.apply(manifests=docs, field_manager=FIELD_MANAGER, force=True)
        except AdapterError as exc:
            failures.append(f"apply failed: {exc.reason}")
        keep = {(d.get("kind"), d["metadata"].get("name")) for d in docs}
        old_sha = leaving.get("manifests_sha256")
        if old_sha and old_sha != target.manifests_sha256:
            try:
                for doc in split_docs(load_manifests(str(old_sha), home)):
                    key = (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
                    if key not in keep:
                        kube.delete(
                            api_version=_api_version_of(doc), kind=str(key[0]), namespace=ns, name=str(key[1])
                        )
                        action += f"; pruned {key[0]}/{key[1]}"
            except (OSError, InvalidInput, AdapterError) as exc:
                cleanup.append(f"prune objects only the left stable had: {exc}")
        cleanup.append(
            f"Helm's release record of {ns}/{release} still names the rolled-back revision; "
            "re-sync it with `helm upgrade` pinned to the restored digest at the next promotion"
        )
    elif strategy == "routing":
        objs = routing_objects(leaving)
        if not objs:
            why = (
                f"the stable being left ({leaving.get('image') or leaving.get('digest') or 'unknown'}) was not "
                "promoted by a routing switch: no previous routing configuration is recorded with it, so a "
                f"routing rollback cannot restore {target.text}; declare helm-revision or digest-and-values"
            )
            return "re-apply the previous routing configuration", [why], cleanup
        action = "re-applied the previous routing configuration recorded by the routing switch: " + ", ".join(
            f"{o['kind']}/{o['metadata']['name']}" for o in objs
        )
        try:
            kube.apply(manifests=objs, field_manager=FIELD_MANAGER, force=True)
        except AdapterError as exc:
            failures.append(f"routing apply failed: {exc.reason}")
    else:
        raise InvalidInput(f"unknown rollback strategy {strategy!r}")
    return action, failures, cleanup


def routing_objects(leaving: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The routing objects a routing rollback re-applies: ``routing_previous`` of the stable being left.

    A routing-switch promotion records, in its ``promotion.completed`` payload (and, while it is
    still open, in its ``stage.started`` ``candidate_restore``), the exact routing objects it
    replaced (the stable Service with its previous selector, and the Ingress/HTTPRoute objects of
    the host), cleaned of server fields. Empty when the stable being left was not routing-switched.
    """
    return [clean_object(o) for o in leaving.get("routing_previous") or () if isinstance(o, Mapping)]


def _selected_pods(
    kube: KubePort, namespace: str, service: str
) -> tuple[dict[str, Any] | None, str, list[dict[str, Any]]]:
    """``(Service, selector text, live pods it selects)`` of ``service``."""
    svc = kube.get(api_version="v1", kind="Service", namespace=namespace, name=service)
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = [
        p
        for p in (
            kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=sel) if sel else []
        )
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    return svc, sel, pods


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and str(c.get("status")) == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def routing_read_back(
    kube: KubePort, objs: Sequence[Mapping[str, Any]], *, namespace: str, service: str, image: str | None
) -> dict[str, Any]:
    """Read routing back after a routing switch or a routing rollback.

    ``ok`` when every object of ``objs`` is live with its ``spec`` and labels (a Service's selector
    must be exactly equal: extra selector keys would select other pods), and the stable Service
    ``service`` selects at least one ready pod and only pods running ``image`` (when given).
    """
    problems: list[str] = []
    for want in objs:
        kind, name = str(want.get("kind")), str((want.get("metadata") or {}).get("name"))
        ns = str((want.get("metadata") or {}).get("namespace") or namespace)
        live = kube.get(api_version=_api_version_of(want), kind=kind, namespace=ns, name=name)
        if live is None:
            problems.append(f"{kind}/{name} is missing")
            continue
        problems += [
            f"{kind}/{name}{m}" for m in subset_mismatches(want.get("spec"), live.get("spec"), ".spec")
        ]
        problems += [
            f"{kind}/{name}{m}"
            for m in subset_mismatches(
                (want.get("metadata") or {}).get("labels") or {},
                (live.get("metadata") or {}).get("labels") or {},
                ".metadata.labels",
            )
        ]
        if kind == "Service":
            have = (live.get("spec") or {}).get("selector") or {}
            wanted = (want.get("spec") or {}).get("selector") or {}
            if have != wanted:
                problems.append(f"Service/{name}.spec.selector: expected exactly {wanted!r}, found {have!r}")
    svc, sel, pods = _selected_pods(kube, namespace, service)
    images = sorted(
        {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
    )
    ready = sum(1 for p in pods if _ready(p))
    if svc is None:
        problems.append(f"stable Service {namespace}/{service} not found")
    elif ready == 0:
        problems.append(f"the stable Service {service} ({sel or 'no selector'}) selects no ready pod")
    if image and images and images != [image]:
        problems.append(
            f"the stable Service {service} selects pods running {', '.join(images)}, not only {image}"
        )
    return {
        "ok": not problems,
        "objects": [f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}" for o in objs],
        "selector": sel,
        "pods": f"{ready}/{len(pods)} ready",
        "pod_images": images,
        "detail": "; ".join(problems[:10])
        if problems
        else f"Service {service} selects {sel}: {ready}/{len(pods)} pods ready on {image or ', '.join(images)}; "
        f"{len(objs)} routing objects as recorded",
    }


def _find_check(decl: Declaration, name: str | None) -> tuple[str, Any] | None:
    if not name:
        return None
    for kind, table in (("health", decl.health), ("smoke", decl.smoke), ("acceptance", decl.acceptance)):
        for item in table:
            if item.name == name:
                return kind, item
    return None


def run_check(
    *,
    decl: Declaration,
    kube: KubePort,
    http: httpx.Client,
    name: str | None,
    namespace: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """Run one declared check by name (the rollback verification); ``{"check", "ok", "detail", "target"}``.

    health checks go through the API server's service proxy to the stable service (inside the
    cluster); smoke and http acceptance checks go through the production ingress URL when a host is
    declared (outside), else through the service proxy; command acceptance checks run locally.
    """
    found = _find_check(decl, name)
    if found is None:
        return {
            "check": name,
            "ok": False,
            "detail": "no rollback verification check declared",
            "target": None,
        }
    kind, item = found
    ns = namespace or decl.stages.production.namespace
    svc = service or decl.routing.service
    if kind == "acceptance" and item.kind == "command":
        from railiance_ledger.adapters.process import run_command

        try:
            res = run_command(argv=list(item.command), cwd=decl.railiance_dir, timeout=float(item.timeout))
        except AdapterError as exc:
            return {"check": name, "ok": False, "detail": redact(str(exc)), "target": "command"}
        return {"check": name, "ok": res.ok, "detail": f"exit {res.exit_code}", "target": "command"}
    if kind == "acceptance" and item.kind == "tcp":
        return {
            "check": name,
            "ok": False,
            "detail": "tcp verification checks are not supported yet",
            "target": None,
        }
    path, expect = str(item.path), int(item.expect_status)
    retries = int(getattr(item, "retries", 2) or 0)
    if kind != "health" and decl.routing.host:
        return probe_url(http, decl, path, expect, retries=retries) | {"check": name}
    target = f"service/{ns}/{svc}:{decl.routing.port}{path}"
    detail = "not probed"
    for attempt in range(retries + 1):
        try:
            code, _body = kube.service_proxy_get(namespace=ns, service=svc, port=decl.routing.port, path=path)
            if code == expect:
                return {"check": name, "ok": True, "detail": f"HTTP {code}", "target": target}
            detail = f"HTTP {code}, expected {expect}"
        except AdapterError as exc:
            detail = redact(exc.reason)
        if attempt < retries:
            time.sleep(0.2)
    return {"check": name, "ok": False, "detail": detail, "target": target}


def probe_url(
    http: httpx.Client, decl: Declaration, path: str, expect: int, *, retries: int = 0
) -> dict[str, Any]:
    """GET ``path`` on the production URL (``https`` when a TLS secret is declared)."""
    scheme = "https" if decl.routing.tls_secret else "http"
    url = f"{scheme}://{decl.routing.host}{path}"
    detail = "not probed"
    for attempt in range(retries + 1):
        try:
            r = http.get(url, timeout=5.0)
            if r.status_code == expect:
                return {"ok": True, "detail": f"HTTP {r.status_code}", "target": url, "status": r.status_code}
            detail = f"HTTP {r.status_code}, expected {expect}"
        except Exception as exc:  # noqa: BLE001 - any transport failure fails the probe closed
            detail = redact(f"{type(exc).__name__}: {exc}")
        if attempt < retries:
            time.sleep(0.2)
    return {"ok": False, "detail": detail, "target": url, "status": None}


def verify_restored(
    *,
    decl: Declaration,
    kube: KubePort,
    http: httpx.Client,
    target: RestoreTarget,
    strategy: str,
    home: Path | None,
    timeout: float,
    sleep: Callable[[float], None],
    routing: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The rollback verification: rollout of the target, live objects vs its manifests, the declared check.

    For the ``routing`` strategy the stored manifests are not compared (the target's release was
    never changed); instead the re-applied ``routing`` objects are read back (``routing_read_back``:
    exactly as recorded, and the stable Service selects only ready pods of the target image).
    """
    from railiance_ledger.lifecycle.stage2 import load_manifests

    docs: list[dict[str, Any]] = []
    manifests: dict[str, Any] = {"checked": False}
    if target.manifests_sha256:
        try:
            docs = split_docs(load_manifests(target.manifests_sha256, home))
        except (OSError, InvalidInput) as exc:
            manifests = {"checked": False, "ok": False, "detail": f"stored manifests unavailable: {exc}"}
    release = target.serving_release or target.release
    name, _labels = deployment_of(docs, release)
    rollout_ok, rollout = await_rollout(
        kube=kube,
        namespace=target.namespace,
        deployment=name,
        image=target.image,
        timeout=timeout,
        sleep=sleep,
    )
    if docs and strategy != "routing":
        problems = compare_live(kube, docs, target.namespace)
        manifests = {
            "checked": True,
            "ok": not problems,
            "sha256": target.manifests_sha256,
            "objects": [f"{d.get('kind')}/{d['metadata'].get('name')}" for d in docs],
            "detail": "live objects match the stored manifests" if not problems else "; ".join(problems[:10]),
        }
    read_back: dict[str, Any] | None = None
    if strategy == "routing":
        read_back = routing_read_back(
            kube, routing, namespace=target.namespace, service=decl.routing.service, image=target.image
        )
        if not routing:
            read_back = {**read_back, "ok": False, "detail": "no routing configuration was re-applied"}
    check = run_check(
        decl=decl, kube=kube, http=http, name=decl.rollback.verification, namespace=target.namespace
    )
    ok = rollout_ok and check["ok"] and manifests.get("ok", True) is not False
    out = {"ok": ok, "rollout": {"ok": rollout_ok, "detail": rollout}, "manifests": manifests, "check": check}
    if read_back is not None:
        out["routing"] = read_back
        out["ok"] = ok and bool(read_back["ok"])
    return out


# ---------------------------------------------------------------------------------------- service


def rollback(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    reason: str,
    statehub: StateHubPort | None = None,
    defer: bool = False,
    approval_id: str | None = None,
    candidate_fate: str = "returned-to-stage1",
    accept_forward_only: bool = False,
    automatic: bool = False,
    manual_done: bool = False,
    now: Callable[[], datetime] = _utcnow,
    home: Path | None = None,
    ready_timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackOutcome:
    """Roll production back to the previous stable (or defer it with a human approval), verify, record.

    ``reason`` is the triggering symptom. ``candidate_fate`` records whether the rolled-back
    candidate is ``returned-to-stage1`` (it needs a new Stage 1 pass), ``blocked`` or ``abandoned``
    (it may never be promoted again). ``automatic=True`` marks callers that are not a human at a
    terminal (sensors, the promotion's own rollback): they never get past a forward-only migration.

    While a Stage 2 canary is being observed, the rollback removes the canary (``stage2.remove_canary``).
    Raises ``InvalidInput`` (exit 2) for a missing reason, operator or unknown fate, and ``GateFailed``
    (exit 1) when there is nothing to roll back to, a deferral or forward-only override lacks its
    approval, or a forward-only migration blocks an automatic rollback.
    """
    from railiance_ledger.lifecycle.approvals import require_operator
    from railiance_ledger.lifecycle.stage2 import _open_deployment, remove_canary

    who = require_operator(operator, what="a rollback")
    if not reason or not reason.strip():
        raise InvalidInput("a rollback needs the triggering symptom", hint="pass --reason TEXT")
    symptom = redact(reason.strip())
    if candidate_fate not in CANDIDATE_FATES:
        raise InvalidInput(
            f"unknown candidate fate {candidate_fate!r}", hint="use one of " + ", ".join(CANDIDATE_FATES)
        )
    workload = decl.workload.name
    history = store.read_stream(workload)

    if not defer and _open_deployment(history, None) is not None and _open_stage3(history) is None:
        events = remove_canary(
            store=store, decl=decl, operator=who, kube=kube, helm=helm, reason=symptom, now=now
        )
        done = events[-1] if events else None
        ok = bool(done and done.payload.get("succeeded", True))
        doc = {
            "kind": "railiance.rollback/v1",
            "workload": workload,
            "phase": "canary-removed",
            "symptom": symptom,
            "action": done.payload.get("action") if done else None,
            "final_stable": done.payload.get("final_stable") if done else None,
            "status": "pass" if ok else "fail",
            "ledger": {"seq": done.seq, "hash": done.hash} if done else None,
        }
        return RollbackOutcome(document=doc, exit_code=0 if ok else 1, phase="canary-removed", events=events)

    plan = _plan(store, decl)
    leaving = plan.leaving_digest or ""
    forward_only = plan.leaving_restore.get("migrations") == "forward-only" or (
        plan.open_stage3 is not None and decl.migrations.classification == "forward-only"
    )
    decision: RecordedEvent | None = None
    if forward_only:
        if automatic or not accept_forward_only:
            raise GateFailed(
                f"forward-only migration in {plan.leaving_image or leaving} blocks automatic rollback: the older "
                f"code would run against data it may not understand; a human must decide",
                hint=(
                    "review the migration, then have another operator approve and run "
                    "`railiance rollback APP_DIR --reason TEXT --accept-forward-only --approval <approval id>`"
                ),
            )
        decision = _human_decision(
            store,
            workload,
            approval_id=approval_id,
            operator=who,
            digest=leaving,
            after_seq=plan.leaving_seq,
            what="rolling back over a forward-only migration",
        )
    if defer:
        return _defer(
            store=store,
            decl=decl,
            operator=who,
            plan=plan,
            symptom=symptom,
            approval_id=approval_id,
            statehub=statehub,
            now=now,
        )

    strategy = decl.rollback.strategy
    started_payload = {
        "symptom": symptom,
        "reason": symptom,
        "at": _iso(now()),
        "strategy": strategy,
        "from_stable": leaving or None,
        "from_image": plan.leaving_image,
        "rollback_target": plan.target.as_dict(),
        "automatic": automatic,
        "forward_only_accepted_by": decision.event_id if decision else None,
    }
    if strategy == "manual":
        return _manual(
            store=store,
            decl=decl,
            operator=who,
            kube=kube,
            http=http,
            plan=plan,
            symptom=symptom,
            fate=candidate_fate,
            started_payload=started_payload,
            statehub=statehub,
            done=manual_done,
            now=now,
            home=home,
            ready_timeout=ready_timeout,
            sleep=sleep,
        )
    return _perform(
        store=store,
        decl=decl,
        operator=who,
        kube=kube,
        helm=helm,
        http=http,
        plan=plan,
        symptom=symptom,
        fate=candidate_fate,
        strategy=strategy,
        started_payload=started_payload,
        statehub=statehub,
        now=now,
        home=home,
        ready_timeout=ready_timeout,
        sleep=sleep,
    )


def _perform(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    plan: _Plan,
    symptom: str,
    fate: str,
    strategy: str,
    started_payload: dict[str, Any],
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    home: Path | None,
    ready_timeout: float,
    sleep: Callable[[float], None],
    stage: int = 3,
) -> RollbackOutcome:
    workload = decl.workload.name
    events = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_STARTED,
                actor=operator,
                candidate=plan.leaving_digest,
                stage=stage,
                payload=redact_value(started_payload),
            )
        ]
    )
    action, failures, cleanup = restore_stable(
        decl=decl,
        kube=kube,
        helm=helm,
        target=plan.target,
        leaving=plan.leaving_restore,
        strategy=strategy,
        home=home,
    )
    verification = verify_restored(
        decl=decl,
        kube=kube,
        http=http,
        target=plan.target,
        strategy=strategy,
        home=home,
        timeout=ready_timeout,
        sleep=sleep,
        routing=routing_objects(plan.leaving_restore) if strategy == "routing" else (),
    )
    if strategy == "routing":
        action = _retire_switched_release(
            decl=decl,
            helm=helm,
            target=plan.target,
            leaving=plan.leaving_restore,
            verified=not failures and bool(verification.get("ok")),
            action=action,
            cleanup=cleanup,
        )
    return _complete(
        store=store,
        decl=decl,
        operator=operator,
        plan=plan,
        symptom=symptom,
        fate=fate,
        action=action,
        failures=failures,
        cleanup=cleanup,
        verification=verification,
        statehub=statehub,
        now=now,
        events=events,
        strategy=strategy,
        stage=stage,
    )


def _retire_switched_release(
    *,
    decl: Declaration,
    helm: HelmPort,
    target: RestoreTarget,
    leaving: Mapping[str, Any],
    verified: bool,
    action: str,
    cleanup: list[str],
) -> str:
    """After a routing rollback: uninstall the release the left candidate served from, once verified.

    Only a release other than the production release and the target's own serving release is
    removed (the canary release a routing switch made stable). Unverified: it is kept and named in
    the remaining cleanup. Returns the action text (with the uninstall appended).
    """
    release = str(leaving.get("serving_release") or "")
    namespace = str(leaving.get("namespace") or target.namespace)
    keep = {decl.stages.production.release, target.serving_release or target.release}
    if not release or release in keep:
        return action
    if not verified:
        cleanup.append(
            f"release {namespace}/{release} that served the rolled-back candidate is still installed; "
            "uninstall it once the rollback is verified"
        )
        return action
    try:
        helm.uninstall(release=release, namespace=namespace)
        return action + f"; helm uninstall {release} (served the rolled-back candidate)"
    except AdapterError as exc:
        if "not found" in str(exc).lower():
            return action + f"; release {release} already gone"
        cleanup.append(f"helm uninstall {namespace}/{release} failed: {exc.reason}; uninstall it by hand")
        return action


def _complete(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    plan: _Plan,
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
        "candidate_disposition": FATE_TEXT[fate],
        "candidate_fate": fate,
        "verification": verification,
        "failures": failures,
        "succeeded": ok,
        "at": _iso(now()),
    }
    done = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_COMPLETED,
                actor=operator,
                candidate=plan.leaving_digest,
                stage=stage,
                payload=redact_value(payload),
            )
        ]
    )[0]
    events.append(done)
    warnings: list[str] = []
    note_id = _note(
        store,
        statehub,
        done,
        decl,
        warnings,
        title=f"{workload}: rolled back to {target.text}" + ("" if ok else " (verification FAILED)"),
        body=(
            f"Symptom: {symptom}.\nAction: {action}.\nFinal stable: {target.text}.\n"
            f"Verification ({verification['check'].get('check')}): {verification['check'].get('detail')}; "
            f"rollout: {verification['rollout']['detail']}; manifests: "
            f"{verification['manifests'].get('detail', 'not compared')}.\n"
            f"Remaining cleanup: {'; '.join(cleanup) or 'none'}.\n"
            f"Candidate {plan.leaving_image or plan.leaving_digest}: {FATE_TEXT[fate]}."
        ),
    )
    phase = "rolled-back" if ok else "verification-failed"
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
                "candidate_disposition",
                "verification",
                "failures",
            )
        },
        "rollback_target": target.as_dict(),
        "statehub_note": note_id,
        "ledger": {"seq": done.seq, "hash": done.hash},
    }
    return RollbackOutcome(
        document=doc, exit_code=0 if ok else 1, phase=phase, events=events, warnings=warnings
    )


def _manual(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    http: httpx.Client,
    plan: _Plan,
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
    """The documented manual path: record the runbook; verify and complete only once a human says it is done."""
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
        note_id = _note(
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
    return _complete(
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


def _defer(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    plan: _Plan,
    symptom: str,
    approval_id: str | None,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
) -> RollbackOutcome:
    """``rollback.deferred``: only with a human approval by another operator and a State Hub note."""
    from railiance_ledger.lifecycle.notes import statehub_from_env

    workload = decl.workload.name
    hub = statehub if statehub is not None else statehub_from_env()
    grant = _human_decision(
        store,
        workload,
        approval_id=approval_id,
        operator=operator,
        digest=plan.leaving_digest or "",
        after_seq=plan.leaving_seq,
        what="deferring a rollback",
    )
    if hub is None:
        raise GateFailed(
            "deferring a rollback requires a State Hub note, and no State Hub is configured",
            hint="set RAILIANCE_STATEHUB_URL, or roll back now",
        )
    payload = {
        "symptom": symptom,
        "reason": symptom,
        "requested_by": operator,
        "approved_by": grant.actor,
        "approval_id": grant.event_id,
        "current_stable": plan.leaving_digest,
        "rollback_target": plan.target.as_dict(),
        "at": _iso(now()),
        "why": "the rollback is judged more dangerous than the incident state",
    }
    ev = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.ROLLBACK_DEFERRED,
                actor=operator,
                candidate=plan.leaving_digest,
                stage=3,
                payload=redact_value(payload),
            )
        ]
    )[0]
    warnings: list[str] = []
    note_id = _note(
        store,
        hub,
        ev,
        decl,
        warnings,
        title=f"{workload}: rollback deferred (approved by {grant.actor})",
        body=(
            f"Symptom: {symptom}.\nRollback to {plan.target.text} deferred by {operator}, approved by "
            f"{grant.actor} (approval {grant.event_id}): the rollback is judged more dangerous than the "
            "incident state."
        ),
    )
    delivered = note_id is not None
    doc = {
        "kind": "railiance.rollback/v1",
        "workload": workload,
        "phase": "deferred",
        "status": "pass" if delivered else "fail",
        "symptom": symptom,
        "approval_id": grant.event_id,
        "approved_by": grant.actor,
        "rollback_target": plan.target.as_dict(),
        "statehub_note": note_id,
        "ledger": {"seq": ev.seq, "hash": ev.hash},
    }
    return RollbackOutcome(
        document=doc, exit_code=0 if delivered else 1, phase="deferred", events=[ev], warnings=warnings
    )


def _note(
    store: EventStore,
    statehub: StateHubPort | None,
    event: RecordedEvent,
    decl: Declaration,
    warnings: list[str],
    *,
    title: str,
    body: str,
) -> str | None:
    from railiance_ledger.lifecycle.notes import post_and_record, statehub_from_env

    hub = statehub if statehub is not None else statehub_from_env()
    note = post_and_record(
        store=store,
        statehub=hub,
        event=event,
        title=title,
        body=body,
        required=True,
        required_reason="rollbacks and their decisions are recorded as State Hub notes",
    )
    if note.warning:
        warnings.append(note.warning)
    return note.note_id


def new_workflow_id(prefix: str, workload: str, digest: str | None) -> str:
    """A workflow id for a promotion or rollback: ``<prefix>-<workload>-<12 hex>-<8 hex>``."""
    short = (digest or "sha256:unknown").split(":", 1)[-1][:12]
    return f"{prefix}-{workload}-{short}-{uuid.uuid4().hex[:8]}"


def image_digest(image: str | None) -> str | None:
    """The digest of a pinned image reference, or None."""
    if not image:
        return None
    try:
        return parse_image_ref(image).digest
    except (ValueError, RailianceError):
        return None
