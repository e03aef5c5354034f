"""Emergency exceptions: skipping a stage toward production, awaiting a retrospective approval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.candidate_state import candidate_states
from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.identity import OperatorLike
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.approvals.common import (
    SKIPPABLE_STAGES,
    candidate_evidence,
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

__all__ = ["exception_to_sign", "pending_retrospective", "record_exception"]


def record_exception(**kwargs: Any) -> NotedEvent:
    """Record an emergency exception (see ``_record_exception``); ``signature`` signs ``exception_to_sign``."""
    noted = _record_exception(**kwargs)
    assert noted is not None
    return noted


def exception_to_sign(**kwargs: Any) -> bytes:
    """The canonical record an emergency exception with these arguments would append."""
    out: list[bytes] = []
    _record_exception(**kwargs, payload_sink=out)
    return out[0]


def _record_exception(
    *,
    store: EventStore,
    decl: Declaration,
    operator: OperatorLike | None,
    skip_stage: int,
    reason: str,
    image: str | None = None,
    statehub: StateHubPort | None = None,
    signature: str | None = None,
    payload_sink: list[bytes] | None = None,
) -> NotedEvent | None:
    """Record ``exception.emergency``: skipping ``skip_stage`` for one candidate, awaiting approval.

    The spec lets a workload skip a stage toward production only when an operator records an
    emergency exception in State Hub; it is posted as a note (a warning when no State Hub is
    configured) and stays in ``pending_retrospective`` until a retrospective approval lands.
    """
    identity = require_identity(operator, what="an emergency exception")
    who = identity.name
    why = require_reason(reason, what="an emergency exception")
    if skip_stage not in SKIPPABLE_STAGES:
        raise InvalidInput(
            f"stage {skip_stage} cannot be skipped: an emergency exception skips stage 1 or stage 2 on the way to production",
            hint="use --skip-stage 1 or --skip-stage 2",
        )
    workload = decl.workload.name
    history = store.read_stream(workload)
    cand = resolve_candidate(history, workload, image)
    payload = {
        "workload": workload,
        "operator": who,
        "operator_explicit": identity.explicit,
        "skip_stage": skip_stage,
        "reason": why,
        "candidate": {"image": cand.image, "digest": cand.digest, "revision": cand.revision},
        "scope": {
            "workload": workload,
            "candidate": cand.digest,
            "skipped_stage": skip_stage,
            "unlocks_stage": skip_stage + 1,
        },
        "awaiting_retrospective_approval": True,
        "production_critical": decl.production_critical,
    }
    draft = NewEvent(
        stream=workload,
        kind=EventKind.EXCEPTION_EMERGENCY,
        actor=who,
        candidate=cand.digest,
        stage=skip_stage,
        payload=redact_value(payload),
    )
    if payload_sink is not None:
        payload_sink.append(to_sign(decl, draft))
        return None
    event = store.append([seal(decl, draft, signature)], expected_version=stream_version(history))[0]
    body = (
        f"EMERGENCY EXCEPTION: {who} skips stage {skip_stage} for {cand.image} of {workload}.\n"
        f"Reason: {why}.\n"
        "A retrospective approval by another operator must be recorded immediately after stabilization "
        f"(railiance approve APP_DIR --stage {skip_stage + 1} --retrospective).\n"
        f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=f"{workload}: emergency exception, stage {skip_stage} skipped by {who}",
        body=body,
        evidence=candidate_evidence(cand),
        required=True,
        required_reason="the spec requires emergency exceptions to be recorded in State Hub",
    )
    return NotedEvent.wrap(event, note)


def pending_retrospective(store: EventStore, workload: str) -> list[dict[str, Any]]:
    """Every emergency exception of ``workload`` still awaiting its retrospective approval.

    An exception stops being pending when a retrospective ``approval.granted`` covering it is
    recorded (and not revoked). Oldest first.
    """
    states = candidate_states(store.read_stream(workload))
    pending = [(digest, exc) for digest, state in states.items() for exc in state.awaiting_retrospective]
    out: list[dict[str, Any]] = []
    for digest, exc in sorted(pending, key=lambda item: item[1].seq):
        cand = exc.payload.candidate if isinstance(exc.payload.candidate, dict) else {}
        out.append(
            {
                "exception_id": exc.event_id,
                "seq": exc.seq,
                "workload": workload,
                "digest": digest,
                "image": cand.get("image") or digest,
                "skip_stage": exc.payload.skip_stage,
                "reason": exc.payload.reason,
                "operator": exc.actor,
                "recorded_at": exc.recorded_at,
                "scope": exc.payload.scope,
            }
        )
    return out
