"""Read-side projections: workload status, history, stable lineage, rollback target, partition keys.

Status, lineage (now and ``--at``), rollback target, pending approvals and the open canary are read
from the projection tables (``schema.proj_*``), which the append keeps in its own transaction
(``ledger/projector.py``) and ``railiance ledger rebuild-projections`` rebuilds from the log: their
cost does not grow with a workload's history. Lists are paged (newest ``limit`` first, default
:data:`DEFAULT_PAGE`). ``history`` and partition-key resolution read the events themselves through
their indexes.

The CLI renders these objects (``as_dict()`` gives JSON-ready dicts); Dagster sensors ask the same
functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, RecordedEvent, format_timestamp
from railiance_ledger.domain.text import shown
from railiance_ledger.errors import LedgerError
from railiance_ledger.ledger.projector import FoldEvent
from railiance_ledger.ledger.schema import (
    EVENT_COLUMNS,
    events,
    proj_candidates,
    proj_lineage,
    proj_stables,
    proj_workloads,
)
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
    candidate_count: int = 0
    """Registered candidates in all (``candidates`` may hold only the newest page)."""
    open_canary: str | None = None
    """The candidate whose Stage 2 canary is open, if any."""

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
            "candidate_count": self.candidate_count,
            "open_canary_digest": self.open_canary,
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


# -- projections (read from the projection tables) ------------------------------------------------

DEFAULT_PAGE = 50
"""Candidates, stables, rollbacks and events a read returns unless told otherwise (``limit=None``: all)."""

_NO_LIMIT = 2**62
_PC = proj_candidates
_PS = proj_stables
_PL = proj_lineage
_STACK_WALK = sa.text(
    """WITH RECURSIVE walk(seq, digest, below_seq, n) AS (
        SELECT seq, digest, below_seq, 0 FROM proj_stables WHERE stream = :stream AND seq = :top
        UNION ALL
        SELECT s.seq, s.digest, s.below_seq, walk.n + 1 FROM proj_stables s
            JOIN walk ON s.stream = :stream AND s.seq = walk.below_seq
        WHERE walk.n + 1 < :limit
    ) SELECT digest FROM walk ORDER BY n"""
)
_STABLE_COLS = tuple(
    _PS.c[name]
    for name in (
        "seq",
        "digest",
        "image",
        "promoted_at",
        "promoted_by",
        "event_id",
        "previous_stable",
        "restore",
        "below_seq",
        "popped_seq",
    )
)


def _page(limit: int | None) -> int:
    return _NO_LIMIT if limit is None else max(0, int(limit))


def _workload_row(conn: sa.Connection, workload: str) -> Any:
    return conn.execute(
        sa.select(proj_workloads.c.last_seq, proj_workloads.c.top_seq, proj_workloads.c.candidates).where(
            proj_workloads.c.stream == workload
        )
    ).first()


def _stack_digests(conn: sa.Connection, workload: str, top: int | None, limit: int) -> list[str]:
    """Digests on the stack from ``top`` down (at most ``limit``)."""
    if top is None or limit <= 0:
        return []
    rows = conn.execute(_STACK_WALK, {"stream": workload, "top": top, "limit": limit})
    return [str(d) for d in rows.scalars()]


def _summary_approvals(digest: str, summary: dict[str, Any]) -> tuple[ApprovalRecord, ...]:
    return tuple(
        ApprovalRecord(
            event_id=a[0],
            seq=a[1],
            digest=digest,
            stage=a[2],
            operator=a[3],
            recorded_at=a[4],
            retrospective=a[5],
            revoked=a[6],
        )
        for a in summary["approvals"]
    )


def _exception_records(digest: str, summary: dict[str, Any]) -> tuple[ExceptionRecord, ...]:
    return tuple(ExceptionRecord(digest=digest, **x) for x in summary["exceptions"])


def _candidate_status(workload: str, row: Any, current: str | None) -> CandidateStatus:
    digest, summary_text, promoted, rolled_back = row[0], row[1], row[2], row[3]
    summary = json.loads(summary_text)
    if digest == current:
        phase = "stable"
    elif rolled_back:
        phase = "rolled-back"
    elif promoted:
        phase = "superseded"
    else:
        phase = summary["base_phase"]
    return CandidateStatus(
        digest=digest,
        image=summary["image"],
        partition_key=partition_key(workload, digest),
        registered_at=summary["registered_at"],
        registered_by=summary["registered_by"],
        stages=tuple(StageResult(*r) for r in summary["stages"]),
        state=phase,
        approvals=_summary_approvals(digest, summary),
        exceptions=_exception_records(digest, summary),
    )


_CANDIDATE_PAGES: dict[tuple[str, int], Any] = {}


def _newest(conn: sa.Connection, workload: str, key: str, limit: int) -> list[Any]:
    """The newest ``limit`` candidate rows whose ``key`` column is set (``reg_seq``: every registered
    one; ``pending_key``, ``awaiting_key``, ``open_key``: those lists), oldest first. One backward
    range scan of the ``(stream, key)`` index."""
    stmt = _CANDIDATE_PAGES.get((key, limit))
    if stmt is None:
        column = _PC.c[key]
        stmt = (
            sa.select(_PC.c.digest, _PC.c.summary, _PC.c.promoted, _PC.c.rolled_back, _PC.c.open_stage)
            .where(_PC.c.stream == sa.bindparam("stream"), column.is_not(None))
            .order_by(column.desc())
            .limit(limit)
        )
        if len(_CANDIDATE_PAGES) < 256:
            _CANDIDATE_PAGES[(key, limit)] = stmt
    rows = list(conn.execute(stmt, {"stream": workload}).all())
    rows.reverse()
    return rows


_WORKLOAD_ROW = sa.select(
    proj_workloads.c.last_seq, proj_workloads.c.top_seq, proj_workloads.c.candidates
).where(proj_workloads.c.stream == sa.bindparam("stream"))


def workload_status(store: EventStore, workload: str, *, limit: int | None = DEFAULT_PAGE) -> WorkloadStatus:
    """Every candidate's stage state, the stables, pending approvals and unreviewed emergency exceptions.

    Read from the projection tables: the cost does not grow with the workload's history. With
    ``limit`` (default :data:`DEFAULT_PAGE`) the newest ``limit`` candidates, pending approvals,
    unreviewed exceptions and earlier stables are listed (``candidate_count`` tells how many
    there are); ``limit=None`` lists all.
    """
    lim = _page(limit)
    with store.reading("status") as conn:
        work = conn.execute(_WORKLOAD_ROW, {"stream": workload}).first()
        if work is None:
            return WorkloadStatus(workload, 0, (), None, (), (), ())
        last_seq, top, count = int(work[0]), work[1], int(work[2])
        stack = _stack_digests(conn, workload, top, lim + 1 if lim < _NO_LIMIT else lim)
        current = stack[0] if stack else None
        rows = _newest(conn, workload, "reg_seq", lim) if lim else []
        pending_rows = [r for r in _newest(conn, workload, "pending_key", lim) if r[0] != current]
        awaiting_rows = _newest(conn, workload, "awaiting_key", lim)
        open_rows = _newest(conn, workload, "open_key", 8)
    pending: list[PendingApproval] = []
    for row in pending_rows:
        p = json.loads(row[1])["pending"]
        pending.append(PendingApproval(digest=row[0], stage=p["stage"], since=p["since"], reason=p["reason"]))
    awaiting = [
        x
        for row in awaiting_rows
        for x in _exception_records(row[0], json.loads(row[1]))
        if not x.retrospectively_approved
    ]
    canary = next((str(r[0]) for r in reversed(open_rows) if r[4] == 2), None)
    return WorkloadStatus(
        workload=workload,
        last_seq=last_seq,
        candidates=tuple(_candidate_status(workload, row, current) for row in rows),
        current_stable=current,
        earlier_stables=tuple(stack[1:]),
        pending_approvals=tuple(pending),
        awaiting_retrospective=tuple(awaiting),
        candidate_count=count,
        open_canary=canary,
    )


def open_canary_digest(store: EventStore, workload: str) -> str | None:
    """The candidate whose Stage 2 canary is open (started, not completed nor rolled back), or None."""
    return workload_status(store, workload, limit=0).open_canary


def candidates(store: EventStore, workload: str) -> list[CandidateStatus]:
    """Every registered candidate of ``workload`` with its stage state, in registration order."""
    return list(workload_status(store, workload).candidates)


def history(
    store: EventStore, workload: str, *, limit: int | None = None, before: int | None = None
) -> list[RecordedEvent]:
    """The workload's events in order; with ``limit``, only the newest ``limit`` of them; with
    ``before``, only events whose seq is below it (the next older page starts at the first seq shown)."""
    stmt = sa.select(*(events.c[name] for name in EVENT_COLUMNS)).where(events.c.stream == workload)
    if before is not None:
        stmt = stmt.where(events.c.seq < before)
    if limit is not None:
        stmt = stmt.order_by(events.c.version.desc()).limit(max(0, limit))
        with store.reading("history") as conn:
            rows = list(conn.execute(stmt).all())
        rows.reverse()
    else:
        with store.reading("history") as conn:
            rows = list(conn.execute(stmt.order_by(events.c.version)).all())
    return [row_to_event(row) for row in rows]


_LINEAGE_AT = (
    sa.select(_PL.c.seq, _PL.c.top_seq)
    .where(_PL.c.stream == sa.bindparam("stream"), _PL.c.recorded_at <= sa.bindparam("at"))
    .order_by(_PL.c.recorded_at.desc(), _PL.c.seq.desc())
    .limit(1)
)


def _stable_record(row: Any, state: StableState, approvals: tuple[ApprovalRecord, ...]) -> StableRecord:
    return StableRecord(
        digest=row.digest,
        image=row.image,
        promoted_at=row.promoted_at,
        promoted_by=row.promoted_by,
        event_id=row.event_id,
        seq=int(row.seq),
        previous_stable=row.previous_stable,
        restore=json.loads(row.restore),
        approvals=approvals,
        state=state,
    )


_BELOW = (
    sa.select(_PS.c.below_seq)
    .where(_PS.c.stream == sa.bindparam("stream"), _PS.c.seq == sa.bindparam("top"))
    .scalar_subquery()
)
_TOP_AND_BELOW = sa.select(*_STABLE_COLS).where(
    _PS.c.stream == sa.bindparam("stream"), sa.or_(_PS.c.seq == sa.bindparam("top"), _PS.c.seq == _BELOW)
)
_STABLES_PAGE = (
    sa.select(*_STABLE_COLS)
    .where(_PS.c.stream == sa.bindparam("stream"), _PS.c.seq <= sa.bindparam("upper"))
    .order_by(_PS.c.seq.desc())
    .limit(sa.bindparam("lim"))
)
_ROLLBACKS_PAGE = (
    sa.select(_PL.c.rollback)
    .where(
        _PL.c.stream == sa.bindparam("stream"),
        _PL.c.kind == _K.ROLLBACK_COMPLETED.value,
        _PL.c.seq <= sa.bindparam("upper"),
    )
    .order_by(_PL.c.seq.desc())
    .limit(sa.bindparam("lim"))
)
_SUMMARIES = sa.select(_PC.c.digest, _PC.c.summary).where(
    _PC.c.stream == sa.bindparam("stream"), _PC.c.digest.in_(sa.bindparam("digests", expanding=True))
)
_FOLD_INPUTS = sa.select(_PC.c.digest, _PC.c.fold_events).where(
    _PC.c.stream == sa.bindparam("stream"), _PC.c.digest.in_(sa.bindparam("digests", expanding=True))
)


def _current_approvals(
    conn: sa.Connection, workload: str, digests: Sequence[str]
) -> dict[str, tuple[ApprovalRecord, ...]]:
    """Approvals as they stand now, from the candidates' projection rows."""
    if not digests:
        return {}
    rows = conn.execute(_SUMMARIES, {"stream": workload, "digests": sorted(set(digests))})
    return {str(d): _summary_approvals(str(d), json.loads(t)) for d, t in rows}


def lineage(
    store: EventStore,
    workload: str,
    *,
    at: str | None = None,
    limit: int | None = DEFAULT_PAGE,
    before: int | None = None,
) -> Lineage:
    """The stable history of ``workload``: promotions push a stable, rollbacks return to ``final_stable``.

    With ``at`` (ISO-8601), only events recorded at or before that instant count: the answer is the
    last promotion or rollback at or before ``at`` (an index on time), not a replay. ``stables`` and
    ``rollbacks`` hold the newest ``limit`` of each (``limit=None``: all), below seq ``before`` when
    given; ``stack`` the top ``limit`` entries. ``current_stable`` and ``rollback_target`` are
    always given.
    """
    return _lineage(store, workload, at=at, limit=limit, before=before, page=True)


def _lineage(
    store: EventStore,
    workload: str,
    *,
    at: str | None,
    limit: int | None,
    before: int | None,
    page: bool,
) -> Lineage:
    at_norm = _normalize_at(at)
    lim = _page(limit)
    empty = Lineage(
        workload=workload, at=at_norm, current_stable=None, rollback_target=None, stables=(), rollbacks=()
    )
    with store.reading("lineage") as conn:
        if at_norm is None:
            work = _workload_row(conn, workload)
            if work is None:
                return empty
            top, bound = work[1], _NO_LIMIT
        else:
            found = conn.execute(_LINEAGE_AT, {"stream": workload, "at": at_norm}).first()
            if found is None:
                return empty
            bound, top = int(found[0]), found[1]
        top_row = below_row = None
        if top is not None:
            for row in conn.execute(_TOP_AND_BELOW, {"stream": workload, "top": top}):
                if int(row.seq) == int(top):
                    top_row = row
                else:
                    below_row = row
        upper = min(bound, (before - 1) if before is not None else _NO_LIMIT)
        stable_rows: list[Any] = []
        rollback_rows: list[Any] = []
        stack: list[str] = []
        if page:
            params = {"stream": workload, "upper": upper, "lim": lim}
            stable_rows = list(conn.execute(_STABLES_PAGE, params))
            stable_rows.reverse()
            rollback_rows = list(conn.execute(_ROLLBACKS_PAGE, params).scalars())
            rollback_rows.reverse()
            stack = _stack_digests(conn, workload, top, lim)
            stack.reverse()
        wanted = {r.digest for r in stable_rows}
        if top_row is not None:
            wanted.add(top_row.digest)
        if below_row is not None:
            wanted.add(below_row.digest)
        if at_norm is None:
            approvals = _current_approvals(conn, workload, sorted(wanted))
        else:
            approvals = _approvals_at(conn, workload, sorted(wanted), at_norm)

    def state_of(row: Any) -> StableState:
        if top is not None and int(row.seq) == int(top):
            return "current"
        if row.popped_seq is not None and int(row.popped_seq) <= bound:
            return "rolled-back"
        return "superseded"

    def record(row: Any) -> StableRecord:
        return _stable_record(row, state_of(row), approvals.get(row.digest, ()))

    current = record(top_row) if top_row is not None else None
    target: RollbackTarget | None = None
    if below_row is not None:
        prev = record(below_row)
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
        stables=tuple(record(r) for r in stable_rows),
        rollbacks=tuple(RollbackRecord(**json.loads(text)) for text in rollback_rows),
        stack=tuple(stack),
    )


_APPROVAL_KINDS = frozenset({_K.APPROVAL_GRANTED.value, _K.APPROVAL_REVOKED.value})


def _approvals_at(
    conn: sa.Connection, workload: str, digests: Sequence[str], at: str
) -> dict[str, tuple[ApprovalRecord, ...]]:
    """Approvals as they stood at ``at``: the fold over each digest's approval events recorded up to
    then, read from the candidates' projection rows (their fold inputs), not from the log."""
    if not digests:
        return {}
    wanted = sorted(set(digests))
    out: dict[str, tuple[ApprovalRecord, ...]] = {}
    refold: list[str] = []
    for digest, text in conn.execute(_SUMMARIES, {"stream": workload, "digests": wanted}):
        summary = json.loads(text)
        last = summary.get("approvals_at")
        if last is None:
            continue
        if last <= at:  # nothing about its approvals changed after ``at``: the current answer holds
            out[str(digest)] = _summary_approvals(str(digest), summary)
        else:
            refold.append(str(digest))
    if refold:
        for digest, text in conn.execute(_FOLD_INPUTS, {"stream": workload, "digests": refold}):
            evs = [
                FoldEvent(*item) for item in json.loads(text) if item[2] in _APPROVAL_KINDS and item[6] <= at
            ]
            if evs:
                out[str(digest)] = _approval_records(CandidateState.from_events(evs, str(digest)))
    return out


_TARGET = sa.text(
    """SELECT t.seq, t.digest, t.previous_stable, b.seq, b.digest, b.image, b.promoted_at, b.event_id,
              b.restore, c.summary
       FROM proj_workloads w
       JOIN proj_stables t ON t.stream = w.stream AND t.seq = w.top_seq
       LEFT JOIN proj_stables b ON b.stream = w.stream AND b.seq = t.below_seq
       LEFT JOIN proj_candidates c ON c.stream = w.stream AND c.digest = b.digest
       WHERE w.stream = :stream"""
)


def rollback_target(store: EventStore, workload: str) -> RollbackTarget | None:
    """Where a rollback of ``workload`` goes now (None when the ledger knows no earlier stable).

    One indexed query over the projection tables (current stable, the one below it, its approvals).
    """
    with store.reading("rollback_target") as conn:
        row = conn.execute(_TARGET, {"stream": workload}).first()
    if row is None:
        return None
    _top_seq, _top_digest, previous, below_seq, digest, image, promoted_at, event_id, restore, summary = row
    if below_seq is None:
        if not previous:
            return None
        return RollbackTarget(
            digest=previous,
            image=None,
            restore={},
            approvals=(),
            promoted_at=None,
            promotion_event_id=None,
            known=False,
            kind="digest-only",
        )
    return RollbackTarget(
        digest=digest,
        image=image,
        restore=json.loads(restore),
        approvals=_summary_approvals(digest, json.loads(summary)) if summary else (),
        promoted_at=promoted_at,
        promotion_event_id=event_id,
        known=event_id is not None,
    )


def candidates_to_retain(store: EventStore, workload: str, keep: int) -> set[str]:
    """The digests whose Dagster partitions stay under retention (issue 17 item 3).

    The newest ``keep`` registered candidates, every digest that was ever stable (the current one
    and every possible rollback target among them), and any candidate with a stage open. Reads the
    projection tables only (cost O(keep + stables)).
    """
    with store.reading("candidates_to_retain") as conn:
        newest = conn.execute(
            sa.select(_PC.c.digest)
            .where(_PC.c.stream == workload, _PC.c.reg_seq.is_not(None))
            .order_by(_PC.c.reg_seq.desc())
            .limit(max(0, keep))
        ).scalars()
        keep_set = {str(d) for d in newest}
        keep_set.update(
            str(d) for d in conn.execute(sa.select(_PS.c.digest).where(_PS.c.stream == workload)).scalars()
        )
        keep_set.update(
            str(d)
            for d in conn.execute(
                sa.select(_PC.c.digest).where(_PC.c.stream == workload, _PC.c.open_key.is_not(None))
            ).scalars()
        )
    return keep_set


def events_after(store: EventStore, seq: int, *, limit: int = 1_000) -> list[RecordedEvent]:
    """Events with a seq above ``seq``, oldest first, at most ``limit``: a sensor's cursor read,
    whose cost depends on the new events only (primary key range)."""
    return list(store.read_all(after_seq=seq, limit=limit))


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
            f"partition key {shown(key)}: no registered candidate of {workload!r} has a digest starting "
            f"{short}",
            hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
        )
    if len(found) > 1:
        raise LedgerError(
            f"partition key {shown(key)} is ambiguous: it matches {' and '.join(found)}",
            hint="refusing to guess; address the candidate by its full digest",
        )
    return found[0]
