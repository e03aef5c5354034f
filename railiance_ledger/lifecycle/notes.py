"""State Hub notes for ledger events: post, record the outcome, never drop a failure silently.

Every approval, revocation, waiver and emergency exception (and any Stage 2/3 progress note) is
posted to State Hub when one is configured (``RAILIANCE_STATEHUB_URL``). The State Hub client is
built by the composition root (``lifecycle.environment``: ``Environment.statehub()``,
``open_statehub``) and passed in; ``statehub=None`` means none is configured. ``post_and_record`` is
the one path for posting:

1. the note (title, body, evidence) is redacted by the adapter and posted, with bounded retries;
2. the outcome is appended to the ledger as ``note.posted`` referencing the event it is about:
   ``delivered: true`` with the State Hub ``note_id``, or ``delivered: false`` with the error;
3. the returned ``NoteOutcome`` carries a ``warning`` whenever the note was not delivered (or was
   required and no State Hub is configured), so the CLI prints it. Nothing is dropped silently.

``NotedEvent`` is a ``RecordedEvent`` that also carries its ``NoteOutcome`` (outside the envelope:
``model_dump()`` and the hash are exactly the stored event's), so services can keep returning
"the event" while the CLI reads ``event.warnings``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, canonical_json
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.errors import AdapterError

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort, StateHubWitnessPort

__all__ = [
    "LEDGER_HEAD_REF",
    "NOTE_FIX",
    "STATEHUB_URL_ENV",
    "NoteOutcome",
    "NotedEvent",
    "UndeliveredNote",
    "note_gate",
    "note_problem",
    "note_required",
    "post_and_record",
    "repost_undelivered",
    "undelivered_notes",
    "witnessed_heads",
]

LEDGER_HEAD_REF = "ledger-head:"
"""Prefix of the evidence ``ref`` every note carries: ``ledger-head:<seq>:<hash>``."""

NOTE_FIX = (
    "deliver it (railiance notes WORKLOAD --repost, with RAILIANCE_STATEHUB_URL set) or record a waiver for "
    "gate statehub_note of this stage"
)
"""How an operator clears a gate blocked by an undelivered note."""

STATEHUB_URL_ENV = "RAILIANCE_STATEHUB_URL"
"""Environment variable naming the State Hub base URL; unset means no State Hub is configured."""


@dataclass(frozen=True)
class NoteOutcome:
    """What happened to the State Hub note about one ledger event.

    ``configured`` is False when no State Hub was configured (nothing posted, nothing recorded).
    ``record`` is the ``note.posted`` event (delivered or not) when one was appended.
    """

    configured: bool
    delivered: bool
    note_id: str | None = None
    error: str | None = None
    attempts: int = 0
    record: RecordedEvent | None = None
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``--json`` ``note`` field)."""
        return {
            "configured": self.configured,
            "delivered": self.delivered,
            "note_id": self.note_id,
            "error": self.error,
            "attempts": self.attempts,
            "ledger_event_id": self.record.event_id if self.record else None,
            "ledger_seq": self.record.seq if self.record else None,
            "warning": self.warning,
        }


class NotedEvent(RecordedEvent):
    """A recorded ledger event plus the outcome of its State Hub note.

    The note outcome is a private attribute: ``model_dump()``, ``envelope()`` and the hash are the
    stored event's, and equality compares the envelope only, so a ``NotedEvent`` equals the same
    event read back from the store.
    """

    _note: NoteOutcome | None = PrivateAttr(default=None)
    _extra_warnings: tuple[str, ...] = PrivateAttr(default=())

    @classmethod
    def wrap(
        cls, event: RecordedEvent, note: NoteOutcome | None, warnings: list[str] | None = None
    ) -> NotedEvent:
        """``event`` carrying ``note`` and any further ``warnings`` for the CLI."""
        obj = cls.model_validate(event.model_dump())
        obj._note = note
        obj._extra_warnings = tuple(warnings or ())
        return obj

    @property
    def note(self) -> NoteOutcome | None:
        """The State Hub note outcome (``None`` when posting was not attempted)."""
        return self._note

    @property
    def warnings(self) -> list[str]:
        """Everything the operator must be told: undelivered notes, missing State Hub, ..."""
        out = list(self._extra_warnings)
        if self._note is not None and self._note.warning:
            out.append(self._note.warning)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The event, its note outcome and warnings, JSON-ready (for ``--json``)."""
        return {
            "event": self.model_dump(),
            "note": self._note.as_dict() if self._note else None,
            "warnings": self.warnings,
        }

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordedEvent):
            return self.model_dump() == other.model_dump()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.seq, self.hash))


def post_and_record(
    *,
    store: EventStore,
    statehub: StateHubPort | None,
    event: RecordedEvent,
    title: str,
    body: str,
    evidence: list[dict[str, Any]] | None = None,
    required: bool = False,
    required_reason: str = "",
    purpose: str | None = None,
) -> NoteOutcome:
    """Post a State Hub note about ``event`` and append ``note.posted`` with the outcome.

    ``statehub=None`` means none is configured: nothing is posted or appended, and when
    ``required`` is True (e.g. emergency exceptions, production-critical approvals) the outcome
    carries a warning naming ``required_reason``. When posting fails after the adapter's retries,
    ``note.posted`` is appended with ``delivered: false`` and the error, and the outcome carries a
    warning: the failure is reported, never dropped.
    """
    if statehub is None:
        warning = None
        if required:
            why = f" ({required_reason})" if required_reason else ""
            warning = (
                f"no State Hub configured: the {event.kind} record {event.event_id} is in the ledger only; "
                f"the spec expects a State Hub note{why}. Set {STATEHUB_URL_ENV} and re-post it."
            )
        return NoteOutcome(configured=False, delivered=False, warning=warning)

    note_evidence = [
        {
            "kind": "summary",
            "ref": f"ledger:{event.event_id}",
            "detail": f"{event.kind} seq {event.seq} hash {event.hash}",
        },
    ]
    head_seq, head_hash = store.head()
    note_evidence.append(
        {
            "kind": "summary",
            "ref": f"{LEDGER_HEAD_REF}{head_seq}:{head_hash}",
            "detail": "the ledger head (seq:hash) when this note was posted: an external witness",
        }
    )
    if event.candidate:
        note_evidence.append({"kind": "digest", "ref": event.candidate, "detail": "candidate artifact"})
    note_evidence.extend(evidence or [])
    base_url = redact(getattr(statehub, "base_url", "") or "")
    note_id: str | None = None
    error: str | None = None
    error_type: str | None = None
    attempts = 0
    try:
        note_id = statehub.post_note(
            workload=event.stream, kind=event.kind, title=title, body=body, evidence=note_evidence
        )
        attempts = 1
    except AdapterError as exc:
        error = redact(str(exc))
        error_type = type(exc).__name__
        attempts = int(getattr(exc, "attempts", 1) or 1)
    delivered = note_id is not None
    payload: dict[str, Any] = {
        "ref_event_id": event.event_id,
        "ref_kind": event.kind,
        "ref_seq": event.seq,
        "statehub_url": base_url,
        "title": title,
        "delivered": delivered,
        "note_id": note_id,
    }
    if not delivered:
        payload.update({"error": error, "error_type": error_type, "attempts": attempts})
    if purpose:
        payload["purpose"] = purpose  # a further note about the event (e.g. an overdue reminder)
    record = store.append(
        [
            NewEvent(
                stream=event.stream,
                kind=EventKind.NOTE_POSTED,
                actor=event.actor,
                candidate=event.candidate,
                stage=event.stage,
                payload=redact_value(payload),
            )
        ]
    )[0]
    warning = None
    if not delivered:
        warning = (
            f"State Hub note for {event.kind} {event.event_id} was NOT delivered after {attempts} "
            "attempt(s): "
            f"{error}. Recorded as note.posted delivered=false (ledger seq {record.seq}); "
            "re-post it once State Hub is reachable."
        )
    return NoteOutcome(
        configured=True,
        delivered=delivered,
        note_id=note_id,
        error=error,
        attempts=attempts,
        record=record,
        warning=warning,
    )


@dataclass(frozen=True)
class UndeliveredNote:
    """A ledger event whose State Hub note has not (yet) been delivered."""

    ref_event_id: str
    ref_kind: str
    ref_seq: int
    note_event_id: str
    error: str | None
    recorded_at: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ref_event_id": self.ref_event_id,
            "ref_kind": self.ref_kind,
            "ref_seq": self.ref_seq,
            "note_event_id": self.note_event_id,
            "error": self.error,
            "recorded_at": self.recorded_at,
        }


def note_required(event: RecordedEvent) -> bool:
    """True for what the spec wants in State Hub: emergency exceptions and production-critical approvals."""
    if event.kind == EventKind.EXCEPTION_EMERGENCY:
        return True
    return event.kind == EventKind.APPROVAL_GRANTED and bool(event.payload.get("production_critical"))


def note_problem(history: Iterable[RecordedEvent], event_id: str) -> str | None:
    """Why the State Hub note about event ``event_id`` is not delivered (``None`` when its latest
    ``note.posted`` says delivered): never posted (no State Hub configured then), or not delivered."""
    latest: RecordedEvent | None = None
    for ev in history:
        if (
            ev.kind == EventKind.NOTE_POSTED
            and ev.payload.get("ref_event_id") == event_id
            and not ev.payload.get("purpose")
        ):
            latest = ev
    if latest is None:
        return (
            f"no State Hub note was posted for {event_id} (no State Hub was configured when it was recorded)"
        )
    if latest.payload.get("delivered"):
        return None
    return (
        f"the State Hub note for {event_id} was not delivered "
        f"({latest.payload.get('error') or 'unknown error'}; note.posted seq {latest.seq})"
    )


def note_gate(
    history: Iterable[RecordedEvent], event_id: str, what: str, waiver: RecordedEvent | None
) -> tuple[bool, str]:
    """The State Hub part of a gate that relies on the record ``event_id`` (``what`` names it).

    ``(True, "")`` when its note was delivered; ``(True, suffix)`` naming ``waiver`` (a ``statehub_note``
    waiver of the stage) when it was not but is waived; ``(False, reason)`` with the fix otherwise.
    """
    problem = note_problem(history, event_id)
    if problem is None:
        return True, ""
    if waiver is not None:
        return True, f"; its State Hub note is missing ({problem}), waived by {waiver.event_id}"
    return False, f"{what} is not recorded in State Hub as the spec requires: {problem}; {NOTE_FIX}"


def undelivered_notes(store: EventStore, workload: str) -> list[UndeliveredNote]:
    """Events of ``workload`` whose latest ``note.posted`` says ``delivered: false``, and records the spec
    wants in State Hub (``note_required``) that were never posted (no State Hub configured then)."""
    latest: dict[str, RecordedEvent] = {}
    history = store.read_stream(workload)
    for ev in history:
        if (
            ev.kind == EventKind.NOTE_POSTED
            and ev.payload.get("ref_event_id")
            and not ev.payload.get("purpose")
        ):
            latest[str(ev.payload["ref_event_id"])] = ev
    out: list[UndeliveredNote] = [
        UndeliveredNote(
            ref_event_id=ev.event_id,
            ref_kind=ev.kind,
            ref_seq=ev.seq,
            note_event_id="",
            error="never posted: no State Hub was configured when it was recorded",
            recorded_at=ev.recorded_at,
        )
        for ev in history
        if note_required(ev) and ev.event_id not in latest
    ]
    for ref, ev in latest.items():
        if ev.payload.get("delivered"):
            continue
        out.append(
            UndeliveredNote(
                ref_event_id=ref,
                ref_kind=str(ev.payload.get("ref_kind", "")),
                ref_seq=int(ev.payload.get("ref_seq", 0) or 0),
                note_event_id=ev.event_id,
                error=ev.payload.get("error"),
                recorded_at=ev.recorded_at,
            )
        )
    return sorted(out, key=lambda n: n.ref_seq)


def repost_undelivered(*, store: EventStore, workload: str, statehub: StateHubPort) -> list[NoteOutcome]:
    """Post again every note of ``workload`` that was recorded as not delivered; each attempt is recorded.

    The original body was never stored (only its outcome), so the re-posted note carries the event
    it is about: kind, actor, time, ledger seq and hash, and the (already redacted) payload, bounded.
    """
    outcomes: list[NoteOutcome] = []
    for pending in undelivered_notes(store, workload):
        event = store.get(pending.ref_event_id)
        if event is None:
            continue
        detail = canonical_json(event.payload)
        if len(detail) > 4000:
            detail = detail[:4000] + " ...(truncated; the full record is in the ledger)"
        body = (
            f"Re-posted after an earlier delivery failure ({pending.error or 'unknown error'}).\n"
            f"{event.kind} by {event.actor} at {event.recorded_at}; ledger seq {event.seq}, hash "
            f"{event.hash}.\n"
            f"Record: {detail}"
        )
        outcomes.append(
            post_and_record(
                store=store,
                statehub=statehub,
                event=event,
                title=f"{workload}: {event.kind} (re-posted)",
                body=body,
            )
        )
    return outcomes


def witnessed_heads(statehub: StateHubWitnessPort) -> list[tuple[int, str]]:
    """Every ledger head ``(seq, hash)`` the notes State Hub recorded carry, ascending by seq.

    Each note posted through ``post_and_record`` names the head at the time as evidence
    (``ledger-head:<seq>:<hash>``); ``ledger verify --witness statehub`` checks the chain still holds
    every one of them, which shows a truncated tail or a rewritten history the chain alone cannot.
    """
    heads: set[tuple[int, str]] = set()
    for note in statehub.list_notes():
        for item in note.get("evidence") or []:
            ref = item.get("ref") if isinstance(item, dict) else None
            if not isinstance(ref, str) or not ref.startswith(LEDGER_HEAD_REF):
                continue
            seq_text, _, digest = ref[len(LEDGER_HEAD_REF) :].partition(":")
            if seq_text.isdigit() and len(digest) == 64:
                heads.add((int(seq_text), digest))
    return sorted(heads)
