"""Pydantic models of ``railiance/app.toml`` (schema ``railiance.app/v1``).

Every table is a frozen model that forbids unknown keys, so a typo is an error and not a silently
ignored setting. Types are strict (TOML already types its values): ``"10"`` is not an integer and
``1`` is not ``true``. Durations are written as text (``"90s"``, ``"15m"``, ``"1h30m"``) and stored
as whole seconds after validation, so ``decl.canary.sample_interval == 30``.

Cross-field rules (canary form, rollback strategy, criticality, uniqueness) raise one pydantic error
of type ``declaration_rules`` whose context lists every violation with its path relative to the
model; ``loader.py`` expands it into one ``DeclarationIssue`` per violation.

Paths in the declaration (``chart.path``, ``stages.*.values``, ``source.path``, commands) are
relative to the ``railiance/`` directory; ``Declaration.resolve`` turns them into real paths once
the declaration has been loaded from a directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from railiance_ledger.declaration.criticality import Category, Criticality, category_criticality
from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.durations import DurationFormatError, format_duration, parse_duration
from railiance_ledger.domain.text import shown
from railiance_ledger.errors import DeclarationIssue

__all__ = [
    "DURATION_HINT",
    "RULES_ERROR_TYPE",
    "SCHEMA_ID",
    "Acceptance",
    "Approval",
    "Backup",
    "Canary",
    "CanaryThresholds",
    "Chart",
    "Declaration",
    "Dependency",
    "Health",
    "Image",
    "Integrity",
    "Local",
    "LocalCheck",
    "Migrations",
    "Observability",
    "Promotion",
    "Readiness",
    "Rollback",
    "Routing",
    "Secret",
    "Smoke",
    "Source",
    "Stage",
    "Stages",
    "Workload",
]

SCHEMA_ID = "railiance.app/v1"
DURATION_HINT = "use forms like 90s, 15m, 1h30m"
RULES_ERROR_TYPE = "declaration_rules"

T = TypeVar("T")

# --------------------------------------------------------------------------- field types


def _custom(kind: str, message: str, hint: str) -> PydanticCustomError:
    """A pydantic error whose context carries our hint (the loader shows it)."""
    return PydanticCustomError(kind, "{reason}", {"reason": message, "hint": hint})


def _to_tuple(value: Any) -> Any:
    """TOML arrays arrive as lists; store them as tuples so frozen models are really immutable."""
    return tuple(value) if isinstance(value, list) else value


Seq = Annotated[tuple[T, ...], BeforeValidator(_to_tuple)]
"""An array of ``T`` (TOML array or array of tables), stored as a tuple."""


def _duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _custom("duration_type", "expected a duration written as text", DURATION_HINT)
    try:
        return parse_duration(value)
    except DurationFormatError as exc:
        raise _custom("duration", str(exc), DURATION_HINT) from None


Duration = Annotated[int, BeforeValidator(_duration)]
"""A duration: text like ``"90s"``, ``"15m"``, ``"1h30m"`` (or whole seconds), stored as seconds."""


def _non_empty(value: str) -> str:
    if not value.strip():
        raise _custom("empty", "must not be empty", "write a value or remove the key")
    return value


Text = Annotated[str, AfterValidator(_non_empty)]
"""A non-empty string."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _dns_label(limit: int) -> Any:
    def check(value: str) -> str:
        if len(value) > limit or not _DNS_LABEL.match(value):
            raise _custom(
                "dns_label",
                f"{shown(value)} is not a DNS label of at most {limit} characters",
                "use lowercase letters, digits and '-', starting and ending with a letter or digit",
            )
        return value

    return AfterValidator(check)


Name = Annotated[str, _dns_label(63)]
"""A DNS label (Kubernetes object name, namespace, workload name): at most 63 characters."""

ReleaseName = Annotated[str, _dns_label(53)]
"""A Helm release name: a DNS label of at most 53 characters."""


def _http_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise _custom("http_path", f"{shown(value)} is not an HTTP path", "start with '/', e.g. /healthz")
    return value


HttpPath = Annotated[str, AfterValidator(_http_path)]
"""An HTTP path such as ``/healthz``."""

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise _custom(
            "hostname",
            f"{shown(value)} is not a host name",
            "use a lowercase DNS name such as app.example.org",
        )
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]


def _object_name(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise _custom(
            "object_name",
            f"{shown(value)} is not a Kubernetes object name",
            "use lowercase letters, digits, '-' and '.', at most 253 characters",
        )
    return value


ObjectName = Annotated[str, AfterValidator(_object_name)]
"""A Kubernetes object name (DNS subdomain), e.g. a Secret name."""


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise _custom(
            "http_url", "is not an http(s) URL", "write a URL like http://service.namespace.svc:8080/health"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _kube_version(value: str) -> str:
    if not re.match(r"^1\.\d{1,3}(\.\d{1,3})?$", value):
        raise _custom(
            "kubernetes_version", f"{shown(value)} is not a Kubernetes version", 'write it like "1.30"'
        )
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise _custom(
            "regex", f"is not a valid regular expression: {exc}", "check escaping: in TOML write \\\\d"
        ) from None
    return value


def _header_name(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", value):
        raise _custom(
            "header_name", f"{shown(value)} is not an HTTP header name", 'write it like "X-Railiance-Canary"'
        )
    return value


def _label_name(value: str) -> str:
    if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", value):
        raise _custom(
            "label_name", f"{shown(value)} is not a metric label name", "use letters, digits and '_'"
        )
    return value


Status = Annotated[int, Field(ge=100, le=599)]
"""An HTTP status code."""
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A fraction between 0 and 1 (0.01 = 1%)."""
Port = Annotated[int, Field(ge=1, le=65535)]
Command = Annotated[Seq[Text], Field(min_length=1)]
"""A command as an argument list (never a shell string), run from the ``railiance/`` directory."""


def _rules(problems: list[tuple[str, str, str]]) -> None:
    """Raise one ``declaration_rules`` error listing every (relative path, message, hint)."""
    if problems:
        summary = "; ".join(f"{path}: {message}" for path, message, _ in problems)
        raise PydanticCustomError(
            RULES_ERROR_TYPE, "{summary}", {"summary": summary, "issues": tuple(problems)}
        )


class _Table(BaseModel):
    """Base of every table: frozen, strict, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


# --------------------------------------------------------------------------- tables


class Workload(_Table):
    """``[workload]``: identity and category of the workload."""

    name: Name
    """Stable workload name: the ledger stream and the candidate partition prefix."""
    repo: Text
    """Owning repository, e.g. ``railiance-apps/hello-web``."""
    category: Annotated[Category, Field(strict=False)]
    """What the workload is; decides its criticality."""
    critical: bool | None = None
    """``true`` raises the criticality to production-critical; it can never lower it."""
    kubernetes_version: Annotated[str, AfterValidator(_kube_version)] | None = None
    """Kubernetes version Stage 1 validates rendered manifests against (e.g. ``"1.30"``)."""

    @model_validator(mode="after")
    def _critical_never_lowers(self) -> Workload:
        if self.critical is False and category_criticality(self.category).requires_approval:
            _rules(
                [
                    (
                        "critical",
                        (
                            f"critical = false on the production-critical category {self.category.value!r}: "
                            "critical may raise criticality, never lower it"
                        ),
                        "remove critical = false; the category decides the minimum criticality",
                    )
                ]
            )
        return self


class Source(_Table):
    """``[source]``: how a candidate is traced back to source."""

    revision_policy: Literal["git-commit", "image-label"]
    """``git-commit``: the work tree's commit; ``image-label``: the image's revision label."""
    path: Text = ".."
    """Repository work tree, relative to ``railiance/``."""


class Image(_Table):
    """``[image]``: the artifact; candidates are always named by immutable digest."""

    repository: Text
    """Image repository without tag or digest, e.g. ``registry.local/railiance/hello-web``."""
    tag_pattern: Annotated[str, AfterValidator(_regex)] | None = None
    """Regular expression of the tags the new-digest sensor watches (None: every tag)."""
    digest_policy: Literal["digest-required"] = "digest-required"
    """Candidates are named by ``@sha256:`` digest; a tag alone is never a candidate."""
    platform: Annotated[str, Field(pattern=r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")] | None = None
    """The platform the workload runs on (``linux/amd64``, ``linux/arm64/v8``): Stage 1 checks a
    multi-platform candidate (an image index) has it, and a single-platform one is it."""

    @model_validator(mode="after")
    def _repository_has_no_tag(self) -> Image:
        last = self.repository.rsplit("/", 1)[-1]
        if "@" in self.repository or ":" in last:
            _rules(
                [
                    (
                        "repository",
                        "must not carry a tag or digest",
                        "write the repository only; candidates are registered by digest",
                    )
                ]
            )
        return self


class Chart(_Table):
    """``[chart]``: the Helm chart, relative to ``railiance/``."""

    path: Text
    values: Text | None = None
    """Base values file applied to every stage before the stage's own values."""


class Stage(_Table):
    """``[stages.<stage>]``: where a stage deploys."""

    namespace: Name
    release: ReleaseName
    values: Text | None = None
    """Stage values file, relative to ``railiance/``, layered over ``chart.values``."""


class Stages(_Table):
    """``[stages]``: the three lifecycle targets."""

    local: Stage
    canary: Stage
    production: Stage


class Local(_Table):
    """``[local]``: how Stage 1 starts the workload on this machine."""

    command: Command
    """Argument list; ``{port}`` is replaced by a free loopback port. Run from ``railiance/``."""
    ready_timeout: Duration = 30
    """How long Stage 1 waits for the health checks to pass (seconds)."""

    @model_validator(mode="after")
    def _has_port_placeholder(self) -> Local:
        if not any("{port}" in arg for arg in self.command):
            _rules(
                [
                    (
                        "command",
                        "no argument contains the {port} placeholder",
                        "pass {port} so Stage 1 can start the workload on a free port and probe it there",
                    )
                ]
            )
        return self

    def argv(self, port: int) -> list[str]:
        """The command with ``{port}`` replaced by ``port``."""
        return [arg.replace("{port}", str(port)) for arg in self.command]


class Health(_Table):
    """``[[health]]``: an HTTP health check."""

    name: Text
    path: HttpPath
    expect_status: Status = 200
    timeout: Duration = 5
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    key: bool = False
    """The key health endpoint recorded as Stage 2 evidence (at most one; default: the first)."""


class Observability(_Table):
    """``[observability]``: how the canary is watched in Stage 2."""

    metrics_path: HttpPath | None = None
    """Where the workload exposes Prometheus metrics (None: no metrics endpoint)."""
    prometheus_selector: Text
    """Label selector of the workload's series, e.g. ``job="hello-web"``."""
    log_source: Literal["kubernetes-pod-logs", "loki", "file"]
    log_query: Text | None = None
    """Optional log query (LogQL for loki, a file path for file) used to read canary logs."""
    track_label: Annotated[str, AfterValidator(_label_name)] = "track"
    """Label telling stable from canary in metrics and on pods."""


class Routing(_Table):
    """``[routing]``: the ingress or service target of production traffic."""

    host: Hostname | None = None
    """Ingress host; required by the weighted, header and path canary forms."""
    ingress_class: Text | None = None
    tls_secret: ObjectName | None = None
    """Name of the TLS Secret, referenced by name only."""
    service: Name
    port: Port


CanaryForm = Literal["weighted", "header", "path", "shadow", "isolated-namespace"]


class CanaryThresholds(_Table):
    """``[canary.thresholds]``: regressions beyond these fail canary acceptance."""

    max_error_rate: Fraction
    """Absolute ceiling, fraction of requests (0.01 = 1%)."""
    max_p95_latency_ms: Annotated[float, Field(gt=0)]
    max_saturation: Fraction | None = None
    max_error_rate_increase: Fraction | None = None
    """Allowed increase over stable, as a fraction of requests."""
    max_p95_latency_increase_ms: Annotated[float, Field(ge=0)] | None = None
    """Allowed p95 latency increase over stable, in milliseconds."""
    max_restarts: Annotated[int, Field(ge=0)] = 0
    min_samples: Annotated[int, Field(ge=1)] = 5
    """Fewer data points than this fail closed."""


class Canary(_Table):
    """``[canary]``: the Stage 2 canary form, sampling and observation window."""

    form: CanaryForm
    provider: Literal["ingress-nginx", "gateway-api"] | None = None
    """Traffic-splitting provider; required by the weighted form."""
    weight: int | None = None
    """Percent of traffic sent to the canary (weighted form only, 1 to 50)."""
    header: Annotated[str, AfterValidator(_header_name)] | None = None
    """Request header that routes operator traffic to the canary (header form only)."""
    path_prefix: HttpPath | None = None
    """Path prefix routed to the canary (path form only)."""
    sample_interval: Duration = 30
    observation_window: Duration | None = None
    """Declared window in seconds; None means the default for the workload's criticality."""
    thresholds: CanaryThresholds

    def unused_keys(self) -> list[str]:
        """Keys set in the file that the declared form does not use (reported as warnings)."""
        used = {
            "weighted": {"provider", "weight"},
            "header": {"provider", "header"},
            "path": {"provider", "path_prefix"},
            "shadow": set(),
            "isolated-namespace": set(),
        }[self.form]
        optional = ("provider", "weight", "header", "path_prefix")
        return [k for k in optional if getattr(self, k) is not None and k not in used]

    @model_validator(mode="after")
    def _form_rules(self) -> Canary:
        problems: list[tuple[str, str, str]] = []
        if self.form == "weighted":
            if self.provider is None:
                problems.append(
                    (
                        "provider",
                        "the weighted form needs a traffic-splitting provider",
                        'set provider = "ingress-nginx" or "gateway-api"',
                    )
                )
            if self.weight is None:
                problems.append(
                    (
                        "weight",
                        "the weighted form needs a weight",
                        "set weight to the percent of traffic for the canary (1 to 50)",
                    )
                )
            elif not 1 <= self.weight <= 50:
                problems.append(
                    (
                        "weight",
                        f"weight {self.weight} is outside 1..50",
                        "a weighted canary sends between 1 and 50 percent of traffic",
                    )
                )
        if self.form == "header" and self.header is None:
            problems.append(
                (
                    "header",
                    "the header form needs the routing header",
                    'set header = "X-Railiance-Canary" (or your header name)',
                )
            )
        if self.form == "path" and self.path_prefix is None:
            problems.append(
                ("path_prefix", "the path form needs a path prefix", 'set path_prefix = "/canary"')
            )
        _rules(problems)
        return self


DependencyKind = Literal[
    "database",
    "cache",
    "object-store",
    "queue",
    "identity",
    "registry",
    "dns",
    "ingress",
    "certificates",
    "backup",
    "storage",
    "service",
    "other",
]


class Dependency(_Table):
    """``[[dependencies]]``: a platform dependency checked before Stage 2."""

    name: Text
    kind: DependencyKind
    health_url: HttpUrl | None = None
    """Health endpoint of the dependency (never with credentials in it)."""
    required: bool = True
    """A required dependency that is unhealthy blocks Stage 2 unless an operator approves degradation."""


class Secret(_Table):
    """``[[secrets]]``: a secret the workload needs, referenced by name or path, never by value."""

    name: Text
    """Kubernetes Secret name, OpenBao path, file path or environment variable name."""
    kind: Literal["kubernetes", "openbao", "file", "env"]
    keys: Seq[Text] | None = None
    """Keys the workload reads from the secret (names only)."""


class Migrations(_Table):
    """``[migrations]``: database migration classification (absent: unclassified)."""

    classification: Literal["none", "reversible", "forward-only", "requires-approval"] | None = None
    command: Command | None = None

    @property
    def classified(self) -> bool:
        """True when the migrations have been classified (Stage 1 decides what unclassified means)."""
        return self.classification is not None

    @model_validator(mode="after")
    def _none_has_no_command(self) -> Migrations:
        if self.classification == "none" and self.command is not None:
            _rules(
                [
                    (
                        "command",
                        'classification "none" means there are no migrations to run',
                        "remove command, or classify the migrations",
                    )
                ]
            )
        return self


class LocalCheck(_Table):
    """``[[local_checks]]``: a Stage 1 check run from ``railiance/`` without production credentials."""

    name: Text
    kind: Literal["unit", "integration", "migration", "smoke"]
    command: Command
    timeout: Duration = 300


class Rollback(_Table):
    """``[rollback]``: how a promotion is undone."""

    strategy: Literal["helm-revision", "digest-and-values", "routing", "manual"]
    command: Text | None = None
    """The single documented rollback command."""
    previous_stable: Text | None = None
    """A known previous-stable reference (an image pinned by digest, a Helm revision, ...)."""
    verification: Text | None = None
    """Name of the health, smoke or acceptance check run after a rollback."""
    tested: bool = False
    """True when the rollback has been exercised before."""
    runbook: Text | None = None
    """Path (relative to ``railiance/``) or URL of the manual recovery runbook; required for manual."""

    @model_validator(mode="after")
    def _strategy_rules(self) -> Rollback:
        problems: list[tuple[str, str, str]] = []
        if self.strategy == "manual":
            if self.runbook is None:
                problems.append(
                    (
                        "runbook",
                        "the manual strategy needs a recovery runbook",
                        "set runbook to a path relative to railiance/ or a URL",
                    )
                )
        elif self.command is None and self.previous_stable is None:
            problems.append(
                (
                    "command",
                    "a rollback needs a command or a previous-stable reference",
                    'set command = "railiance rollback <workload>" or previous_stable',
                )
            )
        if self.previous_stable is not None and "@" in self.previous_stable:
            try:
                parse_image_ref(self.previous_stable)
            except DigestFormatError as exc:
                problems.append(("previous_stable", str(exc), "write REPOSITORY@sha256:<64 hex>"))
        _rules(problems)
        return self


class Promotion(_Table):
    """``[promotion]`` (optional): how Stage 3 moves the stable path to the accepted candidate.

    ``release-replace`` (the default) upgrades the production Helm release to the candidate (after
    shifting a weighted canary to 100%). ``routing-switch`` keeps the production release untouched
    and points the stable Service (``routing.service``) at the accepted canary release's pods; it is
    undone by restoring the previous routing, so it needs ``rollback.strategy = "routing"`` (or
    ``manual``) and a canary in the production namespace.
    """

    form: Literal["release-replace", "routing-switch", "workflow"] = "release-replace"
    workflow: Command | None = None
    """``form = "workflow"``: the operator-approved rollout command Stage 3 runs after approval, in
    ``railiance/``, with ``CANDIDATE_IMAGE``, ``CANDIDATE_DIGEST``, ``RELEASE``, ``NAMESPACE`` and
    ``WORKFLOW_ID`` set. It must roll the candidate out; Stage 3 then judges it like a release replace
    (rollout read-back, production routing, smoke) and restores the previous stable on failure."""
    workflow_timeout: Duration = 600

    @model_validator(mode="after")
    def _workflow_needs_command(self) -> Promotion:
        if self.form == "workflow" and self.workflow is None:
            _rules([("workflow", 'form = "workflow" needs the workflow command', "set workflow = [...]")])
        if self.form != "workflow" and self.workflow is not None:
            _rules(
                [
                    (
                        "workflow",
                        f"workflow is not used by form {self.form!r}",
                        'set form = "workflow" or remove it',
                    )
                ]
            )
        return self


class Backup(_Table):
    """``[backup]``: backup posture, checked before Stage 3 for stateful workloads."""

    stateful: bool = False
    check: Command | None = None
    """Command that exits 0 when backup and restore posture is current."""
    max_age: Duration | None = None
    """Oldest acceptable backup, in seconds."""

    @model_validator(mode="after")
    def _stateful_needs_check(self) -> Backup:
        if self.stateful and self.check is None:
            _rules(
                [
                    (
                        "check",
                        "a stateful workload needs a backup posture check",
                        'set check = ["scripts/backup-posture"] (a command run from railiance/)',
                    )
                ]
            )
        return self


class Smoke(_Table):
    """``[[smoke]]``: a post-promotion smoke check."""

    name: Text
    path: HttpPath
    expect_status: Status = 200
    timeout: Duration = 10


class Approval(_Table):
    """``[approval]``: who may approve Stage 3."""

    approvers: Seq[Text] = ()
    """Operators who may approve; empty means anyone but the deployer."""
    allowed_signers: Text | None = None
    """Path (relative to ``railiance/``) of the SSH allowed-signers file (git's ``allowedSignersFile``
    format) whose keys sign human records; production-critical approvals must always be signed."""
    require_signatures: bool = False
    """Every human record (approval, revocation, waiver, emergency exception) must be signed."""
    retrospective_deadline: Duration = 24 * 3600
    """How long after an emergency exception its retrospective approval is due (default 24h); past it the
    exception is overdue (``status``, Dagster, a State Hub note)."""


class Acceptance(_Table):
    """``[[acceptance]]``: a workload-specific acceptance check (e.g. a forge's registry, ssh, web)."""

    name: Text
    kind: Literal["http", "command", "tcp"]
    """``http``: GET ``path``; ``command``: run ``command``; ``tcp``: connect to ``port``."""
    path: HttpPath | None = None
    command: Command | None = None
    port: Port | None = None
    expect_status: Status = 200
    """Expected HTTP status (http kind only)."""
    timeout: Duration = 10
    description: Text | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> Acceptance:
        problems: list[tuple[str, str, str]] = []
        needed = {"http": "path", "command": "command", "tcp": "port"}[self.kind]
        for fld in ("path", "command", "port"):
            value = getattr(self, fld)
            if fld == needed and value is None:
                problems.append((fld, f"the {self.kind} kind needs {fld}", f"set {fld}"))
            elif fld != needed and value is not None and not (self.kind == "tcp" and fld == "path"):
                problems.append((fld, f"{fld} is not used by the {self.kind} kind", "remove it"))
        _rules(problems)
        return self


class Integrity(_Table):
    """``[[integrity]]``: a data-integrity probe (schema, storage, queue) evaluated every sample of the
    Stage 2 window. A failing probe is an immediate rollback ("data integrity is at risk")."""

    name: Text
    kind: Literal["promql", "http"]
    """``promql``: evaluate ``query`` (``$SELECTOR`` becomes the canary's selector) and compare with
    ``max``/``min``; ``http``: GET ``path`` on the canary Service and expect ``expect_status``."""
    query: Text | None = None
    max: float | None = None
    """The probe fails when any returned value is above this."""
    min: float | None = None
    """The probe fails when any returned value is below this."""
    path: HttpPath | None = None
    expect_status: Status = 200
    description: Text | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> Integrity:
        problems: list[tuple[str, str, str]] = []
        if self.kind == "promql":
            if self.query is None:
                problems.append(("query", "the promql kind needs query", "set query (PromQL)"))
            if self.max is None and self.min is None:
                problems.append(("max", "the promql kind needs max or min", "set max, min or both"))
            if self.path is not None:
                problems.append(("path", "path is not used by the promql kind", "remove it"))
        else:
            if self.path is None:
                problems.append(("path", "the http kind needs path", "set path"))
            for fld in ("query", "max", "min"):
                if getattr(self, fld) is not None:
                    problems.append((fld, f"{fld} is not used by the http kind", "remove it"))
        _rules(problems)
        return self


class Readiness(_Table):
    """``[readiness]``: free-text answers to the spec's readiness questions (used by the readiness report)."""

    data_protection: Text | None = None
    """How data is protected before and after promotion."""
    rollback_verification: Text | None = None
    """How a rollback is verified without losing state."""
    canary_isolation: Text | None = None
    """How the production canary is isolated or traffic-limited."""


# --------------------------------------------------------------------------- the declaration


class Declaration(_Table):
    """A whole ``railiance/app.toml``.

    Use ``load_declaration(app_dir)`` to read one; it keeps the directory so ``resolve`` works.
    """

    schema_id: Literal["railiance.app/v1"] = Field(alias="schema")
    workload: Workload
    source: Source
    image: Image
    chart: Chart
    stages: Stages
    local: Local | None = None
    health: Annotated[Seq[Health], Field(min_length=1)]
    observability: Observability
    routing: Routing
    canary: Canary
    dependencies: Seq[Dependency] = ()
    secrets: Seq[Secret] = ()
    migrations: Migrations = Migrations()
    local_checks: Seq[LocalCheck] = ()
    rollback: Rollback
    promotion: Promotion = Promotion()
    backup: Backup = Backup()
    smoke: Seq[Smoke] = ()
    approval: Approval = Approval()
    acceptance: Seq[Acceptance] = ()
    integrity: Seq[Integrity] = ()
    readiness: Readiness = Readiness()

    _app_dir: Path | None = PrivateAttr(default=None)

    # ---- criticality and observation window

    @property
    def category(self) -> Category:
        """``workload.category``."""
        return self.workload.category

    @property
    def criticality(self) -> Criticality:
        """The category's criticality, raised to production-critical by ``critical = true``."""
        if self.workload.critical:
            return Criticality.PRODUCTION_CRITICAL
        return category_criticality(self.workload.category)

    @property
    def production_critical(self) -> bool:
        """True when production traffic changes need explicit human approval."""
        return self.criticality is Criticality.PRODUCTION_CRITICAL

    @property
    def approval_required(self) -> bool:
        """True when Stage 3 (and Stage 2 evidence) need an operator approval: production-critical."""
        return self.criticality.requires_approval

    @property
    def observation_window_seconds(self) -> int:
        """The declared canary observation window, else the default for the criticality."""
        if self.canary.observation_window is not None:
            return self.canary.observation_window
        return self.criticality.default_window_seconds

    @property
    def window_declared(self) -> bool:
        """True when ``canary.observation_window`` is set in the file."""
        return self.canary.observation_window is not None

    @property
    def window_needs_waiver(self) -> bool:
        """True when the window is under the criticality's minimum: a recorded waiver must exist first."""
        minimum = self.criticality.minimum_window_seconds
        return minimum is not None and self.observation_window_seconds < minimum

    # ---- convenience

    @property
    def name(self) -> str:
        """``workload.name``: the ledger stream."""
        return self.workload.name

    @property
    def key_health(self) -> Health:
        """The key health check recorded as Stage 2 evidence: the one with ``key = true``, else the first."""
        for check in self.health:
            if check.key:
                return check
        return self.health[0]

    def check_names(self) -> set[str]:
        """Names of every health, smoke and acceptance check."""
        return (
            {c.name for c in self.health} | {c.name for c in self.smoke} | {c.name for c in self.acceptance}
        )

    # ---- paths

    @property
    def app_dir(self) -> Path:
        """The workload directory this declaration was loaded from (the one holding ``railiance/``)."""
        if self._app_dir is None:
            raise ValueError(
                "this declaration was not loaded from a directory; use load_declaration(app_dir)"
            )
        return self._app_dir

    @property
    def railiance_dir(self) -> Path:
        """``<app_dir>/railiance``: the base of every relative path of the declaration; commands' cwd."""
        return self.app_dir / "railiance"

    @property
    def declaration_path(self) -> Path:
        """``<app_dir>/railiance/app.toml``."""
        return self.railiance_dir / "app.toml"

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """``path`` from the declaration as a real path (relative paths are relative to ``railiance/``)."""
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate
        return Path(os.path.normpath(self.railiance_dir / candidate))

    def bind(self, app_dir: str | os.PathLike[str]) -> Declaration:
        """A copy of this declaration that resolves paths against ``app_dir``."""
        copy = self.model_copy()
        copy._app_dir = Path(app_dir).absolute()
        return copy

    # ---- rules across tables

    @model_validator(mode="after")
    def _cross_table_rules(self) -> Declaration:
        problems: list[tuple[str, str, str]] = []
        for table in (
            "health",
            "smoke",
            "local_checks",
            "dependencies",
            "secrets",
            "acceptance",
            "integrity",
        ):
            seen: set[str] = set()
            for index, item in enumerate(getattr(self, table)):
                if item.name in seen:
                    problems.append(
                        (
                            f"{table}[{index}].name",
                            f"duplicate name {shown(item.name)}",
                            "give every entry a distinct name",
                        )
                    )
                seen.add(item.name)
        keys = [i for i, check in enumerate(self.health) if check.key]
        for index in keys[1:]:
            problems.append(
                (
                    f"health[{index}].key",
                    "more than one health check has key = true",
                    "mark exactly one key health endpoint",
                )
            )
        if self.canary.form in ("weighted", "header", "path") and self.routing.host is None:
            problems.append(
                (
                    "routing.host",
                    f"the {self.canary.form} canary form routes by ingress and needs a host",
                    "set routing.host, or use the isolated-namespace or shadow form",
                )
            )
        canary, production = self.stages.canary, self.stages.production
        if canary.namespace == production.namespace and canary.release == production.release:
            problems.append(
                (
                    "stages.canary.release",
                    (
                        "the canary release is the production release, "
                        "so the canary cannot be distinguished from stable"
                    ),
                    "give the canary its own release name",
                )
            )
        if self.canary.form == "isolated-namespace" and canary.namespace == production.namespace:
            problems.append(
                (
                    "stages.canary.namespace",
                    "the isolated-namespace form needs a namespace of its own",
                    "set a canary namespace different from the production namespace",
                )
            )
        window, interval = self.observation_window_seconds, self.canary.sample_interval
        needed = self.canary.thresholds.min_samples
        if window // interval < needed:
            where = "canary.observation_window" if self.window_declared else "canary.sample_interval"
            problems.append(
                (
                    where,
                    (
                        f"a {format_duration(window)} window sampled every {format_duration(interval)} "
                        f"gives {window // interval} samples, fewer than min_samples = {needed}"
                    ),
                    "lengthen the window, shorten sample_interval or lower canary.thresholds.min_samples",
                )
            )
        if self.promotion.form == "routing-switch":
            if self.rollback.strategy not in ("routing", "manual"):
                problems.append(
                    (
                        "promotion.form",
                        (
                            "a routing-switch promotion leaves the production release untouched, so it is "
                            f"undone by restoring the previous routing, not by {self.rollback.strategy}"
                        ),
                        (
                            'set rollback.strategy = "routing" (or "manual"), or promotion.form = '
                            '"release-replace"'
                        ),
                    )
                )
            if canary.namespace != production.namespace:
                problems.append(
                    (
                        "promotion.form",
                        (
                            "a routing switch points the stable Service at the canary pods: they must run in "
                            "the production namespace"
                        ),
                        (
                            "deploy the canary in the production namespace, or use promotion.form = "
                            "'release-replace'"
                        ),
                    )
                )
        if self.rollback.verification is not None and self.rollback.verification not in self.check_names():
            problems.append(
                (
                    "rollback.verification",
                    (
                        f"{shown(self.rollback.verification)} names no [[health]], [[smoke]] or "
                        "[[acceptance]] check"
                    ),
                    "name one of: " + ", ".join(sorted(self.check_names())),
                )
            )
        _rules(problems)
        return self

    # ---- warnings

    def warnings(self) -> list[DeclarationIssue]:
        """Problems that do not make the declaration invalid but that a later gate will ask about."""
        out: list[DeclarationIssue] = []
        if self.window_needs_waiver:
            minimum = self.criticality.minimum_window_seconds or 0
            out.append(
                DeclarationIssue(
                    "canary.observation_window",
                    "production-critical workload observed for "
                    f"{format_duration(self.observation_window_seconds)}, "
                    f"under the {format_duration(minimum)} minimum",
                    "record a waiver for the short window before Stage 2 (railiance waive), or lengthen it",
                )
            )
        if not self.migrations.classified:
            out.append(
                DeclarationIssue(
                    "migrations.classification",
                    "migrations are not classified",
                    'set classification = "none" | "reversible" | "forward-only" | "requires-approval"',
                )
            )
        if self.local is None:
            out.append(
                DeclarationIssue(
                    "local",
                    "no [local] table: Stage 1 cannot start the workload locally",
                    "add [local] with command and ready_timeout",
                )
            )
        if not self.smoke:
            out.append(
                DeclarationIssue(
                    "smoke",
                    "no [[smoke]] checks: Stage 3 needs a smoke result after promotion",
                    "add at least one [[smoke]] check",
                )
            )
        if self.rollback.verification is None:
            out.append(
                DeclarationIssue(
                    "rollback.verification",
                    "no rollback verification check: Stage 3 requires one",
                    "name a [[health]] or [[smoke]] check",
                )
            )
        if not self.rollback.tested and (
            self.rollback.command is None or self.rollback.previous_stable is None
        ):
            out.append(
                DeclarationIssue(
                    "rollback.tested",
                    "rollback is not marked tested: canary acceptance then needs a single documented command "
                    "and a known previous-stable target",
                    "test the rollback and set tested = true",
                )
            )
        for key in self.canary.unused_keys():
            out.append(
                DeclarationIssue(
                    f"canary.{key}",
                    f"{key} is not used by the {self.canary.form} form",
                    "remove it, or change canary.form",
                )
            )
        if self.production_critical and "backup" not in self.model_fields_set:
            out.append(
                DeclarationIssue(
                    "backup",
                    "production-critical workload without a [backup] table",
                    "declare [backup] stateful = true|false (and check when stateful)",
                )
            )
        return out
