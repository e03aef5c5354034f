"""The gate catalogue (``domain.gates``): per-stage lists, waivability and candidate phases."""

from __future__ import annotations

import pytest

from railiance_ledger.domain import gates
from railiance_ledger.domain.gates import CandidatePhase, Gate, GatePhase


def test_stage1_required_checks_in_report_order() -> None:
    expected = (
        "source_revision_identified",
        "artifact_deterministic",
        "candidate_immutable",
        "manifests_valid",
        "secrets_by_reference",
        "local_health",
        "migrations_classified",
        "observability_declared",
        "artifact_traceable",
    )
    assert expected == gates.names_for(1)


def test_stage2_prechecks_end_with_operator_approval() -> None:
    names = gates.names_for(2, GatePhase.PRECHECK)
    assert ("canary_form_declared", "canary_distinguishable", "stage1_passed") == names[:3]
    assert ("observation_window", "operator_approval") == names[-2:]
    assert 13 == len(names)


def test_stage2_acceptance_is_sample_gates_then_identity_approval_and_note() -> None:
    names = gates.names_for(2, GatePhase.ACCEPTANCE)
    assert gates.sample_gate_names() == names[:11]
    assert ("canary_release_identity", "operator_approval", "statehub_note") == names[11:]


def test_operator_approval_is_judged_in_two_phases() -> None:
    row = gates.info("operator_approval")
    assert (GatePhase.PRECHECK, GatePhase.ACCEPTANCE) == row.phases
    assert GatePhase.PRECHECK == row.phase


def test_conditional_gates_only_when_asked() -> None:
    assert "immediate_rollback" not in gates.names_for(2)
    assert "immediate_rollback" in gates.names_for(2, conditional=True)
    assert ("promotion_applied", "stable_routing_points_at_candidate", "post_promotion_smoke") == (
        gates.names_for(3, GatePhase.PROMOTION)
    )
    assert "automatic_rollback" in gates.names_for(3, GatePhase.PROMOTION, conditional=True)


def test_stage3_prechecks_include_statehub_configured_last() -> None:
    assert (
        "stage2_accepted",
        "previous_stable_recorded",
        "backup_posture_current",
        "migrations_approved",
        "human_approval",
        "rollback_available",
        "statehub_configured",
    ) == gates.names_for(3, GatePhase.PRECHECK)


def test_stage1_fail_closed_gates_are_not_waivable() -> None:
    assert {
        "secrets_by_reference",
        "candidate_immutable",
        "artifact_deterministic",
        "observability_declared",
    } == {g.value for g in gates.non_waivable(1)}
    assert gates.is_waivable("local_health")
    assert gates.is_waivable("local_check:unit")
    assert not gates.is_waivable("secrets_by_reference")


def test_stage2_waivable_gates_are_sample_gates_evidence_and_two_prechecks() -> None:
    expected = {
        *gates.sample_gate_names(),
        "canary_release_identity",
        "statehub_note",
        "dependencies_healthy",
        "observation_window",
    }
    assert expected == {g.value for g in gates.waivable_gates(2)}


def test_unknown_names_are_neither_gates_nor_waivable() -> None:
    assert not gates.is_gate("no_such_gate")
    assert not gates.is_waivable("no_such_gate")
    assert gates.stage_of("no_such_gate") is None
    assert not gates.is_local_check("local_check:")
    with pytest.raises(ValueError):
        gates.info("no_such_gate")


def test_statehub_configured_is_waived_by_a_statehub_note_waiver() -> None:
    assert "statehub_note" == gates.info(Gate.STATEHUB_CONFIGURED).waiver_name
    assert "local_health" == gates.info(Gate.LOCAL_HEALTH).waiver_name


def test_every_gate_has_a_row_and_a_summary() -> None:
    for gate in Gate:
        row = gates.info(gate)
        assert row.stage in (1, 2, 3)
        assert row.summary and "\n" not in row.summary
        assert gates.summary(gate.value) == row.summary
        assert gates.stage_of(gate.value) == row.stage
    assert "unit" in gates.summary("local_check:unit")


def test_every_gate_appears_in_some_stage_list() -> None:
    listed = {g for stage in (1, 2, 3) for g in gates.gates_for(stage, conditional=True)}
    assert set(Gate) == listed


@pytest.mark.parametrize("phase", list(CandidatePhase))
def test_only_blocked_and_abandoned_are_terminal(phase: CandidatePhase) -> None:
    assert (phase in {CandidatePhase.BLOCKED, CandidatePhase.ABANDONED}) == phase.is_terminal


def test_lists_elsewhere_derive_from_the_catalogue() -> None:
    from railiance_ledger.domain import canary
    from railiance_ledger.lifecycle import waivers

    assert gates.sample_gate_names() == canary.GATE_NAMES
    assert {1: {g.value for g in gates.non_waivable(1)}} == waivers.NON_WAIVABLE
    assert {g.value for g in gates.waivable_gates(2)} == waivers.WAIVABLE_STAGE2


def test_docs_gate_table_is_the_catalogue() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "gates.md").read_text(encoding="utf-8")
    start, end = "<!-- gate-table:start -->\n", "<!-- gate-table:end -->"
    table = text[text.index(start) + len(start) : text.index(end)]
    assert gates.markdown_table() == table
