"""Keeps the projection tables (``schema.proj_*``) in step with the events, in the append's transaction.

The :class:`Projector` applies events in seq order to the rows they touch and writes the changed
rows back with upserts at :meth:`Projector.flush`. The append runs it inside its locked transaction
(so a projection is never behind or ahead of the log), and :func:`rebuild` runs the same code over
the whole log, stream by stream, after deleting the projection rows: a rebuild equals the
incremental result by construction, and the tests check both against a full replay.

What is kept (see docs/ledger.md, "Projections"):

- ``proj_candidates``: per candidate, its fold inputs (the status kinds; a stage result reduced to
  its ``status``, a promotion to nothing) and the summary the candidate-state fold gives (stage
  results, approvals, exceptions, the phase before the workload's stable stack is considered, the
  pending approval). The append's rule check reads this one row instead of the candidate's events.
- ``proj_workloads``: last status seq, the current stable (top of the stack), candidate count.
- ``proj_stables``: the stable stack as a linked list (``below_seq`` fixed at the push,
  ``popped_seq`` set by the rollback that pops it).
- ``proj_lineage``: one row per promotion/rollback with the top after it (``lineage --at``).

The I/O is plain DB-API on the driver connection (``?`` on SQLite, ``%s`` on psycopg), so the
append keeps its fixed statements; the cost of an append is O(the candidate's own events), never
O(the workload's history). A rollback pops each stable once (amortized O(1)).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.payloads import (
    CandidateRegistered,
    PromotionCompleted,
    RollbackCompleted,
    read_or_default,
)

_K = EventKind

STATUS_KINDS: frozenset[str] = frozenset(
    k.value
    for k in (
        _K.CANDIDATE_REGISTERED,
        _K.STAGE_STARTED,
        _K.STAGE_COMPLETED,
        _K.APPROVAL_GRANTED,
        _K.APPROVAL_REVOKED,
        _K.EXCEPTION_EMERGENCY,
        _K.PROMOTION_COMPLETED,
        _K.ROLLBACK_COMPLETED,
    )
)
"""The kinds the projections read; every other kind leaves them unchanged."""

_CAND_COLS = (
    "stream",
    "digest",
    "reg_seq",
    "last_seq",
    "fold_events",
    "summary",
    "pending_stage",
    "awaiting",
    "open_stage",
    "promoted",
    "rolled_back",
    "pending_key",
    "awaiting_key",
    "open_key",
)
_WORK_COLS = ("stream", "last_seq", "top_seq", "candidates")
_STABLE_COLS = (
    "stream",
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
_LINEAGE_COLS = ("stream", "seq", "recorded_at", "kind", "top_seq", "rollback")


class FoldEvent(NamedTuple):
    """A light event as the candidate-state fold reads it (``domain.candidate_state.EventLike``)."""

    seq: int
    event_id: str
    kind: str
    candidate: str | None
    stage: int | None
    actor: str
    recorded_at: str
    payload: dict[str, Any]


def fold_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """What the fold and the status keep of a payload: a result's ``status``, nothing of a promotion."""
    if kind == _K.STAGE_COMPLETED:
        status = payload.get("status")
        return {"status": status} if status in ("pass", "fail") else {}
    if kind in (_K.STAGE_STARTED, _K.PROMOTION_COMPLETED):
        return {}
    return dict(payload)


@dataclass
class CandidateRow:
    """One ``proj_candidates`` row while the projector holds it."""

    stream: str
    digest: str
    reg_seq: int | None = None
    last_seq: int = 0
    events: list[FoldEvent] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    pending_stage: int | None = None
    awaiting: int = 0
    open_stage: int | None = None
    promoted: bool = False
    rolled_back: bool = False
    stale: bool = True
    """The summary needs recomputing from ``events``."""

    def values(self) -> tuple[Any, ...]:
        if self.stale:
            self.refresh()
        return (
            self.stream,
            self.digest,
            self.reg_seq,
            self.last_seq,
            json.dumps([list(e) for e in self.events], separators=(",", ":"), sort_keys=True),
            json.dumps(self.summary, separators=(",", ":"), sort_keys=True),
            self.pending_stage,
            self.awaiting,
            self.open_stage,
            int(self.promoted),
            int(self.rolled_back),
            # a promoted or rolled-back candidate is no longer listed as waiting for an approval
            self.reg_seq
            if self.pending_stage is not None and not (self.promoted or self.rolled_back)
            else None,
            self.reg_seq if self.awaiting else None,
            self.reg_seq if self.open_stage is not None else None,
        )

    def refresh(self) -> None:
        """Recompute the summary and filter columns from the fold of ``events``."""
        self.summary = candidate_summary(self.digest, self.events)
        pending = self.summary.get("pending")
        self.pending_stage = pending["stage"] if pending else None
        self.awaiting = sum(1 for e in self.summary["exceptions"] if not e["retrospectively_approved"])
        self.open_stage = self.summary.get("open_stage")
        self.stale = False


def candidate_summary(digest: str, events: Sequence[FoldEvent]) -> dict[str, Any]:
    """The candidate's status as the fold gives it, before the workload's stable stack is considered.

    ``base_phase`` is the phase shown when the candidate is neither the current stable, nor rolled
    back, nor a superseded stable; ``pending`` the approval it waits for in that case.
    """
    state = CandidateState.from_events(events, digest)
    registration = next((e for e in events if e.kind == _K.CANDIDATE_REGISTERED), None)
    latest: tuple[int, str, int, str, str] | None = None
    for e in events:
        if e.stage is None:
            continue
        if e.kind == _K.STAGE_COMPLETED:
            latest = (int(e.stage), str(e.payload.get("status") or "fail"), e.seq, e.event_id, e.recorded_at)
        elif e.kind == _K.STAGE_STARTED:
            latest = (int(e.stage), "running", e.seq, e.event_id, e.recorded_at)
    required = True
    image = None
    if registration is not None:
        reg = read_or_default(CandidateRegistered, state.registration)
        image = reg.image
        required = reg.approval_required is not False
    pending = None
    if latest is None:
        phase = "registered"
    else:
        phase = f"stage{latest[0]}:{latest[1]}"
        if latest[1] == "pass" and latest[0] in (1, 2):
            nxt = latest[0] + 1
            phase += " (eligible for Stage 2 review)" if nxt == 2 else " (eligible for Stage 3 promotion)"
            if required and state.approval_in_force(nxt) is None:
                pending = {
                    "stage": nxt,
                    "since": latest[4],
                    "reason": f"stage {latest[0]} passed; no approval for stage {nxt} yet",
                }
    return {
        "image": image,
        "registered_at": registration.recorded_at if registration else None,
        "registered_by": registration.actor if registration else None,
        "stages": sorted(
            ([r.stage, r.status, r.seq, r.event_id, r.recorded_at] for r in state.all_results.values()),
            key=lambda r: r[0],
        ),
        "approvals": [
            [g.event_id, g.seq, g.stage, g.operator, g.recorded_at, g.retrospective, g.revoked]
            for g in state.grants
        ],
        "exceptions": [
            {
                "event_id": x.event_id,
                "seq": x.seq,
                "skip_stage": x.skip_stage,
                "operator": x.operator,
                "reason": x.reason,
                "recorded_at": x.recorded_at,
                "retrospectively_approved": not x.awaiting_retrospective,
            }
            for x in state.exceptions
        ],
        "approvals_at": max(
            (e.recorded_at for e in events if e.kind in (_K.APPROVAL_GRANTED, _K.APPROVAL_REVOKED)),
            default=None,
        ),
        "base_phase": phase,
        "pending": pending,
        "open_stage": state.open_stage,
    }


@dataclass
class WorkloadRow:
    stream: str
    last_seq: int = 0
    top_seq: int | None = None
    candidates: int = 0


@dataclass
class StableRow:
    stream: str
    seq: int
    digest: str
    image: str | None
    promoted_at: str
    promoted_by: str
    event_id: str | None
    previous_stable: str | None
    restore: dict[str, Any]
    below_seq: int | None
    popped_seq: int | None = None

    def values(self) -> tuple[Any, ...]:
        return (
            self.stream,
            self.seq,
            self.digest,
            self.image,
            self.promoted_at,
            self.promoted_by,
            self.event_id,
            self.previous_stable,
            json.dumps(self.restore, separators=(",", ":"), sort_keys=True),
            self.below_seq,
            self.popped_seq,
        )


class ProjectionSql:
    """The projector's statements in one DB-API paramstyle (``?`` SQLite, ``%s`` psycopg)."""

    def __init__(self, dialect: str) -> None:
        p = "%s" if dialect == "postgresql" else "?"
        self.get_candidate = (
            f"SELECT {', '.join(_CAND_COLS)} FROM proj_candidates WHERE stream = {p} AND digest = {p}"
        )
        self.get_workload = f"SELECT {', '.join(_WORK_COLS)} FROM proj_workloads WHERE stream = {p}"
        self.get_stable = (
            f"SELECT {', '.join(_STABLE_COLS)} FROM proj_stables WHERE stream = {p} AND seq = {p}"
        )
        self.put_candidate = _upsert("proj_candidates", _CAND_COLS, ("stream", "digest"), p)
        self.put_workload = _upsert("proj_workloads", _WORK_COLS, ("stream",), p)
        self.put_stable = _upsert("proj_stables", _STABLE_COLS, ("stream", "seq"), p)
        self.put_lineage = _upsert("proj_lineage", _LINEAGE_COLS, ("stream", "seq"), p)


def _upsert(table: str, cols: Sequence[str], key: Sequence[str], p: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([p] * len(cols))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _load_events(text: str) -> list[FoldEvent]:
    return [FoldEvent(*item) for item in json.loads(text)]


class Projector:
    """Applies events of one stream in seq order to its projection rows; :meth:`flush` writes them.

    ``cursor`` is a DB-API cursor inside the caller's transaction, or ``None`` when every row starts
    empty (a rebuild after deleting the stream's rows).
    """

    def __init__(self, sql: ProjectionSql, stream: str, cursor: Any | None) -> None:
        self._sql = sql
        self.stream = stream
        self._cur = cursor
        self._candidates: dict[str, CandidateRow] = {}
        self._dirty_candidates: set[str] = set()
        self._workload: WorkloadRow | None = None
        self._stables: dict[int, StableRow] = {}
        self._dirty_stables: set[int] = set()
        self._lineage: list[tuple[Any, ...]] = []

    # -- rows ----------------------------------------------------------------------------------------

    def candidate(self, digest: str) -> CandidateRow:
        """The candidate's row (loaded once, created empty when the ledger has none)."""
        row = self._candidates.get(digest)
        if row is None:
            found = self._fetch(self._sql.get_candidate, (self.stream, digest))
            if found is None:
                row = CandidateRow(self.stream, digest)
            else:
                row = CandidateRow(
                    stream=found[0],
                    digest=found[1],
                    reg_seq=found[2],
                    last_seq=int(found[3]),
                    events=_load_events(found[4]),
                    summary=json.loads(found[5]),
                    pending_stage=found[6],
                    awaiting=int(found[7]),
                    open_stage=found[8],
                    promoted=bool(found[9]),
                    rolled_back=bool(found[10]),
                    stale=False,
                )
            self._candidates[digest] = row
        return row

    def history(self, digest: str) -> list[FoldEvent]:
        """The candidate's fold inputs so far (what the append's rule check reads)."""
        return self.candidate(digest).events

    def workload(self) -> WorkloadRow:
        if self._workload is None:
            found = self._fetch(self._sql.get_workload, (self.stream,))
            self._workload = (
                WorkloadRow(self.stream)
                if found is None
                else WorkloadRow(found[0], int(found[1]), found[2], int(found[3]))
            )
        return self._workload

    def stable(self, seq: int) -> StableRow:
        row = self._stables.get(seq)
        if row is None:
            found = self._fetch(self._sql.get_stable, (self.stream, seq))
            if found is None:
                raise LookupError(f"projection: stable {seq} of {self.stream!r} is missing")
            row = StableRow(
                found[0],
                int(found[1]),
                found[2],
                found[3],
                found[4],
                found[5],
                found[6],
                found[7],
                json.loads(found[8]),
                found[9],
                found[10],
            )
            self._stables[seq] = row
        return row

    def _fetch(self, statement: str, params: tuple[Any, ...]) -> Sequence[Any] | None:
        if self._cur is None:
            return None
        self._cur.execute(statement, params)
        row: Sequence[Any] | None = self._cur.fetchone()
        return row

    def prefetch(self, digests: Iterable[str]) -> None:
        """Load the workload's row and these candidates' rows (before the rule checks)."""
        self.workload()
        for digest in digests:
            self.candidate(digest)

    # -- events --------------------------------------------------------------------------------------

    def apply(
        self,
        seq: int,
        event_id: str,
        kind: str,
        candidate: str | None,
        stage: int | None,
        actor: str,
        recorded_at: str,
        payload: Mapping[str, Any],
    ) -> None:
        """Apply one stored event (in seq order)."""
        if kind not in STATUS_KINDS:
            return
        work = self.workload()
        work.last_seq = seq
        if candidate:
            row = self._touch(candidate)
            row.events.append(
                FoldEvent(
                    seq, event_id, kind, candidate, stage, actor, recorded_at, fold_payload(kind, payload)
                )
            )
            row.last_seq = seq
            row.stale = True
            if kind == _K.CANDIDATE_REGISTERED and row.reg_seq is None:
                row.reg_seq = seq
                work.candidates += 1
        if kind == _K.PROMOTION_COMPLETED:
            self._promote(seq, event_id, candidate, actor, recorded_at, payload)
        elif kind == _K.ROLLBACK_COMPLETED:
            self._rollback(seq, event_id, candidate, stage, actor, recorded_at, payload)

    def _touch(self, digest: str) -> CandidateRow:
        row = self.candidate(digest)
        self._dirty_candidates.add(digest)
        return row

    def _push(self, row: StableRow) -> None:
        self._stables[row.seq] = row
        self._dirty_stables.add(row.seq)
        self.workload().top_seq = row.seq
        self._touch(row.digest).promoted = True

    def _promote(
        self,
        seq: int,
        event_id: str,
        candidate: str | None,
        actor: str,
        recorded_at: str,
        payload: Mapping[str, Any],
    ) -> None:
        promo = read_or_default(PromotionCompleted, payload)
        work = self.workload()
        self._push(
            StableRow(
                stream=self.stream,
                seq=seq,
                digest=str(promo.digest or candidate),
                image=promo.image,
                promoted_at=recorded_at,
                promoted_by=actor,
                event_id=event_id,
                previous_stable=promo.previous_stable,
                restore=dict(payload),
                below_seq=work.top_seq,
            )
        )
        self._lineage.append((self.stream, seq, recorded_at, _K.PROMOTION_COMPLETED.value, seq, None))

    def _pop(self, seq: int) -> None:
        work = self.workload()
        assert work.top_seq is not None
        top = self.stable(work.top_seq)
        top.popped_seq = seq
        self._dirty_stables.add(top.seq)
        self._touch(top.digest).rolled_back = True
        work.top_seq = top.below_seq

    def _rollback(
        self,
        seq: int,
        event_id: str,
        candidate: str | None,
        stage: int | None,
        actor: str,
        recorded_at: str,
        payload: Mapping[str, Any],
    ) -> None:
        done = read_or_default(RollbackCompleted, payload)
        work = self.workload()
        final = done.final_stable
        from_stable = self.stable(work.top_seq).digest if work.top_seq is not None else None
        if candidate:
            self._touch(candidate).rolled_back = True
        if stage == 2:
            final = from_stable  # a Stage 2 rollback removes a canary; production never changed
        if final is None:
            while work.top_seq is not None:
                self._pop(seq)
        else:
            while work.top_seq is not None and self.stable(work.top_seq).digest != final:
                self._pop(seq)
            if work.top_seq is None:
                # The final stable predates what the ledger knows: record it from the rollback.
                self._push(
                    StableRow(
                        stream=self.stream,
                        seq=seq,
                        digest=str(final),
                        image=done.final_image or done.image,
                        promoted_at=recorded_at,
                        promoted_by=actor,
                        event_id=None,
                        previous_stable=None,
                        restore=dict(done.restore or {}),
                        below_seq=None,
                    )
                )
        record = {
            "event_id": event_id,
            "seq": seq,
            "recorded_at": recorded_at,
            "actor": actor,
            "from_stable": from_stable,
            "final_stable": final,
            "candidate": candidate,
            "reason": str(done.reason or ""),
        }
        self._lineage.append(
            (
                self.stream,
                seq,
                recorded_at,
                _K.ROLLBACK_COMPLETED.value,
                work.top_seq,
                json.dumps(record, separators=(",", ":")),
            )
        )

    # -- writing -------------------------------------------------------------------------------------

    def flush(self, cursor: Any) -> None:
        """Write every changed row with upserts through ``cursor`` (inside the caller's transaction)."""
        sql = self._sql
        if self._dirty_candidates:
            cursor.executemany(
                sql.put_candidate, [self._candidates[d].values() for d in sorted(self._dirty_candidates)]
            )
        if self._dirty_stables:
            cursor.executemany(
                sql.put_stable, [self._stables[s].values() for s in sorted(self._dirty_stables)]
            )
        if self._lineage:
            cursor.executemany(sql.put_lineage, self._lineage)
        if self._workload is not None and self._workload.last_seq:
            w = self._workload
            cursor.execute(sql.put_workload, (w.stream, w.last_seq, w.top_seq, w.candidates))
        self._dirty_candidates.clear()
        self._dirty_stables.clear()
        self._lineage.clear()


_REBUILD_KINDS = tuple(sorted(STATUS_KINDS))


def rebuild(raw: Any, dialect: str, streams: Iterable[str] | None = None) -> int:
    """Delete and rebuild the projections of ``streams`` (every stream by default) from the log.

    ``raw`` is the driver connection inside the caller's locked transaction. Returns the number of
    events applied. Each stream is replayed alone (memory is one stream's rows).
    """
    p = "%s" if dialect == "postgresql" else "?"
    sql = ProjectionSql(dialect)
    cur = raw.cursor()
    if streams is None:
        for table in ("proj_candidates", "proj_workloads", "proj_stables", "proj_lineage"):
            cur.execute(f"DELETE FROM {table}")
        cur.execute(
            "SELECT DISTINCT stream FROM events WHERE kind IN "
            f"({', '.join([p] * len(_REBUILD_KINDS))}) ORDER BY stream",
            _REBUILD_KINDS,
        )
        names = [str(r[0]) for r in cur.fetchall()]
    else:
        names = list(streams)
        for name in names:
            for table in ("proj_candidates", "proj_workloads", "proj_stables", "proj_lineage"):
                cur.execute(f"DELETE FROM {table} WHERE stream = {p}", (name,))
    applied = 0
    select = (
        "SELECT seq, event_id, kind, candidate, stage, actor, recorded_at, payload FROM events "
        f"WHERE stream = {p} AND kind IN ({', '.join([p] * len(_REBUILD_KINDS))}) ORDER BY seq"
    )
    for name in names:
        projector = Projector(sql, name, None)
        cur.execute(select, (name, *_REBUILD_KINDS))
        for seq, event_id, kind, candidate, stage, actor, recorded_at, payload in cur.fetchall():
            projector.apply(
                int(seq),
                event_id,
                kind,
                candidate,
                None if stage is None else int(stage),
                actor,
                recorded_at,
                json.loads(payload),
            )
            applied += 1
        projector.flush(cur)
    return applied
