"""Emergency exceptions: skipping a stage toward production, awaiting a retrospective approval."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.candidate_state import candidate_states
from railiance_ledger.domain.durations import format_duration
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
from railiance_ledger.lifecycle.notes import NotedEvent, NoteOutcome, post_and_record

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort

__all__ = [
    "DEFAULT_RETROSPECTIVE_DEADLINE",
    "OVERDUE_PURPOSE",
    "exception_to_sign",
    "pending_retrospective",
    "post_overdue_notes",
    "record_exception",
]

DEFAULT_RETROSPECTIVE_DEADLINE = 24 * 3600
"""Seconds after an emergency exception its retrospective approval is due, unless declared otherwise."""


def record_exception(**kwargs: Any) -> NotedEvent:
    """Record an emergency exception (see ``_record_exception``); ``signature`` signs
    ``exception_to_sign``."""
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
            f"stage {skip_stage} cannot be skipped: an emergency exception skips stage 1 or stage 2 on the "
            "way to production",
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
        "retrospective_deadline": {
            "seconds": decl.approval.retrospective_deadline,
            "text": format_duration(decl.approval.retrospective_deadline),
            "source": (
                "declaration approval.retrospective_deadline"
                if "retrospective_deadline" in decl.approval.model_fields_set
                else "default"
            ),
        },
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
        f"(railiance approve APP_DIR --stage {skip_stage + 1} --retrospective), within "
        f"{format_duration(decl.approval.retrospective_deadline)}.\n"
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


def pending_retrospective(
    store: EventStore, workload: str, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every emergency exception of ``workload`` still awaiting its retrospective approval.

    An exception stops being pending when a retrospective ``approval.granted`` covering it is
    recorded (and not revoked). Oldest first. Each names its deadline: ``due_at`` (recorded time plus
    the deadline the exception recorded, ``approval.retrospective_deadline``, default 24 h) and
    ``overdue`` (past it at ``now``, default the current time).
    """
    at = now or datetime.now(UTC)
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
                **_deadline(exc.recorded_at, exc.payload.model_dump(), at),
            }
        )
    return out


def _deadline(recorded_at: str, payload: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """``due_at``, ``deadline_seconds`` and ``overdue`` of an exception recorded at ``recorded_at``."""
    declared = payload.get("retrospective_deadline")
    seconds = int(declared.get("seconds") or 0) if isinstance(declared, Mapping) else 0
    seconds = seconds or DEFAULT_RETROSPECTIVE_DEADLINE
    recorded = datetime.fromisoformat(recorded_at)
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=UTC)
    due = recorded + timedelta(seconds=seconds)
    return {
        "deadline_seconds": seconds,
        "due_at": due.isoformat().replace("+00:00", "Z"),
        "overdue": now >= due,
    }


OVERDUE_PURPOSE = "retrospective-overdue"
"""``note.posted`` purpose of the State Hub note saying a retrospective approval is overdue."""


def post_overdue_notes(
    *, store: EventStore, workload: str, statehub: StateHubPort | None, now: datetime | None = None
) -> list[NoteOutcome]:
    """Post a State Hub note for every emergency exception whose retrospective approval is overdue.

    Once per exception: a delivered overdue note is not posted again (an undelivered one is retried on
    the next call). Each outcome is recorded as ``note.posted`` with ``purpose: retrospective-overdue``.
    """
    history = store.read_stream(workload)
    done = {
        ev.payload.get("ref_event_id")
        for ev in history
        if ev.kind == EventKind.NOTE_POSTED
        and ev.payload.get("purpose") == OVERDUE_PURPOSE
        and ev.payload.get("delivered")
    }
    outcomes: list[NoteOutcome] = []
    for pending in pending_retrospective(store, workload, now=now):
        if not pending["overdue"] or pending["exception_id"] in done:
            continue
        event = store.get(pending["exception_id"])
        if event is None:
            continue
        outcomes.append(
            post_and_record(
                store=store,
                statehub=statehub,
                event=event,
                title=f"{workload}: retrospective approval OVERDUE for emergency exception {event.event_id}",
                body=(
                    f"The emergency exception {event.event_id} by {event.actor} (skip stage "
                    f"{pending['skip_stage']} for {pending['image']}, recorded {event.recorded_at}) still "
                    f"has no retrospective approval; it was due at {pending['due_at']}.\n"
                    f"Reason given: {pending['reason']}.\n"
                    "Record it: railiance approve APP_DIR --retrospective --stage N (another operator)."
                ),
                required=True,
                required_reason="an overdue retrospective approval is reported in State Hub",
                purpose=OVERDUE_PURPOSE,
            )
        )
    return outcomes
