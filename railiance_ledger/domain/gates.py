"""The gate catalogue: every check a stage result can report, in one place.

Each ``Gate`` member is a stable check name (the ``name`` of a check in the stage-result document)
with its stage, its phase, whether a recorded waiver may turn its failure into ``waived``, and a
one-line summary. Every per-stage list (Stage 1's required checks, the Stage 2 prechecks and
acceptance gates, the Stage 3 prechecks and promotion checks), the waiver rules, the Dagster asset
checks and the docs tables derive from this module; nothing else keeps its own list.

The member order is the order checks are reported in within one phase: ``gates_for(stage, phase)``
keeps it. One gate, ``operator_approval``, is judged twice in Stage 2 (as the last precheck and
again at the end of the window), so it belongs to two phases.

Stage 1 also reports one ``local_check:<name>`` check per declared ``[[local_checks]]`` command;
those names are open-ended, so they are not members, but ``is_waivable`` and ``stage_of`` know them.
Stage 2 likewise reports one ``acceptance:<name>`` acceptance gate per declared ``[[acceptance]]``
check, run against the live canary at the end of the window (waivable).

``CandidatePhase`` is where a candidate stands in the lifecycle (its fate), as the candidate-state
fold computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ACCEPTANCE_PREFIX",
    "CATALOGUE",
    "LOCAL_CHECK_PREFIX",
    "CandidatePhase",
    "Gate",
    "GateInfo",
    "GatePhase",
    "gates_for",
    "info",
    "is_acceptance_check",
    "is_gate",
    "is_local_check",
    "is_waivable",
    "markdown_table",
    "names_for",
    "non_waivable",
    "sample_gate_names",
    "stage_of",
    "summary",
    "waivable_gates",
]

LOCAL_CHECK_PREFIX = "local_check:"
"""Stage 1 reports each declared local check as ``local_check:<name>`` (waivable)."""

ACCEPTANCE_PREFIX = "acceptance:"
"""Stage 2 reports each declared ``[[acceptance]]`` check as ``acceptance:<name>`` (waivable)."""


class GatePhase(StrEnum):
    """When in its stage a gate is judged."""

    PRECHECK = "precheck"
    """Before anything is applied: a failed precheck stops the stage with nothing changed."""
    EVIDENCE = "evidence"
    """While the stage acts or observes: judged from the evidence the stage collected."""
    ACCEPTANCE = "acceptance"
    """At the end of the observation window: the verdict on the canary."""
    PROMOTION = "promotion"
    """After the production change was attempted: did the promotion take and hold."""


class Gate(StrEnum):
    """Every stable check name a stage result reports (see ``info`` for stage, phase, waivable)."""

    # Stage 1, local validation (evidence gathered from the source tree and a local run)
    SOURCE_REVISION_IDENTIFIED = "source_revision_identified"
    ARTIFACT_DETERMINISTIC = "artifact_deterministic"
    CANDIDATE_IMMUTABLE = "candidate_immutable"
    MANIFESTS_VALID = "manifests_valid"
    SECRETS_BY_REFERENCE = "secrets_by_reference"
    LOCAL_HEALTH = "local_health"
    MIGRATIONS_CLASSIFIED = "migrations_classified"
    OBSERVABILITY_DECLARED = "observability_declared"
    ARTIFACT_TRACEABLE = "artifact_traceable"

    # Stage 2 prechecks, in the order they run
    CANARY_FORM_DECLARED = "canary_form_declared"
    CANARY_DISTINGUISHABLE = "canary_distinguishable"
    STAGE1_PASSED = "stage1_passed"
    CLUSTER_READY = "cluster_ready"
    DIGEST_IN_REGISTRY = "digest_in_registry"
    SERVER_DRY_RUN = "server_dry_run"
    ROUTING_PREREQUISITES = "routing_prerequisites"
    DEPENDENCIES_HEALTHY = "dependencies_healthy"
    ROLLBACK_TARGET_KNOWN = "rollback_target_known"
    MONITORING_AVAILABLE = "monitoring_available"
    DECLARED_REFERENCES = "declared_references"
    OBSERVATION_WINDOW = "observation_window"

    # Stage 2 evidence while deploying and observing
    CANARY_APPLIED = "canary_applied"
    IMMEDIATE_ROLLBACK = "immediate_rollback"

    # Stage 2 acceptance, at the end of the window, in report order
    CANARY_PODS_READY = "canary_pods_ready"
    CANARY_PODS_STABLE = "canary_pods_stable"
    CANARY_HEALTH = "canary_health"
    CANARY_ERROR_RATE = "canary_error_rate"
    CANARY_LATENCY = "canary_latency"
    CANARY_SATURATION = "canary_saturation"
    CANARY_STATISTICAL_COMPARISON = "canary_statistical_comparison"
    CANARY_ROUTING = "canary_routing"
    CANARY_SIDE_EFFECTS = "canary_side_effects"
    CANARY_LOGS_CLEAN = "canary_logs_clean"
    ROLLBACK_READY = "rollback_ready"
    CANARY_RELEASE_IDENTITY = "canary_release_identity"
    OPERATOR_APPROVAL = "operator_approval"
    STATEHUB_NOTE = "statehub_note"

    # Stage 3 prechecks, in the order they run
    STAGE2_ACCEPTED = "stage2_accepted"
    PREVIOUS_STABLE_RECORDED = "previous_stable_recorded"
    BACKUP_POSTURE_CURRENT = "backup_posture_current"
    MIGRATIONS_APPROVED = "migrations_approved"
    HUMAN_APPROVAL = "human_approval"
    ROLLBACK_AVAILABLE = "rollback_available"
    STATEHUB_CONFIGURED = "statehub_configured"

    # Stage 3 after the production change
    PROMOTION_APPLIED = "promotion_applied"
    STABLE_ROUTING_POINTS_AT_CANDIDATE = "stable_routing_points_at_candidate"
    POST_PROMOTION_SMOKE = "post_promotion_smoke"
    AUTOMATIC_ROLLBACK = "automatic_rollback"


@dataclass(frozen=True)
class GateInfo:
    """What the catalogue knows about one gate."""

    gate: Gate
    stage: int
    phases: tuple[GatePhase, ...]
    """The phases it is judged in; the first is its own phase."""
    waivable: bool
    """True when a recorded waiver for it turns its failure into ``waived``."""
    summary: str
    conditional: bool = False
    """True for gates reported only when something went wrong (not in every result of the phase)."""
    waiver_name: str = ""
    """The gate name a waiver must carry to waive it (itself unless said otherwise)."""
    from_samples: bool = False
    """True for the canary gates judged from the observation window's samples (``domain.canary``)."""

    @property
    def phase(self) -> GatePhase:
        """The phase it belongs to."""
        return self.phases[0]


_P, _E, _A, _PR = GatePhase.PRECHECK, GatePhase.EVIDENCE, GatePhase.ACCEPTANCE, GatePhase.PROMOTION


def _rows() -> dict[Gate, GateInfo]:
    stage1_non_waivable = {
        Gate.SECRETS_BY_REFERENCE,  # "generated manifests contain plaintext secrets" fails closed
        Gate.CANDIDATE_IMMUTABLE,  # without a digest there is nothing a waiver could name
        Gate.ARTIFACT_DETERMINISTIC,  # "the artifact cannot be traced to source" fails closed
        Gate.OBSERVABILITY_DECLARED,  # "cannot state how it will be observed in Stage 2" fails closed
    }
    stage1 = [
        Gate.SOURCE_REVISION_IDENTIFIED,
        Gate.ARTIFACT_DETERMINISTIC,
        Gate.CANDIDATE_IMMUTABLE,
        Gate.MANIFESTS_VALID,
        Gate.SECRETS_BY_REFERENCE,
        Gate.LOCAL_HEALTH,
        Gate.MIGRATIONS_CLASSIFIED,
        Gate.OBSERVABILITY_DECLARED,
        Gate.ARTIFACT_TRACEABLE,  # the image's revision label (issue 12 item 6): waivable
    ]
    # Stage 2 waivable: the spec's "explicitly degraded with operator approval" dependencies, the
    # production-critical window "unless explicitly waived", and every end-of-window acceptance gate
    # and required evidence ("any required evidence is missing and no operator waiver is recorded").
    stage2_waivable = {
        Gate.DEPENDENCIES_HEALTHY,
        Gate.OBSERVATION_WINDOW,
        Gate.CANARY_PODS_READY,
        Gate.CANARY_PODS_STABLE,
        Gate.CANARY_HEALTH,
        Gate.CANARY_ERROR_RATE,
        Gate.CANARY_LATENCY,
        Gate.CANARY_SATURATION,
        Gate.CANARY_STATISTICAL_COMPARISON,
        Gate.CANARY_ROUTING,
        Gate.CANARY_SIDE_EFFECTS,
        Gate.CANARY_LOGS_CLEAN,
        Gate.ROLLBACK_READY,
        Gate.CANARY_RELEASE_IDENTITY,
        Gate.STATEHUB_NOTE,
    }
    stage2_prechecks = [
        Gate.CANARY_FORM_DECLARED,
        Gate.CANARY_DISTINGUISHABLE,
        Gate.STAGE1_PASSED,
        Gate.CLUSTER_READY,
        Gate.DIGEST_IN_REGISTRY,
        Gate.SERVER_DRY_RUN,
        Gate.ROUTING_PREREQUISITES,
        Gate.DEPENDENCIES_HEALTHY,
        Gate.ROLLBACK_TARGET_KNOWN,
        Gate.MONITORING_AVAILABLE,
        Gate.DECLARED_REFERENCES,
        Gate.OBSERVATION_WINDOW,
    ]
    canary_samples = {
        Gate.CANARY_PODS_READY,
        Gate.CANARY_PODS_STABLE,
        Gate.CANARY_HEALTH,
        Gate.CANARY_ERROR_RATE,
        Gate.CANARY_LATENCY,
        Gate.CANARY_SATURATION,
        Gate.CANARY_STATISTICAL_COMPARISON,
        Gate.CANARY_ROUTING,
        Gate.CANARY_SIDE_EFFECTS,
        Gate.CANARY_LOGS_CLEAN,
        Gate.ROLLBACK_READY,
    }
    stage2_acceptance = [
        Gate.CANARY_PODS_READY,
        Gate.CANARY_PODS_STABLE,
        Gate.CANARY_HEALTH,
        Gate.CANARY_ERROR_RATE,
        Gate.CANARY_LATENCY,
        Gate.CANARY_SATURATION,
        Gate.CANARY_STATISTICAL_COMPARISON,
        Gate.CANARY_ROUTING,
        Gate.CANARY_SIDE_EFFECTS,
        Gate.CANARY_LOGS_CLEAN,
        Gate.ROLLBACK_READY,
        Gate.CANARY_RELEASE_IDENTITY,
        Gate.STATEHUB_NOTE,
    ]
    stage3_prechecks = [
        Gate.STAGE2_ACCEPTED,
        Gate.PREVIOUS_STABLE_RECORDED,
        Gate.BACKUP_POSTURE_CURRENT,
        Gate.MIGRATIONS_APPROVED,
        Gate.HUMAN_APPROVAL,
        Gate.ROLLBACK_AVAILABLE,
    ]
    rows: dict[Gate, GateInfo] = {}

    def add(
        gate: Gate,
        stage: int,
        phases: tuple[GatePhase, ...],
        waivable: bool,
        *,
        conditional: bool = False,
        waiver_name: str = "",
        from_samples: bool = False,
    ) -> None:
        rows[gate] = GateInfo(
            gate,
            stage,
            phases,
            waivable,
            _SUMMARY[gate],
            conditional=conditional,
            waiver_name=waiver_name or gate.value,
            from_samples=from_samples,
        )

    for g in stage1:
        add(g, 1, (_E,), g not in stage1_non_waivable)
    for g in stage2_prechecks:
        add(g, 2, (_P,), g in stage2_waivable)
    add(Gate.OPERATOR_APPROVAL, 2, (_P, _A), False)
    add(Gate.CANARY_APPLIED, 2, (_E,), False)
    add(Gate.IMMEDIATE_ROLLBACK, 2, (_E,), False, conditional=True)
    for g in stage2_acceptance:
        add(g, 2, (_A,), g in stage2_waivable, from_samples=g in canary_samples)
    for g in stage3_prechecks:
        add(g, 3, (_P,), False)
    add(Gate.STATEHUB_CONFIGURED, 3, (_P,), True, waiver_name=Gate.STATEHUB_NOTE.value)
    for g in (Gate.PROMOTION_APPLIED, Gate.STABLE_ROUTING_POINTS_AT_CANDIDATE, Gate.POST_PROMOTION_SMOKE):
        add(g, 3, (_PR,), False)
    add(Gate.AUTOMATIC_ROLLBACK, 3, (_PR,), False, conditional=True)
    missing = set(Gate) - set(rows)
    if missing:  # pragma: no cover - a catalogue edit that forgot a row
        raise AssertionError(f"gates without a catalogue row: {sorted(missing)}")
    return {g: rows[g] for g in Gate}  # member order is report order


_SUMMARY: dict[Gate, str] = {  # one line per gate: what it means when it passes
    Gate.SOURCE_REVISION_IDENTIFIED: "the candidate names the git revision it was built from",
    Gate.ARTIFACT_DETERMINISTIC: "the artifact can be traced to source",
    Gate.CANDIDATE_IMMUTABLE: "the candidate is named by an immutable digest",
    Gate.MANIFESTS_VALID: "the declared manifests or chart render and validate",
    Gate.SECRETS_BY_REFERENCE: "generated manifests reference secrets and contain none in plaintext",
    Gate.LOCAL_HEALTH: "the workload starts locally and answers its health check",
    Gate.MIGRATIONS_CLASSIFIED: "database migrations are classified",
    Gate.OBSERVABILITY_DECLARED: "the workload states how it will be observed in Stage 2",
    Gate.ARTIFACT_TRACEABLE: "the image's revision label traces it to the source revision (revision_policy)",
    Gate.CANARY_FORM_DECLARED: "the declaration names a canary form Stage 2 can build",
    Gate.CANARY_DISTINGUISHABLE: "canary traffic and pods can be told apart from stable",
    Gate.STAGE1_PASSED: "Stage 1 passed for the same digest (or an emergency exception skips it)",
    Gate.CLUSTER_READY: "the target namespace exists and is ready",
    Gate.DIGEST_IN_REGISTRY: "the registry serves the candidate's digest",
    Gate.SERVER_DRY_RUN: "the canary manifests pass a server-side dry run",
    Gate.ROUTING_PREREQUISITES: "the routing objects the canary form needs exist",
    Gate.DEPENDENCIES_HEALTHY: "declared platform dependencies are healthy",
    Gate.ROLLBACK_TARGET_KNOWN: "a rollback target is known before the canary is applied",
    Gate.MONITORING_AVAILABLE: "the canary's (or stable's) selector returns series; the log source answers",
    Gate.DECLARED_REFERENCES: "every secret and config the declaration references exists",
    Gate.OBSERVATION_WINDOW: "the observation window meets the minimum",
    Gate.CANARY_APPLIED: "the canary release was applied and rolled out",
    Gate.IMMEDIATE_ROLLBACK: "an immediate-rollback condition ended the window early",
    Gate.CANARY_PODS_READY: "every canary pod became ready",
    Gate.CANARY_PODS_STABLE: "canary pods did not restart or crash during the window",
    Gate.CANARY_HEALTH: "the canary answered its health endpoint throughout the window",
    Gate.CANARY_ERROR_RATE: "the canary's error rate stayed within its threshold",
    Gate.CANARY_LATENCY: "the canary's latency stayed within its threshold",
    Gate.CANARY_SATURATION: "the canary's resource saturation stayed within its threshold",
    Gate.CANARY_STATISTICAL_COMPARISON: "canary and stable distributions do not differ significantly",
    Gate.CANARY_ROUTING: "routing sent the canary the intended share of traffic and no more",
    Gate.CANARY_SIDE_EFFECTS: "no declared side-effect signal fired",
    Gate.CANARY_LOGS_CLEAN: "canary logs carry no error patterns",
    Gate.ROLLBACK_READY: "the rollback target is still available at the end of the window",
    Gate.CANARY_RELEASE_IDENTITY: "the recorded canary release is still what is deployed",
    Gate.OPERATOR_APPROVAL: "a required operator approval is in force",
    Gate.STATEHUB_NOTE: "the Stage 2 progress note reached State Hub",
    Gate.STAGE2_ACCEPTED: "Stage 2 accepted the same digest (or an emergency exception skips it)",
    Gate.PREVIOUS_STABLE_RECORDED: "the previous stable version is recorded as the rollback target",
    Gate.BACKUP_POSTURE_CURRENT: "the declared backup is recent enough",
    Gate.MIGRATIONS_APPROVED: "migrations that require approval have one",
    Gate.HUMAN_APPROVAL: "a human approval for Stage 3 is in force",
    Gate.ROLLBACK_AVAILABLE: "production can be rolled back to the previous stable",
    Gate.STATEHUB_CONFIGURED: "the required State Hub note has somewhere to go",
    Gate.PROMOTION_APPLIED: "the promotion was applied to production",
    Gate.STABLE_ROUTING_POINTS_AT_CANDIDATE: "stable routing reads back as pointing at the candidate",
    Gate.POST_PROMOTION_SMOKE: "the post-promotion smoke check passed",
    Gate.AUTOMATIC_ROLLBACK: "a failed promotion was (or could not be) rolled back automatically",
}

CATALOGUE: dict[Gate, GateInfo] = _rows()
"""Every gate's row, in report order."""


_VALUES = frozenset(g.value for g in Gate)


def info(name: str | Gate) -> GateInfo:
    """The catalogue row of gate ``name``; ``ValueError`` when it is not a gate."""
    return CATALOGUE[Gate(name)]


def is_gate(name: str) -> bool:
    """True when ``name`` is a catalogued gate, a Stage 1 ``local_check:<name>`` or a Stage 2
    ``acceptance:<name>``."""
    return name in _VALUES or is_local_check(name) or is_acceptance_check(name)


def is_local_check(name: str) -> bool:
    """True for Stage 1's per-declaration ``local_check:<name>`` checks."""
    return name.startswith(LOCAL_CHECK_PREFIX) and len(name) > len(LOCAL_CHECK_PREFIX)


def is_acceptance_check(name: str) -> bool:
    """True for Stage 2's per-declaration ``acceptance:<name>`` gates."""
    return name.startswith(ACCEPTANCE_PREFIX) and len(name) > len(ACCEPTANCE_PREFIX)


def gates_for(stage: int, phase: GatePhase | None = None, *, conditional: bool = False) -> tuple[Gate, ...]:
    """The gates of ``stage`` (in ``phase`` when given), in report order.

    Conditional gates (reported only when something went wrong: ``immediate_rollback``,
    ``automatic_rollback``) are left out unless ``conditional`` is True.
    """
    return tuple(
        row.gate
        for row in CATALOGUE.values()
        if row.stage == stage
        and (phase is None or phase in row.phases)
        and (conditional or not row.conditional)
    )


def names_for(stage: int, phase: GatePhase | None = None, *, conditional: bool = False) -> tuple[str, ...]:
    """``gates_for`` as plain strings: the check names as stage-result documents carry them."""
    return tuple(g.value for g in gates_for(stage, phase, conditional=conditional))


def sample_gate_names() -> tuple[str, ...]:
    """The Stage 2 acceptance gates ``domain.canary`` judges from the window's samples, in order."""
    return tuple(g.value for g in gates_for(2, GatePhase.ACCEPTANCE) if CATALOGUE[g].from_samples)


def stage_of(name: str) -> int | None:
    """The stage gate ``name`` belongs to (1 for ``local_check:<name>``), ``None`` when unknown."""
    if is_local_check(name):
        return 1
    if is_acceptance_check(name):
        return 2
    try:
        return info(name).stage
    except ValueError:
        return None


def is_waivable(name: str) -> bool:
    """True when a recorded waiver may turn gate ``name``'s failure into ``waived``.

    Stage 1 local checks and Stage 2 declared acceptance checks are waivable; names the catalogue
    does not know are not.
    """
    if is_local_check(name) or is_acceptance_check(name):
        return True
    try:
        return info(name).waivable
    except ValueError:
        return False


def waivable_gates(stage: int) -> frozenset[Gate]:
    """The gates of ``stage`` a waiver may waive."""
    return frozenset(g for g in gates_for(stage, conditional=True) if CATALOGUE[g].waivable)


def non_waivable(stage: int) -> frozenset[Gate]:
    """The gates of ``stage`` the lifecycle makes fail closed without exception."""
    return frozenset(g for g in gates_for(stage, conditional=True) if not CATALOGUE[g].waivable)


def summary(name: str) -> str:
    """The one-line summary of gate ``name`` (of a ``local_check:<name>``: the declared command)."""
    if is_local_check(name):
        return f"the declared local check {name[len(LOCAL_CHECK_PREFIX) :]} passed"
    if is_acceptance_check(name):
        return f"the declared acceptance check {name[len(ACCEPTANCE_PREFIX) :]} passed against the canary"
    return info(name).summary


def markdown_table() -> str:
    """The catalogue as the Markdown table docs/gates.md carries (a test keeps the two equal)."""
    lines = ["| gate | stage | phase | waivable | summary |", "|---|---|---|---|---|"]
    for row in CATALOGUE.values():
        phases = " + ".join(p.value for p in row.phases) + (" (conditional)" if row.conditional else "")
        waivable = "yes" if row.waivable else "no"
        if row.waivable and row.waiver_name != row.gate.value:
            waivable += f" (by a `{row.waiver_name}` waiver)"
        lines.append(f"| `{row.gate.value}` | {row.stage} | {phases} | {waivable} | {row.summary} |")
    lines.append(f"| `{LOCAL_CHECK_PREFIX}<name>` | 1 | evidence | yes | the declared local check passed |")
    lines.append(
        f"| `{ACCEPTANCE_PREFIX}<name>` | 2 | acceptance | yes | the declared `[[acceptance]]` check "
        "passed against the live canary at the end of the window |"
    )
    return "\n".join(lines) + "\n"


class CandidatePhase(StrEnum):
    """Where a candidate stands in the lifecycle: its fate, as the candidate-state fold derives it."""

    REGISTERED = "registered"
    """Registered; no stage has passed yet (or none since its latest return to Stage 1)."""
    LOCALLY_VALIDATED = "locally-validated"
    """Stage 1 passed (or was skipped by an emergency exception); Stage 2 may start."""
    CANARY = "canary"
    """A Stage 2 canary is deployed and under observation."""
    CANARY_ACCEPTED = "canary-accepted"
    """Stage 2 accepted the canary; Stage 3 may promote it."""
    PROMOTED = "promoted"
    """Promoted to production stable."""
    RETURNED_TO_STAGE1 = "returned-to-stage1"
    """A rollback reset it: it keeps nothing it had earned and starts again from Stage 1."""
    BLOCKED = "blocked"
    """A rollback blocked it: it may never move toward production again."""
    ABANDONED = "abandoned"
    """A rollback abandoned it: it may never move toward production again."""

    @property
    def is_terminal(self) -> bool:
        """True when no event can move the candidate toward production again."""
        return self in {CandidatePhase.BLOCKED, CandidatePhase.ABANDONED}
