"""Jobs an operator launches from the UI launchpad (and sensors request).

Asset jobs are partitioned by candidate (pick the partition in the launchpad); their config is typed
(``StageConfig``, ``ApprovalConfig``) and sits under ``ops: <asset>: config:``. They run in process:
each is one short service call, so a subprocess per step would only add latency.

- ``stage1``: ``candidate`` + ``stage1_validation`` and its gates.
- ``canary``: ``stage2_canary`` (deploy) and its precheck gates.
- ``observe``: ``canary_acceptance`` (observation window) and its acceptance gates.
- ``approve``: ``promotion_approval``; config ``operator`` (required), ``stage`` (default 3).
- ``promote``: ``stage3_promotion``.
- ``rollback`` (not partitioned): config ``workload``, ``reason``, ``operator``, optional ``candidate``
  (``lifecycle.rollback.rollback``: the open Stage 2 canary is removed, else production returns to the
  previous stable; a run requested by the canary guard acts only while that candidate's canary is open).
- ``lineage`` (not partitioned): each workload's stable history and rollback target, as ``railiance lineage``.
"""

import json
from typing import Any

from dagster import (
    AssetObservation,
    AssetSelection,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from assets.candidates import candidate, candidates_partitions, rollback_evaluation
from assets.resources import (
    AppsResource,
    HelmResource,
    KubeResource,
    LedgerResource,
    StateHubResource,
    http_client,
    log_of,
)
from assets.stages import (
    actor_of,
    canary_acceptance,
    promotion_approval,
    stage1_validation,
    stage2_canary,
    stage3_promotion,
)


def _asset_job(name: str, assets: list[Any], description: str) -> Any:
    return define_asset_job(
        name=name,
        selection=AssetSelection.assets(*assets),
        executor_def=in_process_executor,
        description=description,
    )


stage1_job = _asset_job(
    "stage1",
    [candidate, stage1_validation],
    "Stage 1 local validation of the partition's candidate (requested by new_digest_sensor).",
)
canary_job = _asset_job(
    "canary",
    [stage2_canary],
    "Stage 2: deploy the partition's candidate as the production canary (prechecks first).",
)
observe_job = _asset_job(
    "observe",
    [canary_acceptance],
    "Stage 2: observe the deployed canary over its window; accept, reject or roll back.",
)
approve_job = _asset_job(
    "approve",
    [promotion_approval],
    "Record a human approval of the partition's candidate (config: operator, stage).",
)
promote_job = _asset_job(
    "promote", [stage3_promotion], "Stage 3: promote the partition's candidate to production."
)


# ---------------------------------------------------------------------------------------------- rollback


class RollbackConfig(Config):
    """Launchpad config of a rollback."""

    workload: str = Field(description="The workload to roll back.")
    reason: str = Field(description="Why (recorded in the ledger).")
    operator: str = Field(default="", description="Who rolls back (recorded as actor); empty: 'dagster'.")
    candidate: str = Field(
        default="", description="Optional: the candidate (partition key) whose canary triggered it."
    )


@op(
    description="Roll the workload back with lifecycle.rollback: remove the open Stage 2 canary, or return "
    "production to the previous stable (verified), as `railiance rollback`."
)
def rollback_workload(
    context: OpExecutionContext,
    config: RollbackConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    kube: KubeResource,
    helm: HelmResource,
    statehub: StateHubResource,
) -> Output[dict[str, Any]]:
    """``lifecycle.rollback.rollback``; a guard-triggered run (``candidate`` set) whose canary is no longer
    open does nothing."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.lifecycle.actions import acting, lease_duration
    from railiance_ledger.lifecycle.gating import open_canary
    from railiance_ledger.lifecycle.rollback import rollback
    from railiance_ledger.lifecycle.workloads import find_workload

    actor = actor_of(config.operator, ledger)
    try:
        workload = find_workload(apps.path(), config.workload)
    except RailianceError as exc:
        raise Failure(description=str(exc)) from exc
    with ledger.open() as store:
        canary = open_canary(store.read_stream(workload.name))
        open_key = (
            partition_key(workload.name, canary.candidate)
            if canary is not None and canary.candidate
            else None
        )
        if config.candidate and open_key != config.candidate:
            log_of(context).info(
                f"the Stage 2 canary of {config.candidate} is no longer open (closed or rolled back "
                "already); nothing to do"
            )
            return Output({"rolled_back": None}, metadata={"note": "canary already closed"})
        try:
            with acting(
                store, workload.name, "rollback", actor, duration=lease_duration(workload.decl, "rollback")
            ) as act:
                kube_client = kube.build()
                with (
                    statehub.open() as hub,
                    http_client(
                        ingress_url=kube.resolved_ingress_url(), host=workload.decl.routing.host
                    ) as http,
                ):
                    outcome = rollback(
                        store=act.store,
                        decl=workload.decl,
                        operator=actor,
                        kube=kube_client,
                        helm=helm.build(kubeconfig=kube.kubeconfig_path(), context=kube.context),
                        http=http,
                        reason=config.reason,
                        statehub=hub,
                        automatic=bool(config.candidate),
                    )
        except RailianceError as exc:
            raise Failure(description=f"rollback of {workload.name} failed: {exc}") from exc
    events = list(getattr(outcome, "events", []) or [])
    seqs = ",".join(str(e.seq) for e in events)
    observed = [e for e in events if e.candidate]
    if observed:
        key = partition_key(workload.name, str(observed[-1].candidate))
        asset = stage2_canary if open_key is not None else stage3_promotion
        context.log_event(
            AssetObservation(
                asset_key=asset.key,
                partition=key,
                metadata={
                    "rollback": MetadataValue.text(config.reason),
                    "ledger_seqs": MetadataValue.text(seqs),
                    "ledger_seq": MetadataValue.int(events[-1].seq),
                    "ledger_hash": MetadataValue.text(events[-1].hash),
                },
            )
        )
        for done in (e for e in events if e.kind == "rollback.completed" and e.candidate):
            context.log_event(
                rollback_evaluation(
                    (stage2_canary if done.stage == 2 else stage3_promotion).key,
                    partition_key(workload.name, str(done.candidate)),
                    done,
                )
            )
    document = getattr(outcome, "document", None) or {}
    exit_code = int(getattr(outcome, "exit_code", 0) or 0)
    if exit_code != 0:
        raise Failure(
            description=(
                f"rollback of {workload.name} did not complete: {document.get('status') or exit_code}"
            ),
            metadata={"document": MetadataValue.json(document), "ledger_seqs": seqs},
        )
    return Output(
        {"workload": workload.name, "document": document},
        metadata={"document": MetadataValue.json(document), "ledger_seqs": seqs},
    )


@job(
    name="rollback",
    executor_def=in_process_executor,
    description=(
        "Roll a workload back: remove the open Stage 2 canary, or return production to the previous stable."
    ),
)
def rollback_job() -> None:
    """The ``rollback`` job."""
    rollback_workload()


# ---------------------------------------------------------------------------------------------- lineage


class LineageConfig(Config):
    """Launchpad config of the lineage report."""

    workload: str = Field(
        default="", description="One workload; empty: every declared workload and ledger stream."
    )


@op(description="Each workload's stable history and rollback target, exactly as `railiance lineage --json`.")
def lineage_report(
    context: OpExecutionContext, config: LineageConfig, ledger: LedgerResource, apps: AppsResource
) -> Output[dict[str, Any]]:
    """Read ``projections.lineage`` for each workload and report it (and observe the stable's partition)."""
    from railiance_ledger.ledger.projections import lineage, partition_key
    from railiance_ledger.lifecycle.workloads import discover_workloads

    with ledger.open() as store:
        if config.workload:
            names = [config.workload]
        else:
            declared, _problems = discover_workloads(apps.path())
            names = sorted({w.name for w in declared} | set(store.streams()))
        report = {name: lineage(store, name).as_dict() for name in names}
    known = set(context.instance.get_dynamic_partitions(candidates_partitions.name or "candidates"))
    targets: dict[str, Any] = {}
    for name, lin in report.items():
        target = lin.get("rollback_target")
        targets[name] = (target or {}).get("image") or (target or {}).get("digest")
        stable = lin.get("current_stable")
        log_of(context).info(
            f"{name}: stable {(stable or {}).get('digest')}; rollback target {targets[name] or 'none'}"
        )
        if stable and partition_key(name, stable["digest"]) in known:
            context.log_event(
                AssetObservation(
                    asset_key=stage3_promotion.key,
                    partition=partition_key(name, stable["digest"]),
                    metadata={
                        "lineage": MetadataValue.json(lin),
                        "rollback_target": MetadataValue.json(target or {}),
                    },
                )
            )
    return Output(
        report,
        metadata={
            "lineage": MetadataValue.json(json.loads(json.dumps(report, default=str))),
            "rollback_targets": MetadataValue.json(targets),
        },
    )


@job(
    name="lineage",
    executor_def=in_process_executor,
    description="Report each workload's lineage and rollback target (agrees with `railiance lineage`).",
)
def lineage_job() -> None:
    """The ``lineage`` job."""
    lineage_report()


JOBS = [stage1_job, canary_job, observe_job, approve_job, promote_job, rollback_job, lineage_job]
