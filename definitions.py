"""The Railiance Ledger Dagster code location: ``dagster dev -w workspace.yaml``.

Candidates, stage results and approvals are assets partitioned by candidate
(``<workload>@<first 12 hex of the digest>``); gates are asset checks; sensors react to new image
digests, to upstream evidence in the ledger, to immediate-rollback conditions, and mirror what the
CLI records. Settings come from the environment (see ``assets/resources.py`` and docs/dagster.md).
"""

from __future__ import annotations

import warnings

from dagster import Definitions

try:  # partitioned asset checks are a preview feature in dagster 1.13; we rely on them knowingly
    from dagster import PreviewWarning

    warnings.filterwarnings("ignore", category=PreviewWarning)
except ImportError:  # pragma: no cover - older or newer dagster without the warning class
    pass

from collections.abc import Mapping
from typing import Any

from assets import ASSETS, GATES, JOBS, default_resources
from assets.gates import local_check_gates
from sensors import SENSORS


def declared_local_checks(apps: Any) -> list[str]:
    """``local_check:<name>`` for every ``[[local_checks]]`` of every workload under the apps directory
    (each becomes an asset check of ``stage1_validation``; a declaration that does not load adds none)."""
    from railiance_ledger.domain.gates import LOCAL_CHECK_PREFIX
    from railiance_ledger.lifecycle.workloads import discover_workloads

    found, _problems = discover_workloads(apps.path())
    return [f"{LOCAL_CHECK_PREFIX}{lc.name}" for w in found for lc in w.decl.local_checks]


def build_definitions(resources: Mapping[str, Any] | None = None) -> Definitions:
    """The code location's definitions; ``resources`` replace the defaults by key (tests point them at
    their own servers with the same resource classes)."""
    merged = {**default_resources(), **dict(resources or {})}
    return Definitions(
        assets=ASSETS,
        asset_checks=[*GATES, *local_check_gates(declared_local_checks(merged["apps"]))],
        jobs=JOBS,
        sensors=SENSORS,
        resources=merged,
    )


defs = build_definitions()
