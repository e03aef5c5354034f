"""Read-side projections: workload status, history, stable lineage, rollback target, partition keys.

Everything here is derived from the events on every call; nothing is stored, so there is nothing to
rebuild or to edit by hand. The queries stay fast on large ledgers by asking only for the kinds a
projection needs (index ``(stream, kind, seq)``), by extracting the one field needed from big
stage-result documents inside the database instead of shipping and parsing them, and by working on
raw Core rows (no pydantic model per row).

The CLI renders these objects (``as_dict()`` gives JSON-ready dicts); Dagster sensors ask the same
functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, RecordedEvent, format_timestamp
from railiance_ledger.domain.payloads import (
    CandidateRegistered,
    PromotionCompleted,
    RollbackCompleted,
    read_or_default,
)
from railiance_ledger.domain.text import shown
from railiance_ledger.errors import LedgerError
from railiance_ledger.ledger.schema import EVENT_COLUMNS, events
from railiance_ledger.ledger.store import EventStore, row_to_event

_K = EventKind
_PARTITION_KEY = re.compile(r"^(?P<workload>.+)@(?P<short>[0-9a-f]{12})$")

StableState = Literal["current", "superseded", "rolled-back"]


# -- models -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageResult:
    """The latest result of one stage for one candidate (``running`` when started, not finished)."""

    stage: int
    status: str
    seq: int
    event_id: str
    recorded_at: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ApprovalRecord:
    """One ``approval.granted`` event: who approved which digest for which stage."""

    event_id: str
    seq: int
    digest: str
    stage: int | None
    operator: str
    recorded_at: str
    retrospective: bool = False
    revoked: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ExceptionRecord:
    """One ``exception.emergency`` event and whether a retrospective approval has followed it."""

    event_id: str
    seq: int
    digest: str
    skip_stage: int | None
    operator: str
    reason: str
    recorded_at: str
    retrospectively_approved: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PendingApproval:
    """A candidate whose last stage passed and that has no approval for the next stage yet.

    Whether the approval is *required* depends on the workload's criticality (the declaration);
    the ledger lists every candidate that could use one.
    """

    digest: str
    stage: int
    since: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class CandidateStatus:
    """One candidate of a workload as the ledger sees it."""

    digest: str
    image: str | None
    partition_key: str
    registered_at: str | None
    registered_by: str | None
    stages: tuple[StageResult, ...]
    state: str
    approvals: tuple[ApprovalRecord, ...]
    exceptions: tuple[ExceptionRecord, ...]

    @property
    def has_approvals(self) -> bool:
        """True when at least one approval (not revoked) exists for this candidate."""
        return any(not a.revoked for a in self.approvals)

    def stage_status(self, stage: int) -> str | None:
        """The latest result status of ``stage`` (``pass``/``fail``/``running``), or None."""
        for result in self.stages:
            if result.stage == stage:
                return result.status
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``stages`` keyed by stage number as text)."""
        data = asdict(self)
        data["stages"] = {str(r.stage): r.status for r in self.stages}
        data["stage_results"] = [r.as_dict() for r in self.stages]
        data["has_approvals"] = self.has_approvals
        return data


@dataclass(frozen=True)
class WorkloadStatus:
    """Every candidate of a workload, the current and earlier stables, and what awaits a human."""

    workload: str
    last_seq: int
    candidates: tuple[CandidateStatus, ...]
    current_stable: str | None
    earlier_stables: tuple[str, ...]
    pending_approvals: tuple[PendingApproval, ...]
    awaiting_retrospective: tuple[ExceptionRecord, ...]

    def candidate(self, digest: str) -> CandidateStatus | None:
        """The status of one candidate, or None."""
        return next((c for c in self.candidates if c.digest == digest), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "workload": self.workload,
            "last_seq": self.last_seq,
            "candidates": [c.as_dict() for c in self.candidates],
            "current_stable": self.current_stable,
            "earlier_stables": list(self.earlier_stables),
            "pending_approvals": [p.as_dict() for p in self.pending_approvals],
            "awaiting_retrospective": [e.as_dict() for e in self.awaiting_retrospective],
        }


@dataclass(frozen=True)
class StableRecord:
    """One promotion to stable: what was promoted, how to restore it, who approved it."""

    digest: str
    image: str | None
    promoted_at: str
    promoted_by: str
    event_id: str | None
    seq: int
    previous_stable: str | None
    restore: dict[str, Any]
    approvals: tuple[ApprovalRecord, ...]
    state: StableState

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RollbackRecord:
    """One ``rollback.completed``: which stable was left and which became stable again."""

    event_id: str
    seq: int
    recorded_at: str
    actor: str
    from_stable: str | None
    final_stable: str | None
    candidate: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RollbackTarget:
    """Where a rollback of the workload goes: the stable before the current one, and how to restore it.

    ``restore`` is the promotion payload of that stable (helm revision, release, namespace, values and
    manifests digests, routing...); ``known`` is False when the ledger only knows the digest (the
    stable predates the ledger), in which case the restore needs a human.
    """

    digest: str
    image: str | None
    restore: dict[str, Any]
    approvals: tuple[ApprovalRecord, ...]
    promoted_at: str | None
    promotion_event_id: str | None
    known: bool = True
    kind: str = "ledger-stable"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Lineage:
    """The stable history of a workload (optionally as it was at ``at``)."""

    workload: str
    at: str | None
    current_stable: StableRecord | None
    rollback_target: RollbackTarget | None
    stables: tuple[StableRecord, ...]
    rollbacks: tuple[RollbackRecord, ...]
    stack: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "workload": self.workload,
            "at": self.at,
            "current_stable": self.current_stable.as_dict() if self.current_stable else None,
            "rollback_target": self.rollback_target.as_dict() if self.rollback_target else None,
            "stables": [s.as_dict() for s in self.stables],
            "rollbacks": [r.as_dict() for r in self.rollbacks],
            "stack": list(self.stack),
        }


# -- helpers ----------------------------------------------------------------------------------------


def partition_key(workload: str, digest: str) -> str:
    """The Dagster partition key of a candidate: ``<workload>@<first 12 hex of the digest>``."""
    return f"{workload}@{digest.split(':', 1)[-1][:12]}"


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
    """The status query for this dialect, built once: stage events ship no payload, results only ``status``."""
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


# -- stable history ---------------------------------------------------------------------------------


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


# -- projections ------------------------------------------------------------------------------------


def workload_status(store: EventStore, workload: str) -> WorkloadStatus:
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


def candidates(store: EventStore, workload: str) -> list[CandidateStatus]:
    """Every registered candidate of ``workload`` with its stage state, in registration order."""
    return list(workload_status(store, workload).candidates)


def history(store: EventStore, workload: str, *, limit: int | None = None) -> list[RecordedEvent]:
    """The workload's events in order; with ``limit``, only the most recent ``limit`` of them."""
    stmt = sa.select(*(events.c[name] for name in EVENT_COLUMNS)).where(events.c.stream == workload)
    if limit is not None:
        stmt = stmt.order_by(events.c.version.desc()).limit(max(0, limit))
        with store.reading("history") as conn:
            rows = list(conn.execute(stmt).all())
        rows.reverse()
    else:
        with store.reading("history") as conn:
            rows = list(conn.execute(stmt.order_by(events.c.version)).all())
    return [row_to_event(row) for row in rows]


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


def lineage(store: EventStore, workload: str, *, at: str | None = None) -> Lineage:
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


def rollback_target(store: EventStore, workload: str) -> RollbackTarget | None:
    """Where a rollback of ``workload`` goes now (None when the ledger knows no earlier stable)."""
    return _lineage(store, workload, at=None, all_approvals=False).rollback_target


def resolve_partition_key(store: EventStore, key: str) -> str:
    """The full digest behind a partition key ``<workload>@<12 hex>``; refuses unknown keys and collisions."""
    match = _PARTITION_KEY.match(key)
    if match is None:
        raise LedgerError(
            f"partition key {shown(key)} is not of the form <workload>@<first 12 hex of the digest>"
        )
    workload, short = match.group("workload"), match.group("short")
    stmt = (
        sa.select(events.c.candidate)
        .where(
            events.c.stream == workload,
            events.c.kind == _K.CANDIDATE_REGISTERED.value,
            events.c.candidate.like(f"sha256:{short}%"),
        )
        .distinct()
        .order_by(events.c.candidate)
    )
    with store.reading("resolve_partition_key") as conn:
        found = [str(d) for d in conn.execute(stmt).scalars()]
    if not found:
        raise LedgerError(
            f"partition key {shown(key)}: no registered candidate of {workload!r} has a digest starting {short}",
            hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
        )
    if len(found) > 1:
        raise LedgerError(
            f"partition key {shown(key)} is ambiguous: it matches {' and '.join(found)}",
            hint="refusing to guess; address the candidate by its full digest",
        )
    return found[0]
