"""Approval state read from the ledger through the one candidate-state fold.

``approval_state`` answers "is an approval of this candidate for this stage in force?" for the CLI,
Stage 3, rollback and Dagster; ``candidate_state`` gives the whole fold for other questions
(``domain.candidate_state.CandidateState``: ``approval_in_force``, ``revoked_since``, waivers,
exceptions, the open stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.candidate_state import ApprovalStatus, CandidateState, Grant

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore

__all__ = ["ApprovalState", "approval_state", "candidate_state", "state_of"]


def candidate_state(store: EventStore, workload: str, digest: str) -> CandidateState:
    """The fold of ``digest``'s events in ``workload`` (``CandidateState.from_events``)."""
    return CandidateState.from_events(store.read_candidate(workload, digest), digest)


@dataclass(frozen=True)
class ApprovalState:
    """Whether ``(digest, stage)`` is approved now: the latest grant or revocation decides.

    ``revoked`` is True when the latest decision is a revocation (the Stage 2 observe loop treats a
    revocation during the observation window as an immediate-rollback condition).
    """

    workload: str
    digest: str
    stage: int
    granted: bool
    approval_id: str | None = None
    operator: str | None = None
    granted_at: str | None = None
    retrospective: bool = False
    revoked: bool = False
    revoked_at: str | None = None
    revoked_by: str | None = None
    revocation_id: str | None = None
    revocation_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "workload": self.workload,
            "digest": self.digest,
            "stage": self.stage,
            "granted": self.granted,
            "approval_id": self.approval_id,
            "operator": self.operator,
            "granted_at": self.granted_at,
            "retrospective": self.retrospective,
            "revoked": self.revoked,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "revocation_id": self.revocation_id,
            "revocation_reason": self.revocation_reason,
            "history": list(self.history),
        }


def state_of(state: CandidateState, workload: str, stage: int) -> ApprovalState:
    """The ``ApprovalState`` of ``stage`` from a fold the caller already has."""
    status: ApprovalStatus = state.approval(stage)
    trail = [
        {
            "kind": "approval.granted" if isinstance(d, Grant) else "approval.revoked",
            "event_id": d.event_id,
            "operator": d.actor,
            "at": d.recorded_at,
        }
        for d in status.trail
    ]
    grant, revocation = status.grant, status.revocation
    latest_grant = next((d for d in reversed(status.trail) if isinstance(d, Grant)), None)
    shown = grant or latest_grant
    return ApprovalState(
        workload=workload,
        digest=state.digest,
        stage=stage,
        granted=grant is not None,
        approval_id=status.approval_id,
        operator=shown.actor if shown else None,
        granted_at=shown.recorded_at if shown else None,
        retrospective=shown.retrospective if shown else False,
        revoked=revocation is not None,
        revoked_at=revocation.recorded_at if revocation else None,
        revoked_by=revocation.actor if revocation else None,
        revocation_id=revocation.event_id if revocation else None,
        revocation_reason=revocation.reason if revocation else None,
        history=trail,
    )


def approval_state(store: EventStore, workload: str, digest: str, stage: int) -> ApprovalState:
    """The approval state of ``digest`` for ``stage`` in ``workload``, from the ledger.

    Grants and revocations are taken in ledger order; the latest one decides. A revocation of any
    approval of ``(digest, stage)`` withdraws the approval (fail closed) until a new grant is recorded.
    """
    return state_of(candidate_state(store, workload, digest), workload, stage)
