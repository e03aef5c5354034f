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

from railiance_ledger.lifecycle.cluster.manifests import canonical_manifests, load_manifests, store_manifests
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment, open_deployment
from railiance_ledger.lifecycle.stage2.context import (
    ACCEPTANCE_CHECKS,
    IDENTITY_GATE,
    PRECHECKS,
    STATEHUB_GATE,
    StageOutcome,
)
from railiance_ledger.lifecycle.stage2.deploy import deploy_canary
from railiance_ledger.lifecycle.stage2.observe import default_metrics_window, observe_canary
from railiance_ledger.lifecycle.stage2.removal import remove_canary

__all__ = [
    "ACCEPTANCE_CHECKS",
    "IDENTITY_GATE",
    "PRECHECKS",
    "STATEHUB_GATE",
    "CanaryDeployment",
    "StageOutcome",
    "canonical_manifests",
    "default_metrics_window",
    "deploy_canary",
    "load_manifests",
    "observe_canary",
    "open_deployment",
    "remove_canary",
    "store_manifests",
]
