"""The Railiance Dagster assets: candidates, stage results and approvals, partitioned by candidate.

Wiring only: every asset calls one ``railiance_ledger.lifecycle`` service or the ledger's read side.
"""

from __future__ import annotations

from assets.candidates import candidate, candidates_partitions
from assets.gates import GATES
from assets.jobs import JOBS
from assets.production import production, workloads_partitions
from assets.resources import default_resources
from assets.stages import STAGE_ASSETS

ASSETS = [candidate, *STAGE_ASSETS, production]
"""Every asset, in lineage order."""

__all__ = ["ASSETS", "GATES", "JOBS", "candidates_partitions", "default_resources", "workloads_partitions"]
