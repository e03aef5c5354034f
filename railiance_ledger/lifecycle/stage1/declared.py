"""Stage 1 gates judged on the declaration alone: ``migrations_classified`` and
``observability_declared``."""

from __future__ import annotations

from railiance_ledger.domain.stage_result import Check
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.stage1.context import MIGRATION_CLASSES, Stage1Context, text_of


def check_migrations(ctx: Stage1Context) -> Check:
    """``migrations_classified``: ``[migrations] classification`` is none | reversible |
    forward-only | requires-approval; absent means unclassified and fails."""
    name = "migrations_classified"
    migrations = getattr(ctx.decl, "migrations", None)
    cls = text_of(getattr(migrations, "classification", None))
    if cls is None:
        return make_check(
            name,
            False,
            "database migrations are unclassified: declare [migrations] classification = "
            "none | reversible | forward-only | requires-approval",
        )
    if cls not in MIGRATION_CLASSES:
        return make_check(
            name,
            False,
            f"unknown migration classification {cls!r}; use one of " + ", ".join(MIGRATION_CLASSES),
        )
    note = " (Stage 3 needs a human approval)" if cls == "requires-approval" else ""
    return make_check(
        name,
        True,
        f"migrations classified as {cls}{note}",
        evidence=[make_evidence("summary", "migrations.classification", cls)],
    )


def check_observability(ctx: Stage1Context) -> Check:
    """``observability_declared``: health endpoints, a metrics endpoint and a log source are declared,
    so the workload can state how it will be observed in Stage 2."""
    name = "observability_declared"
    decl = ctx.decl
    obs = getattr(decl, "observability", None)
    health = [h for h in (getattr(decl, "health", None) or []) if getattr(h, "path", None)]
    metrics = getattr(obs, "metrics_path", None) if obs is not None else None
    logs = text_of(getattr(obs, "log_source", None)) if obs is not None else None
    missing = []
    if not health:
        missing.append("[[health]] endpoint")
    if not metrics:
        missing.append("observability.metrics_path")
    if not logs:
        missing.append("observability.log_source")
    if missing:
        return make_check(
            name,
            False,
            "the workload cannot state how it will be observed in Stage 2: missing " + ", ".join(missing),
        )
    return make_check(
        name,
        True,
        f"health {', '.join(str(h.path) for h in health)}; metrics {metrics}; logs from {logs}",
        evidence=[
            make_evidence(
                "summary",
                "observability",
                f"metrics {metrics}, logs {logs}, {len(health)} health endpoint(s)",
            )
        ],
    )
