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

Modules, by phase: ``context`` (gate names, limits, ``Stage1Context``), ``source`` (revision,
candidate, determinism), ``render`` (helm template + schema validation), ``secrets`` (plaintext
secrets; the scan is ``domain.manifest_scan``), ``local`` (local health, local check commands),
``declared`` (migrations, observability), ``run`` (the service, ``run_stage1``).
"""

from railiance_ledger.domain.gates import LOCAL_CHECK_PREFIX
from railiance_ledger.lifecycle.stage1.context import (
    MIGRATION_CLASSES,
    OUTPUT_TAIL_CHARS,
    REQUIRED_CHECKS,
    STAGE,
    WORKLOAD_TAIL_CHARS,
    Stage1Context,
    local_env,
)
from railiance_ledger.lifecycle.stage1.declared import check_migrations, check_observability
from railiance_ledger.lifecycle.stage1.local import check_local_commands, check_local_health
from railiance_ledger.lifecycle.stage1.render import (
    RenderRefused,
    check_manifests,
    render_chart,
)
from railiance_ledger.lifecycle.stage1.run import Stage1Outcome, run_stage1
from railiance_ledger.lifecycle.stage1.secrets import check_secrets
from railiance_ledger.lifecycle.stage1.source import (
    check_artifact_deterministic,
    check_candidate_immutable,
    check_source_revision,
)

__all__ = [
    "LOCAL_CHECK_PREFIX",
    "MIGRATION_CLASSES",
    "OUTPUT_TAIL_CHARS",
    "REQUIRED_CHECKS",
    "STAGE",
    "WORKLOAD_TAIL_CHARS",
    "RenderRefused",
    "Stage1Context",
    "Stage1Outcome",
    "check_artifact_deterministic",
    "check_candidate_immutable",
    "check_local_commands",
    "check_local_health",
    "check_manifests",
    "check_migrations",
    "check_observability",
    "check_secrets",
    "check_source_revision",
    "local_env",
    "render_chart",
    "run_stage1",
]
