"""Stage assets, all partitioned by candidate, in lineage order:

``candidate`` -> ``stage1_validation`` -> ``stage2_canary`` -> ``canary_acceptance`` ->
``promotion_approval`` -> ``stage3_promotion``.

Each asset calls one lifecycle service and materializes what it recorded: the stage-result document
(redacted), the ledger seq and hash. A failed (or rolled-back) stage does not materialize: its document
is an observation, its gates (``assets.gates``) are evaluated from it in the run (red where they
failed), and the step fails, so the partition shows Failed. Across runs the ledger decides: the gate
sensor asks it before requesting the next stage.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.candidates import (
    GROUP,
    candidate,
    candidates_partitions,
    check_candidate_matches,
    finish_stage,
    ledger_metadata,
    resolve_target,
)
from assets.resources import (
    AppsResource,
    HelmResource,
    KubeResource,
    LedgerResource,
    MetricsResource,
    RegistryResource,
    StateHubResource,
    http_client,
    log_of,
)
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.gates import GatePhase, is_local_check, names_for
from railiance_ledger.domain.identity import Operator
from railiance_ledger.ledger.store import EventStore

# ---------------------------------------------------------------------------------------------- config


class StageConfig(Config):
    """Launchpad config of a stage run (the partition names the candidate)."""

    operator: str = Field(default="", description="Who runs the stage (recorded as actor); empty: 'dagster'.")
    candidate: str = Field(
        default="", description="Optional guard: the partition key or digest you mean to act on."
    )


class PromoteConfig(StageConfig):
    """Launchpad config of a promotion."""

    record_rollback: bool = Field(
        default=False,
        description="Set by ledger_mirror_sensor after a rollback left this candidate: promote nothing; the "
        "run fails with the ledger's rollback reason, so the partition shows Failed (red).",
    )


class ApprovalConfig(Config):
    """Launchpad config of an approval: the human decision, recorded via lifecycle.approvals.approve."""

    operator: str = Field(
        description="The approving operator (must not have registered or deployed the candidate)."
    )
    stage: int = Field(default=3, description="2 (canary) or 3 (promotion).")
    candidate: str = Field(
        default="", description="Optional guard: the partition key or digest you mean to approve."
    )
    window: str = Field(default="", description="Observation window, e.g. 30m; empty: the declared one.")
    rollback_target: str = Field(
        default="", description="REPOSITORY@sha256:... or a manual recovery path; empty: ledger/declared."
    )
    waive: list[str] = Field(
        default_factory=list, description="Gates waived by this approval, as GATE=REASON."
    )
    signature: str = Field(
        default="",
        description=(
            "Armored SSH signature (-----BEGIN SSH SIGNATURE-----) over the record `railiance approve ... "
            "--payload` prints for the same operator, stage, window and target, made with "
            "`ssh-keygen -Y sign -n railiance-ledger@v1`; required when the workload declares allowed "
            "signers."
        ),
    )
    reason: str = Field(
        default="", description="Free text kept with the run (the approval record carries the facts)."
    )


def launchpad_operator(name: str, *, default: str | None = None) -> Operator | None:
    """The operator identity a launchpad ``operator`` field gives, recording whether it was explicit.

    Filled in: explicit. Left empty: ``default`` (the ledger resource's actor for automated runs)
    marked as defaulted, or ``None`` without one (the approvals service then asks for an operator).
    """
    named = name.strip()
    if named:
        return Operator.given(named)
    return Operator.defaulted(default) if default else None


def actor_of(config_operator: str, ledger: LedgerResource) -> str:
    """The actor a stage or rollback run records: the launchpad's operator, else the ledger resource's
    actor."""
    who = launchpad_operator(config_operator, default=ledger.actor)
    return who.name if who is not None else ledger.actor


def _actor(config: StageConfig, ledger: LedgerResource) -> str:
    return actor_of(config.operator, ledger)


def _probe_client(kube: KubeResource, decl: Any) -> Any:
    """The HTTP client of a stage's probes: the production host through ``kube.ingress_url`` when one is
    set."""
    return http_client(ingress_url=kube.resolved_ingress_url(), host=decl.routing.host)


@contextmanager
def _acting(store: EventStore, target: Any, action: str, actor: str) -> Iterator[EventStore]:
    """The ledger for ``action`` on the target's workload (``lifecycle.actions``): the chain verified
    from the checkpoint, no unresolved incomplete rollback, the lease held for the whole call."""
    from railiance_ledger.lifecycle.actions import acting, lease_duration

    decl = target.workload.decl
    with acting(store, decl.workload.name, action, actor, duration=lease_duration(decl, action)) as act:
        yield act.store


def _fail_from(exc: BaseException) -> Failure:
    """A run failure carrying one line for ``exc``: our errors' message (with hint), else type and text."""
    from railiance_ledger.errors import RailianceError

    if isinstance(exc, RailianceError):
        return Failure(description=str(exc))
    return Failure(description=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- assets


@asset(
    partitions_def=candidates_partitions,
    deps=[candidate],
    group_name=GROUP,
    kinds={"python"},
    description=(
        "Stage 1 local validation (lifecycle.stage1.run_stage1): source revision, deterministic artifact, "
        "manifests, secrets by reference, local health, migrations, immutability, observability. The "
        "materialization carries the stage-result document; the gates are this asset's checks."
    ),
)
def stage1_validation(
    context: AssetExecutionContext,
    config: StageConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    helm: HelmResource,
) -> MaterializeResult:
    """Run Stage 1 for the partition's candidate and record the result (pass or fail) in the ledger."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.environment import open_registries
    from railiance_ledger.lifecycle.stage1 import run_stage1

    key = context.partition_key
    with ledger.open() as store:
        target = resolve_target(store, apps, key)
        check_candidate_matches(key, target.digest, config.candidate)
        try:
            with http_client() as http, open_registries() as registries:
                outcome = run_stage1(
                    store=store,
                    app_dir=target.workload.app_dir,
                    operator=_actor(config, ledger),
                    image=target.image,
                    helm=helm.build(),
                    http=http,
                    registries=registries,
                )
        except RailianceError as exc:
            raise _fail_from(exc) from exc
    for line in outcome.human_lines():
        log_of(context).info(line)
    doc = outcome.document or {}
    local = [str(c.get("name")) for c in doc.get("checks") or [] if is_local_check(str(c.get("name")))]
    return finish_stage(
        context,
        ledger_metadata(outcome.document, outcome.events, digest=target.digest, image=target.image),
        outcome.document,
        [*names_for(1), *local],
    )


@asset(
    partitions_def=candidates_partitions,
    deps=[stage1_validation],
    group_name=GROUP,
    kinds={"kubernetes"},
    description=(
        "Stage 2 canary deployment (lifecycle.stage2.deploy_canary): every precheck first, then the canary "
        "release pinned to the digest and its routing, read back. Needs the kube, helm, registry and "
        "metrics resources. Production-critical workloads need a stage 2 approval first."
    ),
)
def stage2_canary(
    context: AssetExecutionContext,
    config: StageConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    kube: KubeResource,
    helm: HelmResource,
    registry: RegistryResource,
    metrics: MetricsResource,
    statehub: StateHubResource,
) -> MaterializeResult:
    """Deploy the partition's candidate as the Stage 2 canary (or record why the prechecks refused)."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.stage2 import deploy_canary

    key = context.partition_key
    try:
        kube_client = kube.build()
    except RailianceError as exc:
        raise Failure(description=f"Stage 2 needs a Kubernetes cluster: {exc}") from exc
    with ledger.open() as store:
        target = resolve_target(store, apps, key)
        check_candidate_matches(key, target.digest, config.candidate)
        try:
            with (
                _acting(store, target, "deploy", _actor(config, ledger)) as leased,
                registry.open() as reg,
                metrics.open() as prom,
                statehub.open() as hub,
                _probe_client(kube, target.workload.decl) as http,
            ):
                outcome = deploy_canary(
                    store=leased,
                    decl=target.workload.decl,
                    operator=_actor(config, ledger),
                    kube=kube_client,
                    helm=helm.build(kubeconfig=kube.kubeconfig_path(), context=kube.context),
                    registry=reg,
                    metrics=prom,
                    http=http,
                    statehub=hub,
                    image=target.image,
                    helm_upgrade_args=helm.resolved_upgrade_args(),
                )
        except RailianceError as exc:
            raise _fail_from(exc) from exc
    for warning in outcome.warnings:
        log_of(context).warning(warning)
    return finish_stage(
        context,
        ledger_metadata(outcome.document, outcome.events, digest=target.digest, image=target.image),
        outcome.document,
        [*names_for(2, GatePhase.PRECHECK), *names_for(2, GatePhase.EVIDENCE)],
    )


@asset(
    partitions_def=candidates_partitions,
    deps=[stage2_canary],
    group_name=GROUP,
    kinds={"prometheus"},
    description=(
        "Stage 2 observation and acceptance (lifecycle.stage2.observe_canary): one canary.sample per "
        "interval over the observation window, immediate rollback on a symptom, then the acceptance gates."
    ),
)
def canary_acceptance(
    context: AssetExecutionContext,
    config: StageConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    kube: KubeResource,
    helm: HelmResource,
    metrics: MetricsResource,
    statehub: StateHubResource,
) -> MaterializeResult:
    """Observe the deployed canary over its window; accept it, reject it, or roll it back."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.stage2 import observe_canary

    key = context.partition_key
    try:
        kube_client = kube.build()
    except RailianceError as exc:
        raise Failure(description=f"Stage 2 observation needs a Kubernetes cluster: {exc}") from exc

    def progress(done: int, expected: int, sample: Any) -> None:
        log_of(context).info(f"{key}: sample {done}/{expected} at {getattr(sample, 'at', '?')}")

    with ledger.open() as store:
        target = resolve_target(store, apps, key)
        check_candidate_matches(key, target.digest, config.candidate)
        try:
            with (
                _acting(store, target, "observe", _actor(config, ledger)) as leased,
                metrics.open() as prom,
                statehub.open() as hub,
                http_client() as http,
            ):
                outcome = observe_canary(
                    store=leased,
                    decl=target.workload.decl,
                    operator=_actor(config, ledger),
                    kube=kube_client,
                    metrics=prom,
                    http=http,
                    helm=helm.build(kubeconfig=kube.kubeconfig_path(), context=kube.context),
                    statehub=hub,
                    image=target.image,
                    on_progress=progress,
                    ingress_url=kube.resolved_ingress_url(),
                )
        except RailianceError as exc:
            raise _fail_from(exc) from exc
    return finish_stage(
        context,
        ledger_metadata(
            outcome.document,
            outcome.events,
            digest=target.digest,
            image=target.image,
            extra={
                "rolled_back": MetadataValue.bool(outcome.rolled_back),
                "samples": MetadataValue.text(f"{outcome.samples}/{outcome.expected_samples}"),
            },
        ),
        {**(outcome.document or {}), "rolled_back": bool(outcome.rolled_back)},
        names_for(2, GatePhase.ACCEPTANCE),
    )


@asset(
    partitions_def=candidates_partitions,
    deps=[canary_acceptance],
    group_name=GROUP,
    kinds={"human"},
    description=(
        "A human approval (lifecycle.approvals.approve) of the candidate, stage 3 by default: the operator, "
        "observation window, rollback target and waived gates, recorded as approval.granted. Same rules as "
        "`railiance approve`: an explicit operator, no self-approval (registrar or deployer), declared "
        "approvers."
    ),
)
def promotion_approval(
    context: AssetExecutionContext,
    config: ApprovalConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    statehub: StateHubResource,
) -> MaterializeResult:
    """Record the operator's approval of the partition's candidate; the run fails with the refusal
    otherwise."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.approvals import approve

    key = context.partition_key
    waived: dict[str, str] = {}
    for item in config.waive:
        gate, sep, why = item.partition("=")
        if not sep:
            raise Failure(description=f"waive entry {item!r} is not GATE=REASON")
        waived[gate.strip()] = why.strip()
    with ledger.open() as store:
        target = resolve_target(store, apps, key)
        check_candidate_matches(key, target.digest, config.candidate)
        try:
            with (
                _acting(store, target, "approve", config.operator or ledger.actor) as leased,
                statehub.open() as hub,
            ):
                event = approve(
                    store=leased,
                    decl=target.workload.decl,
                    operator=launchpad_operator(config.operator),
                    stage=config.stage,
                    image=target.image,
                    window=config.window or None,
                    rollback_target=config.rollback_target or None,
                    waived_gates=waived or None,
                    statehub=hub,
                    signature=config.signature or None,
                )
        except RailianceError as exc:
            raise _fail_from(exc) from exc
    signed = event.payload.get("signature") or {}
    appended: list[RecordedEvent] = [event]
    if event.note is not None and event.note.record is not None:
        appended.append(event.note.record)
    for warning in event.warnings:
        log_of(context).warning(warning)
    log_of(context).info(
        f"{key}: stage {config.stage} approved by {event.actor} (event {event.event_id}, seq {event.seq})"
    )
    return MaterializeResult(
        metadata=ledger_metadata(
            {**event.payload, "status": "approved", "ledger": {"seq": event.seq, "hash": event.hash}},
            appended,
            digest=target.digest,
            image=target.image,
            extra={
                "operator": MetadataValue.text(event.actor),
                "signed_by": MetadataValue.text(
                    str(signed["principal"]) if signed else "unsigned (the typed operator name only)"
                ),
                "signing_key_sha256": MetadataValue.text(str(signed.get("key_sha256", "")) or "none"),
                "stage": MetadataValue.int(config.stage),
                "approval_event": MetadataValue.text(event.event_id),
            },
        )
    )


@asset(
    partitions_def=candidates_partitions,
    deps=[promotion_approval],
    group_name=GROUP,
    kinds={"kubernetes"},
    description=(
        "Stage 3 production promotion (lifecycle.stage3.promote): every precheck first, then the stable "
        "release replaced by the candidate pinned by digest, routing read back, smoke checks, automatic "
        "rollback on failure. The materialization carries the result and the workload's lineage (rollback "
        "target, as `railiance lineage`)."
    ),
)
def stage3_promotion(
    context: AssetExecutionContext,
    config: PromoteConfig,
    ledger: LedgerResource,
    apps: AppsResource,
    kube: KubeResource,
    helm: HelmResource,
    statehub: StateHubResource,
) -> MaterializeResult:
    """Promote the partition's candidate to production (or record why the prechecks refused)."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.ledger.projections import lineage
    from railiance_ledger.lifecycle.stage3 import promote

    key = context.partition_key
    if config.record_rollback:
        record_rollback(context, ledger, key)
    try:
        kube_client = kube.build()
    except RailianceError as exc:
        raise Failure(description=f"Stage 3 needs a Kubernetes cluster: {exc}") from exc
    with ledger.open() as store:
        target = resolve_target(store, apps, key)
        check_candidate_matches(key, target.digest, config.candidate)
        try:
            with (
                _acting(store, target, "promote", _actor(config, ledger)) as leased,
                statehub.open() as hub,
                _probe_client(kube, target.workload.decl) as http,
            ):
                outcome = promote(
                    store=leased,
                    decl=target.workload.decl,
                    operator=_actor(config, ledger),
                    kube=kube_client,
                    helm=helm.build(kubeconfig=kube.kubeconfig_path(), context=kube.context),
                    http=http,
                    statehub=hub,
                    image=target.image,
                    helm_upgrade_args=helm.resolved_upgrade_args(),
                )
        except RailianceError as exc:
            raise _fail_from(exc) from exc
        lin = lineage(store, target.workload.name).as_dict()
    for warning in outcome.warnings:
        log_of(context).warning(warning)
    return finish_stage(
        context,
        ledger_metadata(
            outcome.document,
            outcome.events,
            digest=target.digest,
            image=target.image,
            extra={
                "lineage": lin,
                "rollback_target": lin.get("rollback_target") or {},
                "rolled_back": MetadataValue.bool(bool(outcome.rolled_back)),
            },
        ),
        {**(outcome.document or {}), "rolled_back": bool(outcome.rolled_back)},
        [*names_for(3, GatePhase.PRECHECK), *names_for(3, GatePhase.PROMOTION)],
    )


def record_rollback(context: AssetExecutionContext, ledger: LedgerResource, key: str) -> None:
    """The rollback verdict of a promoted candidate: fail the step with the ledger's rollback reason (and
    log ``not_rolled_back`` red), so the partition is Failed; without a rollback, refuse to promote."""
    from assets.candidates import resolve_digest, rollback_evaluation, rollback_of, workload_of

    with ledger.open() as store:
        digest = resolve_digest(store, key)
        found = rollback_of(store.read_candidate(workload_of(key), digest), digest, 3)
    if found is None:
        raise Failure(description=f"record_rollback: no rollback left {key} in the ledger; nothing promoted")
    context.log_event(rollback_evaluation(context.asset_key, key, found))
    reason = found.payload.get("reason") or found.payload.get("symptom") or "no reason recorded"
    raise Failure(
        description=f"{key} was rolled back by {found.actor} at {found.recorded_at}: {reason}",
        metadata={"reason": str(reason), "operator": found.actor, "recorded_at": found.recorded_at},
    )


STAGE_ASSETS = [stage1_validation, stage2_canary, canary_acceptance, promotion_approval, stage3_promotion]
