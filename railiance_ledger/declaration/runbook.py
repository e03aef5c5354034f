"""The operator runbook for the spec's temporary compatibility path.

Spec, "Workload Declaration": a workload that cannot provide a machine-readable declaration yet
"may still use this lifecycle through a written operator runbook ... The runbook must identify the
missing declaration fields." ``render_runbook`` writes that runbook in Markdown: for each item of the
spec's minimum list it names the TOML paths that are missing or invalid, and what the operator must
do by hand until they are declared. It works when ``app.toml`` is absent or unparsable (then every
field is missing) and never prints a value from the declaration other than the workload name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from railiance_ledger.declaration.loader import ValidationReport, validate_app_dir
from railiance_ledger.errors import DeclarationIssue

__all__ = ["RUNBOOK_ITEMS", "Gap", "RunbookItem", "render_runbook", "runbook_gaps"]


@dataclass(frozen=True)
class RunbookItem:
    """One item of the spec's minimum declaration list."""

    title: str
    """The spec's wording."""
    required: tuple[str, ...]
    """TOML paths that must all be present."""
    any_of: tuple[str, ...]
    """TOML paths of which at least one must be present (empty: no such group)."""
    manual: str
    """What the operator does by hand until the fields are declared."""
    example: str
    """A TOML snippet to add."""
    scope: tuple[str, ...] = ()
    """TOML tables whose invalid fields count against this item."""


RUNBOOK_ITEMS: tuple[RunbookItem, ...] = (
    RunbookItem(
        "Stable workload name and owning repo",
        ("workload.name", "workload.repo", "workload.category"),
        (),
        "Use one fixed workload name in every State Hub note and stage record, name the owning repository, "
        "and decide the category by hand: production-critical workloads (forge, registry, identity, "
        "State Hub, databases, ingress, ...) need explicit human approval and a 60 minute canary window.",
        '[workload]\nname = "my-app"\nrepo = "railiance-apps/my-app"\ncategory = "internal-service"',
        scope=("workload",),
    ),
    RunbookItem(
        "Source revision, image tag, or image digest policy",
        ("source.revision_policy", "image.repository"),
        (),
        "Record the git commit and the image reference pinned by digest (`REPOSITORY@sha256:...`) of the "
        "candidate before Stage 1, and promote only that digest; never promote a tag.",
        '[source]\nrevision_policy = "git-commit"\n\n[image]\nrepository = "registry.local/railiance/my-app"',
        scope=("source", "image"),
    ),
    RunbookItem(
        "Stage-specific namespaces or release names",
        tuple(
            f"stages.{stage}.{key}"
            for stage in ("local", "canary", "production")
            for key in ("namespace", "release")
        ),
        (),
        "Write down the namespace and Helm release for the local, canary and production stages and check "
        "them against every helm and kubectl command before running it; the canary release must differ "
        "from the production release.",
        '[stages.canary]\nnamespace = "my-app"\nrelease = "my-app-canary"',
        scope=("stages",),
    ),
    RunbookItem(
        "Health checks and observability endpoints",
        ("health", "observability.prometheus_selector", "observability.log_source"),
        (),
        "List the health URL(s) to probe, the Prometheus query and the log source used to watch the canary; "
        "run them by hand through the whole observation window and record the HTTP status codes and the "
        'metrics window (or an explicit "metrics unavailable" note) in State Hub.',
        '[[health]]\nname = "healthz"\npath = "/healthz"\n\n[observability]\n'
        'prometheus_selector = \'job="my-app"\'\nlog_source = "kubernetes-pod-logs"',
        scope=("health", "observability"),
    ),
    RunbookItem(
        "Ingress or routing targets",
        ("routing.service", "routing.port", "canary.form", "canary.thresholds"),
        (),
        "Describe the ingress host, service and port of stable and canary and how canary traffic is limited; "
        "check the routing state before and after every change, and judge error rate, latency and saturation "
        "against thresholds written down before the canary starts.",
        '[routing]\nservice = "my-app"\nport = 8080\n\n[canary]\nform = "isolated-namespace"\n\n'
        "[canary.thresholds]\nmax_error_rate = 0.01\nmax_p95_latency_ms = 300",
        scope=("routing", "canary"),
    ),
    RunbookItem(
        "Platform dependencies",
        ("dependencies",),
        (),
        "List every platform dependency (database, cache, object store, identity, ...) and check that "
        "each is healthy, or record an operator-approved degradation, before Stage 2. Write "
        "`dependencies = []` when there are none.",
        '[[dependencies]]\nname = "postgres-main"\nkind = "database"',
        scope=("dependencies",),
    ),
    RunbookItem(
        "Rollback command or previous-stable reference",
        ("rollback.strategy",),
        ("rollback.command", "rollback.previous_stable", "rollback.runbook"),
        "Before applying the canary, record the previous stable Helm revision or image digest and "
        "values file, the exact rollback command, and the check that verifies the rollback.",
        '[rollback]\nstrategy = "helm-revision"\ncommand = "railiance rollback my-app"\n'
        'verification = "healthz"',
        scope=("rollback",),
    ),
    RunbookItem(
        "Secret references by name or path",
        ("secrets",),
        (),
        "List every secret the workload needs by Kubernetes Secret name or OpenBao path only; never write a "
        "secret value in the runbook, a State Hub note or a command line. Write `secrets = []` when there "
        "are none.",
        '[[secrets]]\nname = "my-app-db"\nkind = "kubernetes"',
        scope=("secrets",),
    ),
)


@dataclass(frozen=True)
class Gap:
    """A declaration item that is missing or invalid."""

    item: RunbookItem
    missing: tuple[str, ...]
    invalid: tuple[DeclarationIssue, ...]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith((root + ".", root + "["))


def runbook_gaps(report: ValidationReport) -> list[Gap]:
    """Every item of the spec's minimum list whose fields are missing or invalid in ``report``."""
    present = report.present_paths
    gaps: list[Gap] = []
    for item in RUNBOOK_ITEMS:
        missing = [p for p in item.required if p not in present]
        if item.any_of and not any(p in present for p in item.any_of):
            missing.append(" or ".join(item.any_of))
        # ``missing`` holds plain paths, plus one "a or b" entry for an any_of group
        roots = item.required + item.any_of + item.scope
        invalid = tuple(
            i
            for i in report.issues
            if any(_under(i.path, r) for r in roots)
            and not any(_under(m, i.path) for m in missing)  # a missing table is reported as missing
        )
        if missing or invalid:
            gaps.append(Gap(item, tuple(missing), invalid))
    return gaps


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _status_line(report: ValidationReport) -> str:
    if not report.found:
        return f"`{report.path}` does not exist: every declaration field is missing."
    if not report.parsed:
        return f"`{report.path}` is not valid TOML: every declaration field is treated as missing."
    if report.ok:
        return f"`{report.path}` is valid."
    count = len(report.issues)
    return f"`{report.path}` has {count} problem{'s' if count != 1 else ''}."


def render_runbook(app_dir: Path, report: ValidationReport | None = None) -> str:
    """Markdown runbook naming each missing or invalid declaration field and the manual step meanwhile.

    ``report`` defaults to ``validate_app_dir(app_dir)``; the runbook is written even when the
    declaration file is absent or unparsable.
    """
    if report is None:
        report = validate_app_dir(app_dir)
    name = report.workload_name or Path(app_dir).resolve().name
    gaps = runbook_gaps(report)
    lines: list[str] = [
        f"# Operator runbook: {name}",
        "",
        "This runbook is the lifecycle's temporary compatibility path for a workload without a complete",
        "machine-readable declaration (spec: Workload Declaration). Each stage still runs in order and still",
        (
            "leaves evidence; the steps below replace, by hand, what the missing declaration fields would "
            "provide."
        ),
        "Add the fields to `railiance/app.toml` (see docs/app-toml.md) and retire this runbook.",
        "",
        f"Declaration: {_status_line(report)}",
        "",
    ]
    if not gaps:
        lines += ["Every field of the spec's minimum list is declared; no manual substitute is needed.", ""]
    else:
        lines += [
            "## Missing or invalid declaration fields",
            "",
            "| # | Spec requirement | TOML path to add or fix | Status |",
            "|---|---|---|---|",
        ]
        for number, gap in enumerate(gaps, 1):
            paths = list(gap.missing) + [i.path for i in gap.invalid if i.path not in gap.missing]
            status = ", ".join(
                part
                for part in (
                    "missing" if gap.missing else "",
                    "invalid" if gap.invalid else "",
                )
                if part
            )
            cell = ", ".join(f"`{p}`" for p in paths)
            lines.append(f"| {number} | {_cell(gap.item.title)} | {_cell(cell)} | {status} |")
        lines += ["", "## Manual steps until the fields are declared", ""]
        for number, gap in enumerate(gaps, 1):
            lines += [f"### {number}. {gap.item.title}", ""]
            for path in gap.missing:
                lines.append(f"- Missing: `{path}`")
            for issue in gap.invalid:
                lines.append(
                    f"- Invalid: `{issue.path}`: {issue.message}" + (f" ({issue.hint})" if issue.hint else "")
                )
            lines += [
                f"- Meanwhile the operator must: {gap.item.manual}",
                "- Declare it as, for example:",
                "",
                "```toml",
                gap.item.example,
                "```",
                "",
            ]
    covered = {i for gap in gaps for i in gap.invalid}
    others = [i for i in report.issues if i not in covered]
    if others:
        lines += ["## Other problems in the declaration", ""]
        lines += [f"- `{i.path}`: {i.message}" + (f" ({i.hint})" if i.hint else "") for i in others]
        lines.append("")
    if report.warnings:
        lines += ["## Warnings", ""]
        lines += [f"- `{w.path}`: {w.message}" + (f" ({w.hint})" if w.hint else "") for w in report.warnings]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
