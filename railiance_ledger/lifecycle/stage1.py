"""Stage 1: local validation of one candidate, recorded in the ledger.

``run_stage1`` collects facts through the adapters (git, helm, a local process, HTTP probes, local
check commands), judges each required check, applies recorded waivers, and appends
``stage.started`` then ``stage.completed`` (the stage-result document, redacted). Every check
fails closed: a fact that could not be collected is a ``fail`` with ``failure="technical"``; a gate
that was asked and said no is a ``fail`` with ``failure="policy"``. Stage 1 never authorizes
production: a pass only makes the candidate eligible for Stage 2 review.

When no candidate can be named by an immutable digest (a tag-only ``--image``, or nothing
registered), the stage rules forbid a ``stage.completed`` (it must name a registered digest). The
failing stage-result document is then recorded as a ``note.posted`` event (``topic`` =
``stage1.refused``) so the refused attempt is still audited, and the exit code is 1.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml  # type: ignore[import-untyped]

from railiance_ledger.adapters.git import GitRepo
from railiance_ledger.adapters.health import HttpProbe
from railiance_ledger.adapters.helm import Helm, HelmCommandFailed
from railiance_ledger.adapters.process import LocalProcess, run_command
from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.durations import parse_duration
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import (
    find_secrets,
    is_secret_key,
    looks_like_secret_value,
    redact,
    redact_value,
)
from railiance_ledger.domain.stage_result import (
    Approval,
    Candidate,
    Check,
    CheckStatus,
    Evidence,
    FailureKind,
    LedgerRef,
    StageResult,
    Workload,
    overall_status,
)
from railiance_ledger.errors import AdapterError, ConcurrencyConflict, InvalidInput, RailianceError
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.waivers import active_waivers

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

STAGE = 1

REQUIRED_CHECKS: tuple[str, ...] = (
    "source_revision_identified",
    "artifact_deterministic",
    "candidate_immutable",
    "manifests_valid",
    "secrets_by_reference",
    "local_health",
    "migrations_classified",
    "observability_declared",
)
"""The stable names of Stage 1's required checks, in the order they are reported."""

LOCAL_CHECK_PREFIX = "local_check:"
MIGRATION_CLASSES = ("none", "reversible", "forward-only", "requires-approval")
OUTPUT_TAIL_CHARS = 4096
"""The longest redacted output tail kept as evidence of a local check."""
WORKLOAD_TAIL_CHARS = 1024
"""The longest redacted output tail of the local workload kept when it fails to start."""

_APPEND_ATTEMPTS = 3
_NAME_LIKE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._/]{0,252}$")
_REFERENCE_KEY = re.compile(r"(?i)^existing.*secret|secret.*(name|ref)$|^existingsecretkey$")
"""Values-file keys whose value is the *name* of a secret (a reference), not a secret."""
_ENV_SCRUB = re.compile(r"(?i)^(RAILIANCE_LEDGER_URL|KUBECONFIG|.*_TOKEN|.*_KEY|.*SECRET.*|.*PASSWORD.*)$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Stage1Outcome:
    """What ``run_stage1`` did: the stage result, the JSON document (as stored, redacted, with
    ``ledger`` filled in), the events it appended, and the process exit code (0 pass, 1 fail)."""

    result: StageResult
    document: dict[str, Any]
    events: list[RecordedEvent]
    exit_code: int
    recorded_as: str
    """``stage.completed``, or ``note.posted`` when no registered candidate could be named."""

    @property
    def passed(self) -> bool:
        """True when every check passed or was waived."""
        return self.result.status == "pass"

    def human_lines(self) -> list[str]:
        """The human report: one line per check (verdict, name, reason), then the verdict."""
        doc = self.document
        cand = doc["candidate"]
        lines = [
            (
                f"Stage 1 (local validation) of {doc['workload']['name']} "
                f"candidate {cand.get('image') or cand.get('digest') or '(none)'} at revision {cand.get('revision') or '?'}"
            )
        ]
        for c in doc["checks"]:
            mark = {"pass": "PASS", "fail": "FAIL", "waived": "WAIVED"}[c["status"]]
            extra = f" [{c['failure']}]" if c.get("failure") and c["status"] == "fail" else ""
            extra += f" (waiver {c['waiver']})" if c.get("waiver") else ""
            lines.append(f"  {mark:<6} {c['name']}{extra}: {c.get('reason', '')}")
        ledger = doc.get("ledger") or {}
        lines.append(
            f"Stage 1 {doc['status'].upper()}; recorded as {self.recorded_as} at ledger seq {ledger.get('seq')}"
            " (Stage 1 never authorizes production traffic)"
        )
        return lines


@dataclass
class _Ctx:
    """Facts gathered so far in one run (mutable while the run is assembled)."""

    decl: Declaration
    app_dir: Path
    railiance_dir: Path
    revision: str | None = None
    digest: str | None = None
    image: str | None = None
    registration: RecordedEvent | None = None
    rendered: list[dict[str, Any]] | None = None
    render_error: str | None = None
    values_files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers


def _ev(kind: str, ref: str, detail: str = "") -> Evidence:
    return Evidence(kind=kind, ref=redact(ref), detail=redact(detail))  # type: ignore[arg-type]


def _seconds(value: Any, default: float) -> float:
    """Seconds from a declaration duration: ``"15s"``, an int, a ``timedelta``, or ``None``."""
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float(parse_duration(str(value)))


def _text(value: Any) -> str | None:
    """An enum's value or a string, else ``None``."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return path.name


def _bounded(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 5] + "[...]"


def local_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment local commands run with: ours, minus anything credential-like
    (Stage 1 checks must not need production credentials), plus ``TRACK=local`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _ENV_SCRUB.match(k) and not is_secret_key(k)}
    env["TRACK"] = "local"
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------------------- the checks


def check_source_revision(ctx: _Ctx, *, waiver_note: str = "") -> Check:
    """``source_revision_identified``: the work tree is at a commit and exactly that commit."""
    name = "source_revision_identified"
    source_path = getattr(getattr(ctx.decl, "source", None), "path", None) or ".."
    tree = ctx.decl.resolve(source_path)
    repo = GitRepo(tree)
    try:
        ctx.revision = repo.head()
        changed = repo.changed()
        untracked = repo.untracked()
    except AdapterError as exc:
        return _check(
            name,
            False,
            f"cannot identify the source revision: {exc.reason}",
            failure=FailureKind.TECHNICAL,
            evidence=[_ev("summary", str(source_path), exc.reason)],
        )
    evidence = [_ev("commit", ctx.revision, f"HEAD of {source_path}")]
    if changed or untracked:
        files = (changed + untracked)[:10]
        evidence.append(
            _ev(
                "summary",
                "work-tree",
                f"{len(changed)} modified, {len(untracked)} untracked: " + ", ".join(files),
            )
        )
        return _check(
            name,
            False,
            f"work tree differs from commit {ctx.revision[:12]}: {len(changed)} modified and "
            f"{len(untracked)} untracked file(s); commit them (or waive this gate)",
            evidence=evidence,
        )
    return _check(name, True, f"clean work tree at commit {ctx.revision}", evidence=evidence)


def resolve_candidate(
    ctx: _Ctx, *, store: EventStore, history: list[RecordedEvent], image: str | None, operator: str
) -> tuple[Check, list[RecordedEvent]]:
    """``candidate_immutable``: name the candidate by digest; register a given image if needed.

    Returns the check and any event appended (a new ``candidate.registered``).
    """
    name = "candidate_immutable"
    workload = ctx.decl.workload.name
    appended: list[RecordedEvent] = []
    if image:
        try:
            ref = parse_image_ref(image)
        except DigestFormatError as exc:
            ctx.image = image
            return _check(
                name, False, f"refused: {exc}", evidence=[_ev("summary", "image", "not pinned by digest")]
            ), []
        ctx.digest, ctx.image = ref.digest, ref.pinned
        reg = next(
            (
                ev
                for ev in history
                if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate == ref.digest
            ),
            None,
        )
        if reg is None:
            from railiance_ledger.lifecycle.candidates import register_candidate

            try:
                reg, created = register_candidate(
                    store=store, decl=ctx.decl, image=image, operator=operator, revision=ctx.revision
                )
            except InvalidInput as exc:
                ctx.digest = None
                return _check(name, False, f"cannot register {ref.pinned}: {exc.message}"), []
            if created:
                appended.append(reg)
        ctx.registration = reg
    else:
        regs = [ev for ev in history if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate]
        if not regs:
            return _check(
                name,
                False,
                f"no candidate is registered for {workload} and no --image was given: a Stage 2 candidate must be "
                "named by immutable digest (`railiance candidate add APP_DIR --image REF@sha256:...`)",
            ), []
        ctx.registration = regs[-1]
        ctx.digest = regs[-1].candidate
        ctx.image = str(regs[-1].payload.get("image") or f"{ctx.decl.image.repository}@{ctx.digest}")
        try:
            ref = parse_image_ref(ctx.image)
        except DigestFormatError as exc:
            ctx.digest = None
            return _check(name, False, f"registered candidate is not pinned by digest: {exc}"), []
    assert ctx.registration is not None
    return _check(
        name,
        True,
        f"candidate named by immutable digest {ctx.digest}",
        evidence=[_ev("digest", ctx.image or "", f"registered at ledger seq {ctx.registration.seq}")],
    ), appended


def check_artifact_deterministic(ctx: _Ctx, history: Sequence[RecordedEvent]) -> Check:
    """``artifact_deterministic``: this digest is the only digest ever recorded for this revision."""
    name = "artifact_deterministic"
    if ctx.revision is None:
        return _check(
            name,
            False,
            "no source revision: the artifact cannot be traced to source",
            failure=FailureKind.TECHNICAL,
        )
    if ctx.digest is None or ctx.registration is None:
        return _check(name, False, "no candidate digest to trace to the source revision")
    reg_rev = ctx.registration.payload.get("revision")
    if reg_rev and reg_rev != ctx.revision:
        return _check(
            name,
            False,
            f"candidate {ctx.digest} was registered for revision {reg_rev}, but the work tree is at {ctx.revision}: "
            "validate the revision the artifact was built from",
            evidence=[
                _ev("commit", str(reg_rev), "registered revision"),
                _ev("commit", ctx.revision, "work tree"),
            ],
        )
    others: dict[str, int] = {}
    for ev in history:
        if ev.candidate in (None, ctx.digest):
            continue
        if (
            ev.kind == EventKind.CANDIDATE_REGISTERED
            and ev.payload.get("revision") == ctx.revision
            or (
                ev.kind == EventKind.STAGE_COMPLETED
                and ev.stage == STAGE
                and (ev.payload.get("candidate") or {}).get("revision") == ctx.revision
            )
        ):
            others.setdefault(str(ev.candidate), ev.seq)
    if others:
        listed = ", ".join(f"{d} (seq {s})" for d, s in others.items())
        return _check(
            name,
            False,
            f"revision {ctx.revision[:12]} already produced a different digest: {listed}; "
            "the same source must always yield the same artifact",
            evidence=[
                _ev("digest", d, f"recorded for the same revision at seq {s}") for d, s in others.items()
            ],
        )
    traced = (
        "registration and this result" if reg_rev else "this result (the registration carried no revision)"
    )
    return _check(
        name,
        True,
        f"{ctx.digest} is the only digest recorded for revision {ctx.revision[:12]}",
        evidence=[_ev("commit", ctx.revision, f"bound to {ctx.digest} by {traced}")],
    )


def render_chart(ctx: _Ctx, helm: Helm) -> None:
    """Render the declared chart with the local stage's values (and the candidate's image) into
    ``ctx.rendered``. Raises the helm adapter's errors, or ``_RenderRefused`` for non-objects."""
    decl = ctx.decl
    chart = decl.resolve(decl.chart.path)
    files: list[Path] = []
    base_values = getattr(decl.chart, "values", None)
    if base_values:
        files.append(decl.resolve(base_values))
    local_stage = decl.stages.local
    if local_stage.values:
        files.append(decl.resolve(local_stage.values))
    ctx.values_files = files
    set_values: dict[str, str] = {}
    if ctx.digest and ctx.image:
        set_values = {"image.repository": ctx.image.split("@", 1)[0], "image.digest": ctx.digest}
    text = helm.template(
        chart=chart,
        release=local_stage.release,
        namespace=local_stage.namespace,
        values_files=files,
        set_values=set_values,
        kube_version=str(decl.workload.kubernetes_version) if decl.workload.kubernetes_version else None,
        timeout=120.0,
    )
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise _RenderRefused(f"helm output is not valid YAML: {_bounded(str(exc))}") from exc
    bad = [d for d in docs if not isinstance(d, dict)]
    if bad:
        raise _RenderRefused(f"helm output contains {len(bad)} document(s) that are not Kubernetes objects")
    ctx.rendered = docs


class _RenderRefused(Exception):
    """The chart rendered into something that is not a list of Kubernetes objects."""


def _obj_ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{(meta or {}).get('name', '?')}"


def check_manifests(ctx: _Ctx, helm: Helm) -> Check:
    """``manifests_valid``: ``helm template`` renders and every object validates, offline and strict,
    against the schemas of ``workload.kubernetes_version``."""
    import kubernetes_validate  # type: ignore[import-untyped]
    from kubernetes_validate.utils import VersionNotSupportedError  # type: ignore[import-untyped]

    name = "manifests_valid"
    decl = ctx.decl
    try:
        render_chart(ctx, helm)
    except HelmCommandFailed as exc:
        ctx.render_error = "chart does not render"
        return _check(
            name,
            False,
            f"helm template failed: {exc.reason}",
            evidence=[_ev("summary", str(decl.chart.path), f"helm template exit {exc.exit_status}")],
        )
    except AdapterError as exc:
        ctx.render_error = "helm could not be run"
        return _check(name, False, f"could not render the chart: {exc.reason}", failure=FailureKind.TECHNICAL)
    except _RenderRefused as exc:
        ctx.render_error = str(exc)
        return _check(name, False, str(exc))
    assert ctx.rendered is not None
    if not decl.workload.kubernetes_version:
        return _check(
            name,
            False,
            "workload.kubernetes_version is not declared: the rendered objects cannot be "
            "validated against a Kubernetes schema",
            failure=FailureKind.TECHNICAL,
        )
    version = str(decl.workload.kubernetes_version)
    problems: list[str] = []
    evidence: list[Evidence] = []
    technical = False
    for obj in ctx.rendered:
        ref = _obj_ref(obj)
        if not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"{ref}: missing apiVersion or kind")
            evidence.append(_ev("k8s-object", ref, "missing apiVersion or kind"))
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(root)"
            msg = _bounded(redact(f"{where}: {exc.message}"), 300)
            problems.append(f"{ref}: {msg}")
            evidence.append(_ev("k8s-object", ref, f"invalid: {msg}"))
        except kubernetes_validate.SchemaNotFoundError:
            msg = f"unknown kind {obj.get('kind')} in {obj.get('apiVersion')} for Kubernetes {version}"
            problems.append(f"{ref}: {msg}")
            evidence.append(_ev("k8s-object", ref, msg))
        except VersionNotSupportedError:
            technical = True
            problems.append(f"no schemas for Kubernetes {version} available offline")
            break
        except Exception as exc:  # noqa: BLE001 - a validator crash is a technical failure, fail closed
            technical = True
            problems.append(
                f"{ref}: could not be validated: {_bounded(type(exc).__name__ + ': ' + str(exc))}"
            )
        else:
            evidence.append(
                _ev("k8s-object", ref, f"{obj.get('apiVersion')} valid against Kubernetes {version}")
            )
    if not ctx.rendered:
        return _check(name, False, "the chart rendered no objects", evidence=evidence)
    if problems:
        return _check(
            name,
            False,
            f"{len(problems)} invalid object(s): " + "; ".join(problems[:5]),
            failure=FailureKind.TECHNICAL if technical else FailureKind.POLICY,
            evidence=evidence,
        )
    return _check(
        name,
        True,
        f"{len(ctx.rendered)} object(s) rendered by helm template "
        f"({decl.stages.local.release} in {decl.stages.local.namespace}) and valid against Kubernetes {version}",
        evidence=evidence,
    )


# ----- secrets


@dataclass(frozen=True)
class SecretFinding:
    """A plaintext secret found: where (object or file), the field path, and what kind it looks like.

    Never carries the value itself.
    """

    where: str
    field: str
    kind: str
    source: str  # "manifest" | "values"


def _secret_kind(key: str, value: str) -> str | None:
    """The kind of secret ``value`` (stored under ``key``) looks like, or ``None``."""
    found = find_secrets(value)
    if found:
        return found[0].kind
    if looks_like_secret_value(value):
        return "secret-like-value"
    if is_secret_key(key) and value.strip():
        return "secret-named-key"
    return None


def _walk(node: Any, path: str) -> Iterable[tuple[str, str, Any]]:
    """Yield ``(path, key, value)`` for every scalar leaf."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(v, (dict, list)):
                yield from _walk(v, p)
            else:
                yield p, str(k), v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            p = f"{path}[{i}]"
            if isinstance(v, (dict, list)):
                yield from _walk(v, p)
            else:
                yield p, path.rsplit(".", 1)[-1], v


_REF_SUBTREES = {"secretKeyRef", "secretRef", "configMapKeyRef", "configMapRef"}
_ENV_ITEM = re.compile(r"\.env\[\d+\]$")


def scan_manifest(obj: Mapping[str, Any]) -> tuple[list[SecretFinding], list[str]]:
    """Plaintext secrets in one rendered object, and the secret names it references.

    Secret ``data``/``stringData`` literals always count; ConfigMap data and container env
    ``value`` literals count when the key or value looks like a secret; any other string that
    contains recognisable secret material (keys, tokens, credentialed URLs) counts too.
    ``secretKeyRef``, ``envFrom.secretRef``, secret volumes and TLS ``secretName`` are references.
    """
    ref = _obj_ref(obj)
    kind = obj.get("kind")
    findings: list[SecretFinding] = []
    references: list[str] = []
    if kind == "Secret":
        for fld in ("data", "stringData"):
            for key, val in (obj.get(fld) or {}).items():
                if val not in (None, ""):
                    sk = _secret_kind(str(key), str(val)) or "secret-data"
                    findings.append(
                        SecretFinding(ref, f"{fld}.{key}", f"literal Secret data ({sk})", "manifest")
                    )
        body = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    else:
        body = dict(obj)
    if kind == "ConfigMap":
        for fld in ("data", "binaryData"):
            for key, val in (body.get(fld) or {}).items():
                cm_kind = _secret_kind(str(key), str(val)) if val is not None else None
                if cm_kind:
                    findings.append(SecretFinding(ref, f"{fld}.{key}", cm_kind, "manifest"))
        body = {k: v for k, v in body.items() if k not in ("data", "binaryData")}

    def visit(node: Any, path: str, parent_key: str) -> None:
        if isinstance(node, dict):
            if parent_key in _REF_SUBTREES:
                if parent_key.startswith("secret") and "name" in node:
                    references.append(f"{node['name']} ({parent_key})")
                return
            if parent_key == "secret" and "secretName" in node:  # a secret volume
                references.append(f"{node['secretName']} (volume)")
                return
            is_env_var = bool(_ENV_ITEM.search(path)) and "name" in node
            for k, v in node.items():
                child = f"{path}.{k}" if path else str(k)
                if is_env_var and k == "value" and isinstance(v, str) and v:
                    sk = _secret_kind(str(node["name"]), v)
                    if sk:
                        findings.append(SecretFinding(ref, f"{child} ({node['name']})", sk, "manifest"))
                    continue
                if k == "secretName" and isinstance(v, str) and not find_secrets(v):
                    references.append(f"{v} (secretName)")
                    continue
                visit(v, child, str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]", parent_key)
        elif isinstance(node, str):
            found = find_secrets(node)
            if found:
                findings.append(SecretFinding(ref, path, found[0].kind, "manifest"))

    visit(body, "", "")
    return findings, references


def scan_values(data: Any, where: str) -> list[SecretFinding]:
    """Plaintext secrets in a Helm values file: secret-named keys with literal values, and any
    value that looks like a secret. Keys naming a secret by reference (``existingSecret``,
    ``...SecretName``) are fine when their value looks like a name."""
    out: list[SecretFinding] = []
    for path, key, val in _walk(data, ""):
        if val is None or isinstance(val, bool) or val == "":
            continue
        text = str(val)
        if (
            _REFERENCE_KEY.search(key)
            and _NAME_LIKE.match(text)
            and not looks_like_secret_value(text)
            and not find_secrets(text)
        ):
            continue
        sk = _secret_kind(key, text)
        if sk:
            out.append(SecretFinding(where, path, sk, "values"))
    return out


def check_secrets(ctx: _Ctx) -> Check:
    """``secrets_by_reference``: no plaintext secret in rendered manifests or values files.

    Evidence names the object (or file), the field path and the kind of secret, never the value.
    """
    name = "secrets_by_reference"
    findings: list[SecretFinding] = []
    references: list[str] = []
    problems: list[str] = []
    for vf in ctx.values_files:
        where = _rel(vf, ctx.app_dir)
        try:
            data = yaml.safe_load(vf.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"cannot read values file {where}: {type(exc).__name__}")
            continue
        findings += scan_values(data, where)
    if ctx.rendered is None:
        problems.append(
            f"manifests could not be rendered ({ctx.render_error or 'unknown'}), "
            "so they cannot be shown free of plaintext secrets"
        )
    else:
        for obj in ctx.rendered:
            f, r = scan_manifest(obj)
            findings += f
            references += [f"{_obj_ref(obj)} -> {x}" for x in r]
    evidence = [
        _ev("k8s-object" if f.source == "manifest" else "summary", f.where, f"{f.field}: plaintext {f.kind}")
        for f in findings
    ]
    if findings:
        listed = "; ".join(f"{f.where} {f.field} ({f.kind})" for f in findings[:5])
        return _check(
            name,
            False,
            f"{len(findings)} plaintext secret(s): {listed}; reference secrets by name "
            "(secretKeyRef, envFrom.secretRef, volumes) instead",
            evidence=evidence,
        )
    if problems:
        return _check(name, False, "; ".join(problems), failure=FailureKind.TECHNICAL, evidence=evidence)
    evidence.append(_ev("summary", "secret-references", ", ".join(sorted(set(references))) or "none"))
    n = len(ctx.rendered or [])
    return _check(
        name,
        True,
        f"no plaintext secrets in {n} rendered object(s) and {len(ctx.values_files)} values file(s); "
        f"{len(set(references))} secret reference(s) by name",
        evidence=evidence,
    )


# ----- local runtime


def check_local_health(ctx: _Ctx, http: httpx.Client, env: Mapping[str, str]) -> Check:
    """``local_health``: start the declared command, probe every declared health endpoint with
    timeouts and retries, and stop the process group afterwards whatever happens."""
    name = "local_health"
    decl = ctx.decl
    local = getattr(decl, "local", None)
    command = list(getattr(local, "command", None) or [])
    health = list(getattr(decl, "health", None) or [])
    if not command:
        return _check(name, False, "no [local] command declared: the workload cannot be started locally")
    if not health:
        return _check(name, False, "no [[health]] endpoint declared: nothing to probe")
    ready_timeout = _seconds(getattr(local, "ready_timeout", None), 20.0)
    probe = HttpProbe(http)
    evidence: list[Evidence] = []
    try:
        # PORT mirrors the substituted --port for servers that read it from the environment.
        with LocalProcess(argv=command, cwd=ctx.railiance_dir, env={**env, "PORT": "{port}"}) as proc:
            ready = proc.wait_for_port(timeout=ready_timeout)
            exited = proc.poll()
            if exited is not None:
                tail = proc.output_tail(limit=WORKLOAD_TAIL_CHARS)
                return _check(
                    name,
                    False,
                    f"the local command exited with code {exited} before it answered",
                    evidence=[
                        _ev("summary", "local-command", f"exit {exited}; output tail (redacted): {tail}")
                    ],
                )
            evidence.append(
                _ev(
                    "summary",
                    "local-command",
                    f"started on 127.0.0.1:{proc.port}; "
                    + ("listening" if ready else f"not listening after {ready_timeout:g}s"),
                )
            )
            results = []
            for h in health:
                path = str(getattr(h, "path", "/") or "/")
                result = probe.probe(
                    url=f"{proc.base_url}{path}",
                    expect_status=int(getattr(h, "expect_status", 200) or 200),
                    timeout=_seconds(getattr(h, "timeout", None), 2.0),
                    retries=int(getattr(h, "retries", 3) if getattr(h, "retries", None) is not None else 3),
                    backoff=0.25,
                )
                results.append((h, path, result))
                evidence.append(
                    _ev(
                        "http-status",
                        f"GET {path}",
                        f"{result.status_code if result.answered else 'no answer'}: {result.reason} "
                        f"after {result.attempts} attempt(s), {result.elapsed_ms} ms",
                    )
                )
    except AdapterError as exc:
        return _check(
            name,
            False,
            f"could not start the workload: {exc.reason}",
            failure=FailureKind.TECHNICAL,
            evidence=evidence,
        )
    failed = [(h, p, r) for h, p, r in results if not r.ok]
    if failed:
        technical = any(not r.answered for _, _, r in failed)
        listed = "; ".join(f"{getattr(h, 'name', p)} GET {p}: {r.reason}" for h, p, r in failed)
        return _check(
            name,
            False,
            f"health endpoint(s) failed: {listed}",
            failure=FailureKind.TECHNICAL if technical else FailureKind.POLICY,
            evidence=evidence,
        )
    listed = ", ".join(f"{getattr(h, 'name', p)} {r.status_code}" for h, p, r in results)
    return _check(
        name, True, f"declared health endpoint(s) answered: {listed}; process stopped", evidence=evidence
    )


def check_local_commands(ctx: _Ctx, skip: set[str], env: Mapping[str, str]) -> list[Check]:
    """``local_check:<name>``: run each declared ``[[local_checks]]`` command; exit code and duration
    are the evidence, with a bounded, redacted output tail. A skipped check fails (unless waived)."""
    out: list[Check] = []
    for lc in getattr(ctx.decl, "local_checks", None) or []:
        name = f"{LOCAL_CHECK_PREFIX}{lc.name}"
        kind = _text(getattr(lc, "kind", None)) or "check"
        if lc.name in skip:
            out.append(
                _check(
                    name,
                    False,
                    f"{kind} check skipped (--skip-check) without a recorded waiver",
                    evidence=[_ev("summary", name, "skipped")],
                )
            )
            continue
        timeout = _seconds(getattr(lc, "timeout", None), 600.0)
        try:
            res = run_command(
                argv=list(lc.command),
                cwd=ctx.railiance_dir,
                timeout=timeout,
                env=env,
                tail_bytes=OUTPUT_TAIL_CHARS,
            )
        except AdapterError as exc:
            out.append(
                _check(
                    name,
                    False,
                    f"could not run the {kind} check: {exc.reason}",
                    failure=FailureKind.TECHNICAL,
                )
            )
            continue
        evidence = [
            _ev(
                "summary",
                name,
                f"exit {res.exit_code if not res.timed_out else 'none (killed)'} in {res.duration_s:.2f}s",
            )
        ]
        if res.output_tail:
            evidence.append(_ev("summary", f"{name} output tail (redacted)", res.output_tail))
        if res.timed_out:
            out.append(
                _check(
                    name,
                    False,
                    f"{kind} check timed out after {timeout:g}s and was killed",
                    failure=FailureKind.TECHNICAL,
                    evidence=evidence,
                )
            )
        elif res.exit_code != 0:
            out.append(
                _check(
                    name,
                    False,
                    f"{kind} check exited {res.exit_code} after {res.duration_s:.2f}s",
                    evidence=evidence,
                )
            )
        else:
            out.append(
                _check(name, True, f"{kind} check exited 0 in {res.duration_s:.2f}s", evidence=evidence)
            )
    return out


# ----- declaration-only checks


def check_migrations(ctx: _Ctx) -> Check:
    """``migrations_classified``: ``[migrations] classification`` is none | reversible |
    forward-only | requires-approval; absent means unclassified and fails."""
    name = "migrations_classified"
    migrations = getattr(ctx.decl, "migrations", None)
    cls = _text(getattr(migrations, "classification", None))
    if cls is None:
        return _check(
            name,
            False,
            "database migrations are unclassified: declare [migrations] classification = "
            "none | reversible | forward-only | requires-approval",
        )
    if cls not in MIGRATION_CLASSES:
        return _check(
            name,
            False,
            f"unknown migration classification {cls!r}; use one of " + ", ".join(MIGRATION_CLASSES),
        )
    note = " (Stage 3 needs a human approval)" if cls == "requires-approval" else ""
    return _check(
        name,
        True,
        f"migrations classified as {cls}{note}",
        evidence=[_ev("summary", "migrations.classification", cls)],
    )


def check_observability(ctx: _Ctx) -> Check:
    """``observability_declared``: health endpoints, a metrics endpoint and a log source are declared,
    so the workload can state how it will be observed in Stage 2."""
    name = "observability_declared"
    decl = ctx.decl
    obs = getattr(decl, "observability", None)
    health = [h for h in (getattr(decl, "health", None) or []) if getattr(h, "path", None)]
    metrics = getattr(obs, "metrics_path", None) if obs is not None else None
    logs = _text(getattr(obs, "log_source", None)) if obs is not None else None
    missing = []
    if not health:
        missing.append("[[health]] endpoint")
    if not metrics:
        missing.append("observability.metrics_path")
    if not logs:
        missing.append("observability.log_source")
    if missing:
        return _check(
            name,
            False,
            "the workload cannot state how it will be observed in Stage 2: missing " + ", ".join(missing),
        )
    return _check(
        name,
        True,
        f"health {', '.join(str(h.path) for h in health)}; metrics {metrics}; logs from {logs}",
        evidence=[
            _ev(
                "summary",
                "observability",
                f"metrics {metrics}, logs {logs}, {len(health)} health endpoint(s)",
            )
        ],
    )


# ------------------------------------------------------------------------------------------- waivers


def apply_waivers(checks: list[Check], waivers: Mapping[str, RecordedEvent]) -> list[Check]:
    """Turn each failed check covered by a waiver into ``waived`` with the waiver's event id."""
    out = []
    for c in checks:
        w = waivers.get(c.name)
        if c.status == CheckStatus.FAIL and w is not None:
            reason = f"waived by {w.actor}: {w.payload.get('reason', '')} (was: {c.reason})"
            c = c.model_copy(
                update={"status": CheckStatus.WAIVED, "reason": redact(reason), "waiver": w.event_id}
            )
        out.append(c)
    return out


# ------------------------------------------------------------------------------------------ the service


def run_stage1(
    *,
    store: EventStore,
    app_dir: Path,
    operator: str,
    image: str | None = None,
    helm: Helm,
    http: httpx.Client,
    skip_checks: Sequence[str] = (),
    now: Callable[[], datetime] = _utcnow,
    env: Mapping[str, str] | None = None,
) -> Stage1Outcome:
    """Run Stage 1 (local validation) for the workload in ``app_dir`` and record its result.

    Loads ``railiance/app.toml``; names the candidate (``image`` as ``REF@sha256:...``,
    registering it when new, else the newest registered candidate); runs every required check and
    each declared local check; applies recorded waivers; appends ``stage.started`` and
    ``stage.completed`` (the redacted stage-result document). Returns the outcome with exit code 0
    on pass, 1 on fail. Raises ``DeclarationError``/``InvalidInput`` (exit 2) for an invalid
    declaration or an unknown ``--skip-check`` name before anything is recorded, and ledger
    errors (exit 3) when the ledger refuses.
    """
    try:
        from railiance_ledger.declaration import load_declaration
    except ImportError:  # the package may not re-export it
        from railiance_ledger.declaration.loader import load_declaration

    app_dir = Path(app_dir)
    decl = load_declaration(app_dir)
    declared = [lc.name for lc in (getattr(decl, "local_checks", None) or [])]
    unknown = sorted(set(skip_checks) - set(declared))
    if unknown:
        raise InvalidInput(
            f"--skip-check names no declared local check: {', '.join(unknown)}",
            hint=f"declared local checks: {', '.join(declared) or 'none'}",
        )
    started_at = now()
    workload = decl.workload.name
    ctx = _Ctx(decl=decl, app_dir=app_dir, railiance_dir=decl.railiance_dir)
    run_env = dict(env) if env is not None else local_env()

    history = store.read_stream(workload)
    source_check = check_source_revision(ctx)
    candidate_check, appended = resolve_candidate(
        ctx, store=store, history=history, image=image, operator=operator
    )
    events: list[RecordedEvent] = list(appended)
    if appended:
        history = store.read_stream(workload)

    if ctx.digest is not None:
        started = store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.STAGE_STARTED,
                    actor=operator,
                    candidate=ctx.digest,
                    stage=STAGE,
                    payload={
                        "stage": STAGE,
                        "target_environment": "local",
                        "revision": ctx.revision,
                        "image": ctx.image,
                        "started_at": format_timestamp(started_at),
                    },
                )
            ]
        )
        events += started

    checks_fixed: dict[str, Check] = {
        "source_revision_identified": source_check,
        "candidate_immutable": candidate_check,
    }
    checks_fixed["manifests_valid"] = _guarded("manifests_valid", lambda: check_manifests(ctx, helm))
    checks_fixed["secrets_by_reference"] = _guarded("secrets_by_reference", lambda: check_secrets(ctx))
    checks_fixed["local_health"] = _guarded("local_health", lambda: check_local_health(ctx, http, run_env))
    local_checks = _guarded_list(lambda: check_local_commands(ctx, set(skip_checks), run_env))
    checks_fixed["migrations_classified"] = _guarded("migrations_classified", lambda: check_migrations(ctx))
    checks_fixed["observability_declared"] = _guarded(
        "observability_declared", lambda: check_observability(ctx)
    )

    last_conflict: ConcurrencyConflict | None = None
    for _attempt in range(_APPEND_ATTEMPTS):
        # Ledger-derived checks are judged on the history we append after, so a concurrent
        # writer (another digest for this revision, a new waiver) is never missed.
        history = store.read_stream(workload)
        checks = _assemble(ctx, checks_fixed, local_checks, history)
        result = _result(ctx, checks, started_at, now())
        doc = redact_value(result.to_document())
        if ctx.digest is None:
            event = NewEvent(
                stream=workload,
                kind=EventKind.NOTE_POSTED,
                actor=operator,
                payload={
                    "topic": "stage1.refused",
                    "note": "Stage 1 refused: no candidate named by an immutable, registered digest",
                    "stage_result": doc,
                },
            )
        else:
            event = NewEvent(
                stream=workload,
                kind=EventKind.STAGE_COMPLETED,
                actor=operator,
                candidate=ctx.digest,
                stage=STAGE,
                payload=doc,
            )
        expected = history[-1].version if history else 0
        try:
            recorded = store.append([event], expected_version=expected)[0]
        except ConcurrencyConflict as exc:
            last_conflict = exc
            continue
        events.append(recorded)
        doc = {**doc, "ledger": {"seq": recorded.seq, "hash": recorded.hash}}
        final = StageResult.model_validate({**doc, "ledger": LedgerRef(seq=recorded.seq, hash=recorded.hash)})
        return Stage1Outcome(
            result=final,
            document=doc,
            events=events,
            exit_code=0 if final.status == "pass" else 1,
            recorded_as=str(event.kind),
        )
    assert last_conflict is not None
    raise last_conflict


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; an unexpected error fails it (technical) instead of aborting the stage."""
    try:
        return fn()
    except RailianceError as exc:
        return _check(name, False, f"could not be evaluated: {exc.message}", failure=FailureKind.TECHNICAL)
    except Exception as exc:  # noqa: BLE001 - fail closed, never crash between started and completed
        return _check(
            name,
            False,
            f"could not be evaluated: {type(exc).__name__}: {_bounded(str(exc))}",
            failure=FailureKind.TECHNICAL,
        )


def _guarded_list(fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - fail closed
        return [
            _check(
                f"{LOCAL_CHECK_PREFIX}*",
                False,
                f"local checks could not be run: {type(exc).__name__}: {_bounded(str(exc))}",
                failure=FailureKind.TECHNICAL,
            )
        ]


def _assemble(
    ctx: _Ctx, fixed: Mapping[str, Check], local_checks: list[Check], history: Sequence[RecordedEvent]
) -> list[Check]:
    deterministic = _guarded("artifact_deterministic", lambda: check_artifact_deterministic(ctx, history))
    ordered = [
        fixed["source_revision_identified"],
        deterministic,
        fixed["candidate_immutable"],
        fixed["manifests_valid"],
        fixed["secrets_by_reference"],
        fixed["local_health"],
        *local_checks,
        fixed["migrations_classified"],
        fixed["observability_declared"],
    ]
    if ctx.digest is None:
        return ordered
    return apply_waivers(ordered, active_waivers(history, digest=ctx.digest, stage=STAGE))


def _result(ctx: _Ctx, checks: list[Check], started_at: datetime, finished_at: datetime) -> StageResult:
    decl = ctx.decl
    status = overall_status(checks)
    passed = sum(1 for c in checks if c.status == CheckStatus.PASS)
    waived = sum(1 for c in checks if c.status == CheckStatus.WAIVED)
    evidence: list[Evidence] = []
    if ctx.revision:
        evidence.append(_ev("commit", ctx.revision, "source revision"))
    if ctx.digest:
        evidence.append(_ev("digest", ctx.image or ctx.digest, "candidate"))
    evidence.append(_ev("timestamp", format_timestamp(started_at), "stage 1 started"))
    evidence.append(
        _ev(
            "summary",
            f"stage1:{status}",
            f"{passed} passed, {waived} waived, {len(checks) - passed - waived} failed of {len(checks)}; "
            "Stage 1 does not authorize production traffic",
        )
    )
    return StageResult(
        workload=Workload(name=decl.workload.name, repo=decl.workload.repo),
        stage=1,
        candidate=Candidate(digest=ctx.digest or "", image=redact(ctx.image or ""), revision=ctx.revision),
        target_environment="local",
        checks=checks,
        status=status,
        evidence=evidence,
        rollback_target=None,
        approval=Approval(required=False, decision="not required"),
        ledger=None,
        started_at=format_timestamp(started_at),
        finished_at=format_timestamp(finished_at),
    )


def default_helm() -> Helm:
    """The helm on ``PATH``, else the one ``scripts/bootstrap`` unpacked next to this Python."""
    found = shutil.which("helm")
    if found:
        return Helm(found)
    local = Path(sys.executable).parent / "helm"
    return Helm(str(local) if local.exists() else "helm")


def run_cli(
    *,
    store: EventStore,
    app_dir: Path,
    operator: str,
    image: str | None = None,
    skip_checks: Sequence[str] = (),
) -> Stage1Outcome:
    """``railiance run``: ``run_stage1`` with the real helm and a fresh HTTP client (no proxies)."""
    with httpx.Client(trust_env=False) as http:
        return run_stage1(
            store=store,
            app_dir=app_dir,
            operator=operator,
            image=image,
            helm=default_helm(),
            http=http,
            skip_checks=skip_checks,
        )
