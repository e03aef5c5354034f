"""``revoke``: withdraw an approval in force; inside an observation window, rollback is immediate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.identity import OperatorLike
from railiance_ledger.domain.payloads import ApprovalRevoked
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.approvals.common import (
    APPROVABLE_STAGES,
    require_identity,
    require_reason,
    stream_version,
)
from railiance_ledger.lifecycle.approvals.signing import seal, to_sign
from railiance_ledger.lifecycle.candidates import resolve_candidate
from railiance_ledger.lifecycle.notes import NotedEvent, post_and_record

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort

__all__ = ["revocation_to_sign", "revoke"]


def revoke(**kwargs: Any) -> NotedEvent:
    """Record a revocation (see ``_revoke``); ``signature`` signs what ``revocation_to_sign`` returns."""
    noted = _revoke(**kwargs)
    assert noted is not None
    return noted


def revocation_to_sign(**kwargs: Any) -> bytes:
    """The canonical record a revocation with these arguments would append."""
    out: list[bytes] = []
    _revoke(**kwargs, payload_sink=out)
    return out[0]


def _revoke(
    *,
    store: EventStore,
    decl: Declaration,
    operator: OperatorLike | None,
    reason: str,
    approval_id: str | None = None,
    image: str | None = None,
    statehub: StateHubPort | None = None,
    signature: str | None = None,
    payload_sink: list[bytes] | None = None,
) -> NotedEvent | None:
    """Record ``approval.revoked`` for one approval: by ``approval_id``, else the candidate's latest.

    Any operator may revoke (revoking is a safety action), but a named one is required. When the
    candidate is inside its Stage 2/3 observation window, the record says an immediate rollback is
    required (``immediate_rollback: true``); the observe loop acts on it through the candidate-state
    fold (``CandidateState.revoked_since``).
    Refuses (``InvalidInput``) an empty reason, an unknown approval id, or nothing left to revoke.
    """
    identity = require_identity(operator, what="a revocation")
    who = identity.name
    why = require_reason(reason, what="a revocation")
    workload = decl.workload.name
    history = store.read_stream(workload)
    if approval_id:
        grant = next(
            (ev for ev in history if ev.event_id == approval_id and ev.kind == EventKind.APPROVAL_GRANTED),
            None,
        )
        if grant is None:
            raise InvalidInput(
                f"no approval {approval_id} in the ledger of {workload}",
                hint=f"list approvals with `railiance history {workload}`",
            )
        assert grant.candidate is not None and grant.stage is not None
        in_force = CandidateState.from_events(history, grant.candidate).approval_in_force(grant.stage)
        if in_force is None or in_force.event_id != grant.event_id:
            raise InvalidInput(
                f"approval {approval_id} is not in force (already revoked or superseded)",
                hint="revoke the approval currently in force, or nothing",
            )
    else:
        cand = resolve_candidate(history, workload, image)
        state = CandidateState.from_events(history, cand.digest)
        live = [g for g in (state.approval_in_force(st) for st in APPROVABLE_STAGES) if g is not None]
        if not live:
            raise InvalidInput(
                f"no approval in force for {cand.image}: nothing to revoke",
                hint=f"see `railiance history {workload}`",
            )
        newest = max(live, key=lambda g: g.recorded_at or "")
        grant = next(ev for ev in history if ev.event_id == newest.event_id)
    assert grant.candidate is not None
    in_window = CandidateState.from_events(history, grant.candidate).open_stage
    payload = ApprovalRevoked(
        workload=workload,
        approval_id=grant.event_id,
        approved_by=grant.actor,
        operator=who,
        operator_explicit=identity.explicit,
        reason=why,
        candidate=grant.payload.get("candidate") or {"digest": grant.candidate},
        stage=grant.stage,
        in_observation_window=in_window is not None,
        observing_stage=in_window,
        immediate_rollback=in_window is not None,
    ).to_payload()
    draft = NewEvent(
        stream=workload,
        kind=EventKind.APPROVAL_REVOKED,
        actor=who,
        candidate=grant.candidate,
        stage=grant.stage,
        payload=redact_value(payload),
    )
    if payload_sink is not None:
        payload_sink.append(to_sign(decl, draft))
        return None
    event = store.append([seal(decl, draft, signature)], expected_version=stream_version(history))[0]
    image_text = (grant.payload.get("candidate") or {}).get("image") or grant.candidate
    body = (
        f"Approval {grant.event_id} (stage {grant.stage}, by {grant.actor}) of {image_text} revoked by {who}.\n"
        f"Reason: {why}.\n"
        + (
            "The candidate is inside its observation window: rollback must be immediate.\n"
            if in_window
            else ""
        )
        + f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=f"{workload}: stage {grant.stage} approval revoked by {who}",
        body=body,
        required=decl.production_critical,
        required_reason="production-critical approval decisions must be recorded as a State Hub note",
    )
    warnings = []
    if in_window is not None:
        warnings.append(
            f"approval revoked during the stage {in_window} observation window of {image_text}: "
            "the spec requires an immediate rollback"
        )
    return NotedEvent.wrap(event, note, warnings)
