"""The candidate-state fold (``domain.candidate_state``), typed payloads (``domain.payloads``) and the
operator identity (``domain.identity``): pure, milliseconds, no ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from railiance_ledger.domain import payloads
from railiance_ledger.domain.candidate_state import CandidateState, candidate_states
from railiance_ledger.domain.gates import CandidatePhase
from railiance_ledger.domain.identity import Operator
from railiance_ledger.domain.payloads import ApprovalRevoked, InvalidPayload, RollbackCompleted

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@dataclass
class Ev:
    kind: str
    candidate: str | None
    stage: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    event_id: str = ""
    seq: int = 0
    actor: str = "alice"
    recorded_at: str = ""


def history(*events: Ev) -> list[Ev]:
    """Number the events (seq, event_id, recorded_at) in order."""
    for i, ev in enumerate(events, start=1):
        ev.seq = i
        ev.event_id = ev.event_id or f"e{i}"
        ev.recorded_at = f"2026-01-01T00:00:{i:02d}+00:00"
    return list(events)


def reg(d: str = D1) -> Ev:
    return Ev("candidate.registered", d, payload={"image": f"r/w@{d}"})


def result(stage: int, status: str, d: str = D1) -> Ev:
    return Ev("stage.completed", d, stage, {"stage": stage, "status": status, "candidate": {"digest": d}})


def grant(stage: int, d: str = D1, *, event_id: str = "", **payload: Any) -> Ev:
    return Ev("approval.granted", d, stage, {"stage": stage, **payload}, event_id=event_id, actor="bob")


def revoke(stage: int, d: str = D1, **payload: Any) -> Ev:
    return Ev("approval.revoked", d, stage, payload, actor="carol")


# ---------------------------------------------------------------------------------------- payloads


def test_revocation_v1_with_two_keys_reads_as_one_approval_id() -> None:
    v1 = {"approval_id": "a1", "approval_event_id": "a1", "reason": "x"}
    parsed = payloads.parse_as(ApprovalRevoked, v1)
    assert ("a1", 2) == (parsed.approval_id, parsed.payload_version)
    assert "approval_event_id" not in parsed.model_dump()


def test_revocation_v1_with_only_the_projection_key_is_upcast() -> None:
    assert "a9" == payloads.parse_as(ApprovalRevoked, {"approval_event_id": "a9"}).approval_id


def test_revocation_v2_writes_the_id_once_with_its_version() -> None:
    written = ApprovalRevoked(approval_id="a1", reason="r").to_payload()
    assert {"approval_id": "a1", "reason": "r", "payload_version": 2} == written


@pytest.mark.parametrize(
    ("disposition", "fate"),
    [("returned to Stage 1", "returned-to-stage1"), ("blocked: never again", "blocked"), ("", None)],
)
def test_rollback_v1_prose_is_upcast_to_a_fate(disposition: str, fate: str | None) -> None:
    parsed = payloads.parse_as(RollbackCompleted, {"candidate_disposition": disposition})
    assert fate == parsed.candidate_fate


def test_a_known_key_with_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="status"):
        payloads.validate("stage.completed", {"status": "passed"})
    with pytest.raises(InvalidPayload, match="covers_exceptions"):
        payloads.validate("approval.granted", {"covers_exceptions": "e1"})


def test_extra_keys_are_kept_and_every_kind_has_a_model() -> None:
    from railiance_ledger.domain.events import EventKind

    assert set(EventKind) == set(payloads.MODELS)
    assert "x" == payloads.parse("note.posted", {"free": "x"}).model_dump()["free"]


def test_a_newer_payload_version_than_known_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="newer"):
        payloads.validate("approval.revoked", {"payload_version": 3})


# ---------------------------------------------------------------------------------------- the fold


def test_stage_results_count_until_a_rollback_resets_them() -> None:
    evs = history(reg(), result(1, "pass"), result(2, "pass"))
    assert CandidateState.from_events(evs).passed(2)
    rolled = history(*evs, Ev("rollback.completed", D1, 3, {"candidate_fate": "returned-to-stage1"}))
    state = CandidateState.from_events(rolled)
    assert (False, True) == (state.passed(1), state.all_results[1].passed)
    assert CandidatePhase.RETURNED_TO_STAGE1 == state.phase


def test_blocked_candidate_is_terminal() -> None:
    evs = history(reg(), result(1, "pass"), Ev("rollback.completed", D1, 2, {"candidate_fate": "blocked"}))
    state = CandidateState.from_events(evs)
    assert state.terminal and state.phase.is_terminal


def test_latest_result_decides_and_other_digests_never_count() -> None:
    evs = history(reg(), reg(D2), result(1, "pass"), result(1, "fail"), result(1, "pass", D2))
    assert not CandidateState.from_events(evs, D1).passed(1)
    assert CandidateState.from_events(evs, D2).passed(1)


def test_the_latest_approval_decision_decides() -> None:
    evs = history(reg(), grant(2, event_id="g1"), revoke(2, approval_id="g1", reason="wrong"))
    status = CandidateState.from_events(evs).approval(2)
    assert (False, True, "g1", "wrong") == (
        status.in_force,
        status.revoked,
        status.approval_id,
        status.revocation.reason if status.revocation else None,
    )
    regranted = history(*evs, grant(2, event_id="g2"))
    assert "g2" == CandidateState.from_events(regranted).approval_in_force(2).event_id  # type: ignore[union-attr]


def test_a_revocation_of_one_stage_leaves_the_other_in_force() -> None:
    evs = history(reg(), grant(2, event_id="g2"), grant(3, event_id="g3"), revoke(2, approval_id="g2"))
    state = CandidateState.from_events(evs)
    assert (None, "g3") == (state.approval_in_force(2), getattr(state.approval_in_force(3), "event_id", None))
    assert [True, False] == [g.revoked for g in state.grants]


def test_v1_revocation_naming_the_approval_under_the_old_key_revokes_it() -> None:
    evs = history(reg(), grant(2, event_id="g1"), revoke(2, approval_event_id="g1"))
    assert [True] == [g.revoked for g in CandidateState.from_events(evs).grants]


def test_revoked_since_sees_only_later_revocations_of_the_stage() -> None:
    evs = history(reg(), grant(2), revoke(3), revoke(2))
    state = CandidateState.from_events(evs)
    assert (True, False) == (state.revoked_since(2, 2), state.revoked_since(2, 4))


def test_emergency_exception_awaits_a_retrospective_approval_in_force() -> None:
    exc = Ev("exception.emergency", D1, 2, {"skip_stage": 2}, event_id="x1")
    evs = history(reg(), result(1, "pass"), exc)
    state = CandidateState.from_events(evs)
    assert (True, ("x1",)) == (state.excepted(2), tuple(e.event_id for e in state.awaiting_retrospective))
    approved = history(*evs, grant(3, event_id="r1", retrospective=True, covers_exceptions=["x1"]))
    assert () == CandidateState.from_events(approved).awaiting_retrospective
    revoked = history(*approved, revoke(3, approval_id="r1"))
    assert ("x1",) == tuple(e.event_id for e in CandidateState.from_events(revoked).awaiting_retrospective)


def test_waivers_latest_per_gate_and_scoped_to_the_candidate() -> None:
    def waiver(gate: str, stage: int, reason: str, scoped: str = D1) -> Ev:
        return Ev(
            "waiver.granted",
            D1,
            stage,
            {"gate": gate, "reason": reason, "scope": {"gate": gate, "candidate": scoped, "stage": stage}},
        )

    evs = history(
        reg(), waiver("local_health", 1, "a"), waiver("local_health", 1, "b"), waiver("x", 1, "c", D2)
    )
    waivers = CandidateState.from_events(evs).waivers_for(1)
    assert {"local_health": "b"} == {g: w.reason for g, w in waivers.items()}


def test_open_canary_and_phases_in_order() -> None:
    started = Ev("stage.started", D1, 2)
    evs = history(reg(), result(1, "pass"), started)
    state = CandidateState.from_events(evs)
    assert (2, CandidatePhase.CANARY) == (state.open_stage, state.phase)
    accepted = history(*evs, result(2, "pass"))
    assert CandidatePhase.CANARY_ACCEPTED == CandidateState.from_events(accepted).phase
    promoted = history(*accepted, Ev("promotion.completed", D1, 3))
    assert CandidatePhase.PROMOTED == CandidateState.from_events(promoted).phase
    assert CandidatePhase.REGISTERED == CandidateState.from_events(history(reg())).phase


def test_unreadable_old_records_fail_closed() -> None:
    bad_grant = Ev("approval.granted", D1, 2, {"covers_exceptions": "not a list"})
    bad_revoke = Ev("approval.revoked", D1, 2, {"stage": "two"})
    evs = history(reg(), grant(2, event_id="g1"), bad_grant, bad_revoke)
    state = CandidateState.from_events(evs)
    assert (1, None) == (len(state.grants), state.approval_in_force(2))


def test_candidate_states_fold_every_candidate_of_a_stream() -> None:
    evs = history(reg(), reg(D2), result(1, "pass", D2))
    states = candidate_states(evs)
    assert [D1, D2] == list(states)
    assert (False, True) == (states[D1].passed(1), states[D2].passed(1))


# ---------------------------------------------------------------------------------------- identity


def test_operator_identity_records_whether_it_was_explicit() -> None:
    assert (Operator("bob", True), Operator("bob", False)) == (
        Operator.given("bob"),
        Operator.defaulted("bob"),
    )
    assert Operator("bob", True) == Operator.of("bob")
    assert Operator.defaulted("svc") is not None and not Operator.of(Operator.defaulted("svc")).explicit
    with pytest.raises(ValueError):
        Operator(" ", True)
