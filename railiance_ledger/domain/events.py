"""Ledger events: kinds, the envelope, canonical JSON and the hash chain.

``hash = sha256(prev_hash + "\\n" + canonical_json(envelope without hash))`` where canonical JSON
has sorted keys, UTF-8, and no insignificant whitespace. The first event chains from 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GENESIS_HASH = "0" * 64


class EventKind(StrEnum):
    """Every kind of fact the ledger records. Extend as needed; never repurpose a member."""

    CANDIDATE_REGISTERED = "candidate.registered"
    """A candidate artifact (image by immutable digest) was registered for a workload."""
    STAGE_STARTED = "stage.started"
    """A stage began for a candidate."""
    STAGE_COMPLETED = "stage.completed"
    """A stage finished; the payload is the stage-result document."""
    CANARY_SAMPLE = "canary.sample"
    """One observation sample during the Stage 2/3 window."""
    APPROVAL_GRANTED = "approval.granted"
    """A human approved a candidate for a stage."""
    APPROVAL_REVOKED = "approval.revoked"
    """A human revoked an earlier approval."""
    WAIVER_GRANTED = "waiver.granted"
    """A human waived one gate for one candidate, with a reason."""
    EXCEPTION_EMERGENCY = "exception.emergency"
    """An operator recorded an emergency exception (e.g. skipping a stage)."""
    ROUTING_CHANGED = "routing.changed"
    """Production or canary routing changed."""
    PROMOTION_COMPLETED = "promotion.completed"
    """A candidate became the stable production version."""
    ROLLBACK_STARTED = "rollback.started"
    """A rollback began, with its triggering symptom."""
    ROLLBACK_COMPLETED = "rollback.completed"
    """A rollback finished, with the final stable version."""
    ROLLBACK_DEFERRED = "rollback.deferred"
    """A rollback was deferred by a human because it is more dangerous than the incident."""
    NOTE_POSTED = "note.posted"
    """A State Hub progress note was posted (or could not be)."""
    ROLLBACK_INCOMPLETE = "rollback.incomplete"
    """A rollback could not finish; further actions on the workload are blocked until resolved."""
    LEASE_ACQUIRED = "lease.acquired"
    """An action took the workload's lease (holder, action, expiry): one action per workload at a time."""
    LEASE_RELEASED = "lease.released"
    """An action released the workload's lease."""

    @property
    def needs_candidate(self) -> bool:
        """True for kinds that always concern one candidate digest."""
        return self in {
            EventKind.CANDIDATE_REGISTERED,
            EventKind.STAGE_STARTED,
            EventKind.STAGE_COMPLETED,
            EventKind.CANARY_SAMPLE,
            EventKind.APPROVAL_GRANTED,
            EventKind.APPROVAL_REVOKED,
            EventKind.WAIVER_GRANTED,
            EventKind.EXCEPTION_EMERGENCY,
            EventKind.PROMOTION_COMPLETED,
        }


class NewEvent(BaseModel):
    """An event about to be appended: everything but what the store assigns."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    stream: str = Field(min_length=1, max_length=200)
    kind: EventKind
    actor: str = Field(min_length=1, max_length=200)
    candidate: str | None = None
    stage: int | None = Field(default=None, ge=1, le=3)
    payload: dict[str, Any] = Field(default_factory=dict)


class RecordedEvent(BaseModel):
    """An event as stored: the full envelope with its place in the chain."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    seq: int
    event_id: str
    stream: str
    version: int
    kind: str
    candidate: str | None
    stage: int | None
    actor: str
    recorded_at: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def envelope(self) -> dict[str, Any]:
        """The envelope without ``hash``: what the hash covers."""
        data = self.model_dump()
        data.pop("hash")
        return data

    def expected_hash(self) -> str:
        """The hash this event must carry given its envelope and ``prev_hash``."""
        return compute_hash(self.prev_hash, self.envelope())


def canonical_json(value: Any) -> str:
    """Sorted keys, UTF-8 (no ASCII escaping), no insignificant whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_hash(prev_hash: str, envelope: dict[str, Any]) -> str:
    """``sha256(prev_hash + "\\n" + canonical_json(envelope))`` as 64 lowercase hex."""
    data = (prev_hash + "\n" + canonical_json(envelope)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def format_timestamp(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds and ``+00:00``; the one textual form stored in envelopes."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")

    return ts.astimezone(UTC).isoformat(timespec="microseconds")
