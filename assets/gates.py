"""The gates of the stage assets: one blocking, partitioned ``@asset_check`` per gate of the catalogue.

Each stage asset carries the gates ``domain.gates`` lists for its stage and phase, under their
stable check names and in report order: ``stage1_validation`` every Stage 1 gate, ``stage2_canary``
the Stage 2 prechecks and ``canary_applied``, ``canary_acceptance`` the acceptance gates,
``stage3_promotion`` the Stage 3 prechecks and promotion checks; ``promotion_approval`` carries
``approval_in_force``. A gate re-reads the ledger: its status and reason are the ones the latest
stage-result document of the candidate reports, and a missing result or check fails closed.
"""

from collections.abc import Callable, Sequence
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.candidates import (
    NOT_ROLLED_BACK,
    candidates_partitions,
    check_name_of,
    resolve_digest,
    rollback_of,
    workload_of,
)
from assets.resources import LedgerResource
from assets.stages import (
    canary_acceptance,
    promotion_approval,
    stage1_validation,
    stage2_canary,
    stage3_promotion,
)
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.gates import Gate, GatePhase, names_for, sample_gate_names

CANARY_APPLIED = Gate.CANARY_APPLIED.value
"""The Stage 2 deploy gate after the prechecks: the canary release and its routing were applied and read
back (a ``stage.started`` with phase ``deployed``), else the failed apply's reason."""

# The asset checks of each stage asset, from the gate catalogue (``domain.gates``), in report order.
STAGE1_CHECKS = names_for(1)
"""``stage1_validation``: every Stage 1 gate."""
STAGE2_PRECHECKS = names_for(2, GatePhase.PRECHECK)
"""``stage2_canary``: the Stage 2 prechecks (before anything is applied)."""
STAGE2_DEPLOY_CHECKS = (*STAGE2_PRECHECKS, *names_for(2, GatePhase.EVIDENCE))
"""``stage2_canary``: the prechecks, then the deploy evidence (``canary_applied``)."""
ACCEPTANCE_CHECKS = names_for(2, GatePhase.ACCEPTANCE)
"""``canary_acceptance``: the end-of-window acceptance gates."""
SAMPLE_CHECKS = sample_gate_names()
"""The acceptance gates judged from the window's samples: a result reporting one is an acceptance result."""
STAGE3_CHECKS = (*names_for(3, GatePhase.PRECHECK), *names_for(3, GatePhase.PROMOTION))
"""``stage3_promotion``: the Stage 3 prechecks, then the promotion checks."""


DocFinder = Callable[[Sequence[RecordedEvent], str, str], tuple[dict[str, Any], RecordedEvent] | None]


def _checks_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("name")): c for c in doc.get("checks") or [] if isinstance(c, dict)}


def _stage1_doc(
    history: Sequence[RecordedEvent], digest: str, _name: str
) -> tuple[dict[str, Any], RecordedEvent] | None:
    """The latest Stage 1 stage-result document of ``digest`` (whatever it reports)."""
    for ev in reversed(history):
        if ev.candidate == digest and ev.kind == "stage.completed" and ev.stage == 1:
            return ev.payload, ev
    return None


def _canary_doc(
    history: Sequence[RecordedEvent], digest: str, name: str
) -> tuple[dict[str, Any], RecordedEvent] | None:
    """The latest Stage 2 deploy decision: a deploy's prechecks (and ``canary_applied`` from its record),
    or a refusal or failed apply (the stage.completed that reports the prechecks)."""
    outcome: dict[str, Any] | None = None  # the deploy's recorded outcome (after its intent)
    for ev in reversed(history):
        if ev.candidate != digest or ev.stage != 2:
            continue
        if ev.kind == "routing.changed" and isinstance(ev.payload.get("deployed"), dict):
            outcome = outcome or dict(ev.payload["deployed"])
        if ev.kind == "stage.started":
            release = ev.payload.get("release") or {}
            deployed = ev.payload.get("phase") == "deployed" or outcome is not None
            revision = release.get("revision") or (outcome or {}).get("revision")
            phase = "deployed" if deployed else ev.payload.get("phase")
            applied = {
                "name": CANARY_APPLIED,
                "status": "pass" if deployed else "fail",
                "reason": f"release {release.get('name')} revision {revision} in "
                f"{release.get('namespace')} (phase {phase}); routing "
                f"{', '.join(ev.payload.get('routing_objects') or []) or 'none'}",
            }
            return {"checks": [*(ev.payload.get("prechecks") or []), applied], "status": "pass"}, ev
        if ev.kind == "stage.completed" and set(_checks_of(ev.payload)) & set(STAGE2_PRECHECKS):
            return ev.payload, ev
    return None


def _acceptance_doc(
    history: Sequence[RecordedEvent], digest: str, name: str
) -> tuple[dict[str, Any], RecordedEvent] | None:
    """The latest Stage 2 acceptance document (a stage.completed that reports the acceptance gates)."""
    for ev in reversed(history):
        if (
            ev.candidate == digest
            and ev.kind == "stage.completed"
            and ev.stage == 2
            and set(_checks_of(ev.payload)) & set(SAMPLE_CHECKS)
        ):
            return ev.payload, ev
    return None


def _stage3_doc(
    history: Sequence[RecordedEvent], digest: str, _name: str
) -> tuple[dict[str, Any], RecordedEvent] | None:
    """The latest Stage 3 stage-result document of ``digest``."""
    for ev in reversed(history):
        if ev.candidate == digest and ev.kind == "stage.completed" and ev.stage == 3:
            return ev.payload, ev
    return None


def _gate_check(asset_def: Any, name: str, stage_label: str, find: DocFinder) -> AssetChecksDefinition:
    @asset_check(
        asset=asset_def,
        name=check_name_of(name),
        partitions_def=candidates_partitions,
        blocking=True,
        description=f"{stage_label} gate `{name}`: its status and reason in the latest stage-result document "
        "for this candidate in the ledger (no result, or the check missing, fails closed).",
    )
    def _check(context: AssetCheckExecutionContext, ledger: LedgerResource) -> AssetCheckResult:
        key = context.op_execution_context.partition_key
        with ledger.open() as store:
            digest = resolve_digest(store, key)
            history = store.read_candidate(workload_of(key), digest)
        return gate_result(name, find(history, digest, name), stage_label)

    return _check


def gate_result(
    name: str, found: tuple[dict[str, Any], RecordedEvent] | None, stage_label: str
) -> AssetCheckResult:
    """The check result for ``name`` from a stage-result document (pass and waived pass; all else fails)."""
    from railiance_ledger.domain.redaction import redact, redact_value

    if found is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"no {stage_label} result for this candidate in the ledger",
            metadata={"status": "missing"},
        )
    doc, ev = found
    entry = _checks_of(doc).get(name)
    if entry is None:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"the {stage_label} result at ledger seq {ev.seq} does not report {name}",
            metadata={"status": "missing", "ledger_seq": ev.seq},
        )
    status = str(entry.get("status"))
    reason = redact(str(entry.get("reason") or ""))
    meta: dict[str, Any] = {
        "status": MetadataValue.text(status),
        "reason": MetadataValue.text(reason),
        "ledger_seq": MetadataValue.int(ev.seq),
        "ledger_hash": MetadataValue.text(ev.hash),
    }
    if entry.get("failure"):
        meta["failure"] = MetadataValue.text(str(entry["failure"]))
    if entry.get("waiver"):
        meta["waiver"] = MetadataValue.text(str(entry["waiver"]))
    if entry.get("evidence"):
        meta["evidence"] = MetadataValue.json(redact_value(entry["evidence"]))
    return AssetCheckResult(
        passed=status in ("pass", "waived"),
        severity=AssetCheckSeverity.ERROR,
        description=f"{status}: {reason}",
        metadata=meta,
    )


@asset_check(
    asset=promotion_approval,
    name="approval_in_force",
    partitions_def=candidates_partitions,
    blocking=True,
    description=(
        "The approval this asset records is in force in the ledger (granted, not revoked since): for the "
        "stage of the candidate's latest approval.granted (stage 3 when there is none)."
    ),
)
def approval_in_force(context: AssetCheckExecutionContext, ledger: LedgerResource) -> AssetCheckResult:
    """Pass when the latest approval decision of this digest, for the stage it was last granted for, is a
    grant.

    The check cannot see the run's config, so it judges the stage the ledger last recorded a grant for: a
    stage 2 approval run is judged on stage 2 (not failed for a stage 3 approval nobody asked for).
    """
    from railiance_ledger.lifecycle.approvals import candidate_state, state_of

    key = context.op_execution_context.partition_key
    with ledger.open() as store:
        workload, digest = workload_of(key), resolve_digest(store, key)
        folded = candidate_state(store, workload, digest)
    granted = [g.stage for g in folded.grants if g.stage in (2, 3)]
    stage = int(granted[-1]) if granted and granted[-1] else 3
    state = state_of(folded, workload, stage)
    if state.granted:
        why = f"stage {stage} approved by {state.operator} at {state.granted_at} (event {state.approval_id})"
    elif state.revoked:
        why = (
            f"stage {stage} approval revoked by {state.revoked_by} at {state.revoked_at}: "
            f"{state.revocation_reason}"
        )
    else:
        why = f"no stage {stage} approval recorded"
    return AssetCheckResult(
        passed=state.granted,
        severity=AssetCheckSeverity.ERROR,
        description=why,
        metadata={"approval": MetadataValue.json(state.as_dict()), "stage": MetadataValue.int(stage)},
    )


def rolled_back_result(found: RecordedEvent | None, stage: int) -> AssetCheckResult:
    """Red with the rollback's reason when ``found``; green otherwise."""
    from railiance_ledger.domain.redaction import redact

    if found is None:
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.ERROR,
            description=f"no rollback has left this candidate at stage {stage}",
        )
    reason = redact(str(found.payload.get("reason") or found.payload.get("symptom") or "no reason recorded"))
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        description=f"rolled back by {found.actor} at {found.recorded_at}: {reason}",
        metadata={
            "reason": MetadataValue.text(reason),
            "operator": MetadataValue.text(found.actor),
            "recorded_at": MetadataValue.text(found.recorded_at),
            "final_stable": MetadataValue.text(str(found.payload.get("final_stable") or "none")),
            "ledger_seq": MetadataValue.int(found.seq),
        },
    )


def _rollback_check(asset_def: Any, stage: int) -> AssetChecksDefinition:
    @asset_check(
        asset=asset_def,
        name=NOT_ROLLED_BACK,
        partitions_def=candidates_partitions,
        blocking=False,
        description=f"Red when a rollback.completed in the ledger left this candidate at stage {stage} "
        "(with the rollback's reason): a rolled-back stage is never a green success.",
    )
    def _check(context: AssetCheckExecutionContext, ledger: LedgerResource) -> AssetCheckResult:
        key = context.op_execution_context.partition_key
        with ledger.open() as store:
            digest = resolve_digest(store, key)
            history = store.read_candidate(workload_of(key), digest)
        return rolled_back_result(rollback_of(history, digest, stage), stage)

    return _check


def local_check_gates(names: Sequence[str]) -> list[AssetChecksDefinition]:
    """One ``stage1_validation`` check per declared local check (``local_check:unit`` ->
    ``local_check_unit``), judged from the Stage 1 document like the catalogue's gates."""
    return [_gate_check(stage1_validation, n, "Stage 1", _stage1_doc) for n in sorted(set(names))]


STAGE1_GATES = [_gate_check(stage1_validation, n, "Stage 1", _stage1_doc) for n in STAGE1_CHECKS]
STAGE2_GATES = [_gate_check(stage2_canary, n, "Stage 2 deploy", _canary_doc) for n in STAGE2_DEPLOY_CHECKS]
ACCEPTANCE_GATES = [
    _gate_check(canary_acceptance, n, "Stage 2 acceptance", _acceptance_doc) for n in ACCEPTANCE_CHECKS
]
STAGE3_GATES = [_gate_check(stage3_promotion, n, "Stage 3", _stage3_doc) for n in STAGE3_CHECKS]
GATES: list[AssetChecksDefinition] = [
    *STAGE1_GATES,
    *STAGE2_GATES,
    *ACCEPTANCE_GATES,
    approval_in_force,
    *STAGE3_GATES,
    _rollback_check(stage2_canary, 2),
    _rollback_check(stage3_promotion, 3),
]
