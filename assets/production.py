"""The ``production`` asset: one partition per workload, production at a glance.

Partitions come from the ledger only (``DynamicPartitionsDefinition("workloads")``, added by the mirror
sensor for every stream that has events). The mirror sensor re-reports a workload's view whenever a new
event can change it; materializing the asset by hand reads the same view. Its metadata is flat, so the
asset page answers at a glance: the stable digest and since when, the rollback target, the open canary
and its window, approvals pending and overdue, the last rollback and why.
"""

from datetime import datetime
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.candidates import GROUP
from assets.resources import AppsResource, LedgerResource
from railiance_ledger.lifecycle.production import ProductionView

workloads_partitions = DynamicPartitionsDefinition(name="workloads")
"""One partition per workload (ledger stream), added by the mirror sensor from the ledger."""

PRODUCTION = AssetKey("production")


def _ts(text: str | None) -> MetadataValue:  # type: ignore[type-arg]
    if not text:
        return MetadataValue.text("none")
    return MetadataValue.timestamp(datetime.fromisoformat(text))


def summary(view: ProductionView) -> str:
    """One line: stable, since, rollback target."""
    if view.stable is None:
        return f"{view.workload}: no stable recorded in the ledger"
    return (
        f"{view.workload}: stable {view.stable} since {view.stable_since}; rollback target "
        f"{view.rollback_target or 'none'}"
    )


def production_metadata(view: ProductionView) -> dict[str, Any]:
    """The flat metadata of a production view (``none`` where the ledger records nothing)."""
    canary = view.open_canary
    last = (
        f"{view.last_rollback_from or '?'} -> {view.last_rollback_to or 'none'} at {view.last_rollback_at} "
        f"by {view.last_rollback_by}"
        if view.last_rollback_at
        else "none"
    )
    return {
        "stable": MetadataValue.text(view.stable or "none"),
        "stable_image": MetadataValue.text(view.stable_image or "none"),
        "stable_since": MetadataValue.text(view.stable_since or "none"),
        "stable_since_ts": _ts(view.stable_since),
        "promoted_by": MetadataValue.text(view.promoted_by or "none"),
        "approved_by": MetadataValue.text(", ".join(view.approved_by) or "none"),
        "rollback_target": MetadataValue.text(view.rollback_target or "none"),
        "rollback_target_image": MetadataValue.text(view.rollback_target_image or "none"),
        "open_canary": MetadataValue.text(canary.digest if canary else "none"),
        "canary_window": MetadataValue.text(
            f"{canary.opened_at} -> {canary.closes_at or '?'} ({canary.window_seconds or '?'} s)"
            if canary
            else "none"
        ),
        "pending_approvals": MetadataValue.int(len(view.pending_approvals)),
        "pending_approvals_detail": MetadataValue.json(list(view.pending_approvals)),
        "overdue_approvals": MetadataValue.int(len(view.overdue_approvals)),
        "overdue_approvals_detail": MetadataValue.json(list(view.overdue_approvals)),
        "last_rollback": MetadataValue.text(last),
        "last_rollback_reason": MetadataValue.text(view.last_rollback_reason or "none"),
        "ledger_seq": MetadataValue.int(view.last_seq),
    }


def read_view(ledger: LedgerResource, apps: AppsResource, workload: str) -> ProductionView:
    """The production view of ``workload`` (its declaration, when found, gives the canary window)."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.production import production_view
    from railiance_ledger.lifecycle.workloads import find_workload

    try:
        decl = find_workload(apps.path(), workload).decl
    except RailianceError:
        decl = None
    with ledger.open() as store:
        return production_view(store, workload, decl)


def production_event(view: ProductionView) -> AssetMaterialization:
    """The runless materialization the mirror sensor reports for a workload's view."""
    meta = production_metadata(view)
    meta["source"] = MetadataValue.text(
        "ledger mirror: production view after ledger seq " + str(view.last_seq)
    )
    return AssetMaterialization(
        asset_key=PRODUCTION, partition=view.workload, description=summary(view), metadata=meta
    )


@asset(
    partitions_def=workloads_partitions,
    group_name=GROUP,
    kinds={"kubernetes"},
    description=(
        "Production at a glance, per workload (from the ledger): the stable digest and since when, the "
        "rollback target, the open canary and its window, approvals pending and overdue, the last rollback "
        "and why. Kept current by ledger_mirror_sensor; materializing reads the same view."
    ),
)
def production(
    context: AssetExecutionContext, ledger: LedgerResource, apps: AppsResource
) -> MaterializeResult:  # type: ignore[type-arg]
    """Read the workload's production view from the ledger (nothing is written)."""
    workload = context.partition_key
    view = read_view(ledger, apps, workload)
    if view.last_seq == 0:
        raise Failure(description=f"the ledger has no events for workload {workload!r}")
    context.log.info(summary(view))
    return MaterializeResult(metadata=production_metadata(view))
