"""The full replay the projections are checked against (tests only).

This is the read side as it was before the projection tables (``ledger/projections.py`` up to
schema 2): every query folds the workload's events from the log. The projection tests compare the
tables' answers (incremental and rebuilt) with these, on both backends.
"""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, format_timestamp
from railiance_ledger.domain.payloads import (
    CandidateRegistered,
    PromotionCompleted,
    RollbackCompleted,
    read_or_default,
)
from railiance_ledger.ledger.projections import (
    ApprovalRecord,
    CandidateStatus,
    ExceptionRecord,
    Lineage,
    PendingApproval,
    RollbackRecord,
    RollbackTarget,
    StableRecord,
    StableState,
    StageResult,
    WorkloadStatus,
    partition_key,
)
from railiance_ledger.domain.text import shown
from railiance_ledger.errors import LedgerError
from railiance_ledger.ledger.schema import events
from railiance_ledger.ledger.store import EventStore

_K = EventKind


def _json_field(store: EventStore, key: str) -> ColumnElement[Any]:
    """``payload.<key>`` as text, extracted by the database (no payload shipped or parsed)."""
    if store.dialect == "postgresql":
        return sa.func.json_extract_path_text(sa.cast(events.c.payload, sa.JSON), key)
    return sa.func.json_extract(events.c.payload, f"$.{key}")


def _normalize_at(at: str | None) -> str | None:
    if at is None:
        return None
    try:
        ts = datetime.fromisoformat(at)
    except ValueError as exc:
        raise LedgerError(f"lineage: {shown(at)} is not an ISO-8601 timestamp") from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return format_timestamp(ts)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class _RowEvent(NamedTuple):
    """A status or lineage row as the candidate-state fold reads it (``domain.candidate_state.EventLike``)."""

    seq: int
    event_id: str
    kind: str
    candidate: str | None
    stage: int | None
    actor: str
    recorded_at: str
    payload: dict[str, Any]


def _row_event(row: Any, payload: dict[str, Any]) -> _RowEvent:
    seq, event_id, kind, candidate, stage, actor, recorded_at = row[:7]
    return _RowEvent(seq, event_id, kind, candidate, stage, actor, recorded_at, payload)


def _approval_records(state: CandidateState) -> tuple[ApprovalRecord, ...]:
    """The candidate's grants as the projections show them (``revoked`` as the fold decides)."""
    return tuple(
        ApprovalRecord(
            event_id=g.event_id,
            seq=g.seq,
            digest=state.digest,
            stage=g.stage,
            operator=g.operator,
            recorded_at=g.recorded_at,
            retrospective=g.retrospective,
            revoked=g.revoked,
        )
        for g in state.grants
    )


_BASE_COLS = (
    events.c.seq,
    events.c.event_id,
    events.c.kind,
    events.c.candidate,
    events.c.stage,
    events.c.actor,
    events.c.recorded_at,
)

_STATUS_KINDS = (
    _K.CANDIDATE_REGISTERED,
    _K.STAGE_STARTED,
    _K.STAGE_COMPLETED,
    _K.APPROVAL_GRANTED,
    _K.APPROVAL_REVOKED,
    _K.EXCEPTION_EMERGENCY,
    _K.PROMOTION_COMPLETED,
    _K.ROLLBACK_COMPLETED,
)
_LINEAGE_KINDS = (_K.PROMOTION_COMPLETED, _K.ROLLBACK_COMPLETED)
_FOLDED_KINDS = frozenset(
    {
        _K.STAGE_COMPLETED,
        _K.APPROVAL_GRANTED,
        _K.APPROVAL_REVOKED,
        _K.EXCEPTION_EMERGENCY,
        _K.ROLLBACK_COMPLETED,
    }
)
"""The kinds whose rules the status asks the fold about (results, approvals, exceptions, resets)."""


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _status_statement(store: EventStore) -> Any:
    """The status query for this dialect, built once: stage events ship no payload, results only
    ``status``."""
    key = ("status", store.dialect)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        is_doc = events.c.kind == _K.STAGE_COMPLETED.value
        no_payload = events.c.kind.in_([_K.STAGE_COMPLETED.value, _K.STAGE_STARTED.value])
        stmt = (
            sa.select(
                *_BASE_COLS,
                sa.case((no_payload, sa.null()), else_=events.c.payload).label("payload"),
                sa.case((is_doc, _json_field(store, "status")), else_=sa.null()).label("status"),
            )
            .where(
                events.c.stream == sa.bindparam("stream"),
                events.c.kind.in_([k.value for k in _STATUS_KINDS]),
            )
            .order_by(events.c.seq)
        )
        _STATEMENTS[key] = stmt
    return stmt


def _status_rows(store: EventStore, workload: str) -> list[Any]:
    """The rows a status needs, in seq order."""
    with store.reading("status") as conn:
        return list(conn.execute(_status_statement(store), {"stream": workload}).all())


@dataclass
class _Stack:
    records: list[StableRecord] = field(default_factory=list)
    stack: list[int] = field(default_factory=list)  # indexes into records
    rolled_back: set[int] = field(default_factory=set)
    rolled_back_digests: set[str] = field(default_factory=set)
    rollbacks: list[RollbackRecord] = field(default_factory=list)

    def promote(self, row: Any, payload: dict[str, Any]) -> None:
        seq, event_id, _kind, candidate, _stage, actor, recorded_at = row[:7]
        promo = read_or_default(PromotionCompleted, payload)
        digest = str(promo.digest or candidate)
        self.records.append(
            StableRecord(
                digest=digest,
                image=promo.image,
                promoted_at=recorded_at,
                promoted_by=actor,
                event_id=event_id,
                seq=int(seq),
                previous_stable=promo.previous_stable,
                restore=payload,
                approvals=(),
                state="current",
            )
        )
        self.stack.append(len(self.records) - 1)

    def rollback(self, row: Any, payload: dict[str, Any]) -> None:
        seq, event_id, _kind, candidate, stage, actor, recorded_at = row[:7]
        done = read_or_default(RollbackCompleted, payload)
        final = done.final_stable
        from_stable = self.records[self.stack[-1]].digest if self.stack else None
        if candidate:
            self.rolled_back_digests.add(candidate)
        if stage == 2:
            # A Stage 2 rollback removes a canary; stable production never changed, so neither does lineage.
            final = from_stable
        if final is None:
            popped, self.stack = self.stack, []
        else:
            popped = []
            while self.stack and self.records[self.stack[-1]].digest != final:
                popped.append(self.stack.pop())
            if not self.stack:
                # The final stable predates what the ledger knows: record it from the rollback.
                self.records.append(
                    StableRecord(
                        digest=str(final),
                        image=done.final_image or done.image,
                        promoted_at=recorded_at,
                        promoted_by=actor,
                        event_id=None,
                        seq=int(seq),
                        previous_stable=None,
                        restore=dict(done.restore or {}),
                        approvals=(),
                        state="current",
                    )
                )
                self.stack.append(len(self.records) - 1)
        for index in popped:
            self.rolled_back.add(index)
            self.rolled_back_digests.add(self.records[index].digest)
        self.rollbacks.append(
            RollbackRecord(
                event_id=event_id,
                seq=int(seq),
                recorded_at=recorded_at,
                actor=actor,
                from_stable=from_stable,
                final_stable=final,
                candidate=candidate,
                reason=str(done.reason or ""),
            )
        )

    def finish(self, approvals: dict[str, tuple[ApprovalRecord, ...]]) -> list[StableRecord]:
        top = self.stack[-1] if self.stack else None
        out: list[StableRecord] = []
        for index, rec in enumerate(self.records):
            state: StableState = (
                "current" if index == top else "rolled-back" if index in self.rolled_back else "superseded"
            )
            out.append(replace(rec, approvals=approvals.get(rec.digest, ()), state=state))
        return out

    @property
    def current_digest(self) -> str | None:
        return self.records[self.stack[-1]].digest if self.stack else None

    def earlier_digests(self) -> tuple[str, ...]:
        """Digests below the current stable on the stack, most recent first."""
        return tuple(self.records[i].digest for i in reversed(self.stack[:-1]))


def replay_status(store: EventStore, workload: str) -> WorkloadStatus:
    """Every candidate's stage state, the stables, pending approvals and unreviewed emergency exceptions."""
    rows = _status_rows(store, workload)
    order: list[str] = []
    info: dict[str, dict[str, Any]] = {}
    last_stage_event: dict[str, StageResult] = {}
    folded: dict[str, list[_RowEvent]] = {}
    stack = _Stack()
    last_seq = 0
    for row in rows:
        seq, event_id, kind, digest, stage, actor, recorded_at, payload_text, status = row
        last_seq = int(seq)
        payload: dict[str, Any] = json.loads(payload_text) if payload_text else {}
        if kind == _K.STAGE_COMPLETED:
            # the query ships only the document's status; it is all the fold reads of a result
            payload = {"status": status} if status in ("pass", "fail") else {}
        if digest and kind in _FOLDED_KINDS:
            folded.setdefault(digest, []).append(_row_event(row, payload))
        if kind == _K.CANDIDATE_REGISTERED:
            if digest not in info:
                reg = read_or_default(CandidateRegistered, payload)
                order.append(digest)
                info[digest] = {
                    "image": reg.image,
                    "at": recorded_at,
                    "by": actor,
                    # Registrations record whether the declaration makes approval mandatory; older
                    # ones did not, and for those a missing approval is listed (fail closed).
                    "approval_required": reg.approval_required is not False,
                }
        elif kind == _K.STAGE_COMPLETED and digest and stage is not None:
            last_stage_event[digest] = StageResult(
                int(stage), str(status or "fail"), int(seq), event_id, recorded_at
            )
        elif kind == _K.STAGE_STARTED and digest and stage is not None:
            last_stage_event[digest] = StageResult(int(stage), "running", int(seq), event_id, recorded_at)
        elif kind == _K.PROMOTION_COMPLETED:
            stack.promote(row, payload)
        elif kind == _K.ROLLBACK_COMPLETED:
            stack.rollback(row, payload)

    current = stack.current_digest
    promoted = {rec.digest for rec in stack.records}
    candidates: list[CandidateStatus] = []
    pending: list[PendingApproval] = []
    awaiting: list[ExceptionRecord] = []
    for digest in order:
        # the rules (approval in force, exception coverage, latest results) are the fold's
        state = CandidateState.from_events(folded.get(digest, []), digest)
        its_approvals = _approval_records(state)
        its_exceptions: list[ExceptionRecord] = []
        for exc in state.exceptions:
            exc_record = ExceptionRecord(
                event_id=exc.event_id,
                seq=exc.seq,
                digest=digest,
                skip_stage=exc.skip_stage,
                operator=exc.operator,
                reason=exc.reason,
                recorded_at=exc.recorded_at,
                retrospectively_approved=not exc.awaiting_retrospective,
            )
            its_exceptions.append(exc_record)
            if exc.awaiting_retrospective:
                awaiting.append(exc_record)
        latest = last_stage_event.get(digest)
        if digest == current:
            phase = "stable"
        elif digest in stack.rolled_back_digests:
            phase = "rolled-back"
        elif digest in promoted:
            phase = "superseded"
        elif latest is None:
            phase = "registered"
        else:
            phase = f"stage{latest.stage}:{latest.status}"
            if latest.status == "pass" and latest.stage in (1, 2):
                nxt = latest.stage + 1
                phase += " (eligible for Stage 2 review)" if nxt == 2 else " (eligible for Stage 3 promotion)"
                required = info[digest]["approval_required"]
                if required and state.approval_in_force(nxt) is None:
                    pending.append(
                        PendingApproval(
                            digest=digest,
                            stage=nxt,
                            since=latest.recorded_at,
                            reason=f"stage {latest.stage} passed; no approval for stage {nxt} yet",
                        )
                    )
        stages = [
            StageResult(r.stage, r.status, r.seq, r.event_id, r.recorded_at)
            for r in state.all_results.values()
        ]
        candidates.append(
            CandidateStatus(
                digest=digest,
                image=info[digest]["image"],
                partition_key=partition_key(workload, digest),
                registered_at=info[digest]["at"],
                registered_by=info[digest]["by"],
                stages=tuple(sorted(stages, key=lambda r: r.stage)),
                state=phase,
                approvals=its_approvals,
                exceptions=tuple(its_exceptions),
            )
        )
    return WorkloadStatus(
        workload=workload,
        last_seq=last_seq,
        candidates=tuple(candidates),
        current_stable=current,
        earlier_stables=stack.earlier_digests(),
        pending_approvals=tuple(pending),
        awaiting_retrospective=tuple(awaiting),
    )


_LINEAGE_STMT = (
    sa.select(*_BASE_COLS, events.c.payload)
    .where(
        events.c.stream == sa.bindparam("stream"),
        events.c.kind.in_([k.value for k in _LINEAGE_KINDS]),
        events.c.recorded_at <= sa.bindparam("at"),
    )
    .order_by(events.c.seq)
)
_APPROVALS_STMT = (
    sa.select(*_BASE_COLS, events.c.payload)
    .where(
        events.c.stream == sa.bindparam("stream"),
        events.c.kind.in_([_K.APPROVAL_GRANTED.value, _K.APPROVAL_REVOKED.value]),
        events.c.candidate.in_(sa.bindparam("digests", expanding=True)),
        events.c.recorded_at <= sa.bindparam("at"),
    )
    .order_by(events.c.seq)
)
_END_OF_TIME = "9999-12-31T23:59:59.999999+00:00"


def replay_lineage(store: EventStore, workload: str, *, at: str | None = None) -> Lineage:
    """The stable history of ``workload``: promotions push a stable, rollbacks return to ``final_stable``.

    With ``at`` (ISO-8601), only events recorded at or before that instant count.
    """
    return _lineage(store, workload, at=at, all_approvals=True)


def _lineage(store: EventStore, workload: str, *, at: str | None, all_approvals: bool) -> Lineage:
    at_norm = _normalize_at(at)
    bound = at_norm or _END_OF_TIME
    stack = _Stack()
    with store.reading("lineage") as conn:
        for row in conn.execute(_LINEAGE_STMT, {"stream": workload, "at": bound}):
            payload = json.loads(row[7])
            if row[2] == _K.PROMOTION_COMPLETED:
                stack.promote(row, payload)
            else:
                stack.rollback(row, payload)
        if all_approvals:
            digests = sorted({rec.digest for rec in stack.records})
        else:  # only the rollback target's approvals are asked for
            digests = [stack.records[stack.stack[-2]].digest] if len(stack.stack) >= 2 else []
        approvals = _approvals_for(conn, workload, digests, bound)
    records = stack.finish(approvals)
    current = records[stack.stack[-1]] if stack.stack else None
    target: RollbackTarget | None = None
    if len(stack.stack) >= 2:
        prev = records[stack.stack[-2]]
        target = RollbackTarget(
            digest=prev.digest,
            image=prev.image,
            restore=prev.restore,
            approvals=prev.approvals,
            promoted_at=prev.promoted_at,
            promotion_event_id=prev.event_id,
            known=prev.event_id is not None,
        )
    elif current is not None and current.previous_stable:
        target = RollbackTarget(
            digest=current.previous_stable,
            image=None,
            restore={},
            approvals=(),
            promoted_at=None,
            promotion_event_id=None,
            known=False,
            kind="digest-only",
        )
    return Lineage(
        workload=workload,
        at=at_norm,
        current_stable=current,
        rollback_target=target,
        stables=tuple(records),
        rollbacks=tuple(stack.rollbacks),
        stack=tuple(records[i].digest for i in stack.stack),
    )


def _approvals_for(
    conn: sa.Connection, workload: str, digests: Sequence[str], at: str
) -> dict[str, tuple[ApprovalRecord, ...]]:
    if not digests:
        return {}
    rows: dict[str, list[_RowEvent]] = {}
    for row in conn.execute(_APPROVALS_STMT, {"stream": workload, "digests": list(digests), "at": at}):
        rows.setdefault(row[3], []).append(_row_event(row, json.loads(row[7])))
    return {d: _approval_records(CandidateState.from_events(evs, d)) for d, evs in rows.items()}
