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
from sensors import SENSORS


def build_definitions(resources: Mapping[str, Any] | None = None) -> Definitions:
    """The code location's definitions; ``resources`` replace the defaults by key (tests point them at
    their own servers with the same resource classes)."""
    return Definitions(
        assets=ASSETS,
        asset_checks=GATES,
        jobs=JOBS,
        sensors=SENSORS,
        resources={**default_resources(), **dict(resources or {})},
    )


defs = build_definitions()
