"""The candidate-state fold: every fact about one candidate, derived from its events in one place.

``CandidateState.from_events(history, digest)`` reads the candidate's events in ledger order and
answers what every reader asks (the lifecycle rules at append, the stage services, approvals,
readiness, projections, Dagster):

- stage results: the latest ``stage.completed`` per stage, and which stages count. A rollback
  resets its candidate: results and emergency exceptions recorded before it no longer count (the
  candidate starts again from Stage 1, or may never progress when the rollback blocked or
  abandoned it);
- approvals per stage: the latest decision (grant or revocation) decides whether an approval is in
  force; each grant also says whether a revocation names it. No approval carries an expiry today;
- waivers per stage: the latest ``waiver.granted`` per gate;
- emergency exceptions, and whether a retrospective approval still in force covers each;
- the open stage (a Stage 2 canary or a Stage 3 promotion started and not completed);
- the candidate's phase (``CandidatePhase``).

Pure: payloads are read through ``domain.payloads`` (typed, older versions upcast); no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.gates import CandidatePhase
from railiance_ledger.domain.payloads import (
    ApprovalGranted,
    ApprovalRevoked,
    ExceptionEmergency,
    InvalidPayload,
    Payload,
    RollbackCompleted,
    StageCompleted,
    WaiverGranted,
    parse_as,
)

__all__ = [
    "TERMINAL_FATES",
    "ApprovalStatus",
    "CandidateState",
    "EventLike",
    "ExceptionRecord",
    "Grant",
    "Revocation",
    "StageRecord",
    "WaiverRecord",
    "candidate_states",
]

TERMINAL_FATES = frozenset({"blocked", "abandoned"})
"""Rollback fates after which a candidate may never move toward production again."""


class EventLike(Protocol):
    """What the fold reads of an event. ``event_id``, ``seq``, ``actor`` and ``recorded_at`` are
    read when present (the append-time rules pass lighter history rows)."""

    @property
    def kind(self) -> str: ...
    @property
    def candidate(self) -> str | None: ...
    @property
    def stage(self) -> int | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class StageRecord:
    """One ``stage.completed``: the stage, ``pass`` or ``fail``, and where it is in the ledger."""

    stage: int
    status: str
    event_id: str
    seq: int
    recorded_at: str

    @property
    def passed(self) -> bool:
        """True when the result passed."""
        return self.status == "pass"


@dataclass(frozen=True)
class Grant:
    """One ``approval.granted``; ``revoked`` when a later revocation names it (or its stage)."""

    event_id: str
    seq: int
    stage: int | None
    actor: str
    operator: str
    recorded_at: str
    retrospective: bool
    covers_exceptions: tuple[str, ...]
    payload: ApprovalGranted
    revoked: bool = False
    index: int = 0
    """Position in the candidate's history (orders events that carry no ``seq``)."""


@dataclass(frozen=True)
class Revocation:
    """One ``approval.revoked``: who, when, which approval (``None``: the stage's latest) and why."""

    event_id: str
    seq: int
    stage: int | None
    actor: str
    recorded_at: str
    approval_id: str | None
    reason: str | None
    payload: ApprovalRevoked


@dataclass(frozen=True)
class ApprovalStatus:
    """Whether an approval of the candidate for ``stage`` is in force: the latest decision decides.

    ``grant`` is the approval in force (``None`` when none is); ``revocation`` is set when the
    latest decision was a revocation; ``trail`` is every grant and revocation of the stage in order.
    """

    stage: int
    grant: Grant | None = None
    revocation: Revocation | None = None
    approval_id: str | None = None
    """The approval the latest decision concerns (granted, or revoked)."""
    trail: tuple[Grant | Revocation, ...] = ()

    @property
    def in_force(self) -> bool:
        """True when an approval for the stage is in force."""
        return self.grant is not None

    @property
    def revoked(self) -> bool:
        """True when the latest decision was a revocation."""
        return self.revocation is not None


@dataclass(frozen=True)
class WaiverRecord:
    """The latest ``waiver.granted`` of one gate for one stage of the candidate."""

    gate: str
    stage: int | None
    event_id: str
    seq: int
    actor: str
    reason: str
    payload: WaiverGranted


@dataclass(frozen=True)
class ExceptionRecord:
    """One ``exception.emergency``; ``covered_by`` names the retrospective approval covering it."""

    event_id: str
    seq: int
    skip_stage: int | None
    actor: str
    operator: str
    reason: str
    recorded_at: str
    payload: ExceptionEmergency
    covered_by: str | None = None

    @property
    def awaiting_retrospective(self) -> bool:
        """True while no retrospective approval in force covers it."""
        return self.covered_by is None


@dataclass(frozen=True)
class CandidateState:
    """Every fact about one candidate that its events establish (see the module docstring)."""

    digest: str
    registered: bool = False
    registration: Mapping[str, Any] = field(default_factory=dict)
    results: Mapping[int, StageRecord] = field(default_factory=dict)
    """The latest result per stage since the latest rollback (the ones that count)."""
    all_results: Mapping[int, StageRecord] = field(default_factory=dict)
    """The latest result per stage over the whole history (for display)."""
    skipped: frozenset[int] = frozenset()
    """Stages an emergency exception skips since the latest rollback."""
    skipped_ever: frozenset[int] = frozenset()
    """Stages any emergency exception of the candidate skips (rollbacks not considered)."""
    approvals: Mapping[int, ApprovalStatus] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    revocations: tuple[Revocation, ...] = ()
    waivers: Mapping[int | None, Mapping[str, WaiverRecord]] = field(default_factory=dict)
    exceptions: tuple[ExceptionRecord, ...] = ()
    open_stage: int | None = None
    """Stage 2 or 3 when its ``stage.started`` has no ``stage.completed`` (nor rollback) yet."""
    promoted: bool = False
    """A ``promotion.completed`` since the latest rollback."""
    rolled_back: bool = False
    fate: str | None = None
    """The fate the latest rollback recorded: ``returned-to-stage1``, ``blocked``, ``abandoned``."""

    # ------------------------------------------------------------------------------ the fold

    @classmethod
    def from_events(cls, history: Iterable[EventLike], digest: str | None = None) -> CandidateState:
        """Fold the events of candidate ``digest`` (others in ``history`` are skipped) in order.

        Without ``digest``, the candidate of the first event that names one.
        """
        return _Fold(digest).run(history)

    # ------------------------------------------------------------------------------ questions

    def passed(self, stage: int) -> bool:
        """True when the latest result for ``stage`` since the latest rollback passed."""
        result = self.results.get(stage)
        return result is not None and result.passed

    def excepted(self, stage: int) -> bool:
        """True when an emergency exception since the latest rollback skips ``stage``."""
        return stage in self.skipped

    def satisfied(self, stage: int) -> bool:
        """True when ``stage`` passed or is skipped by an emergency exception."""
        return self.passed(stage) or self.excepted(stage)

    def first_unsatisfied_before(self, stage: int) -> int | None:
        """The first earlier stage neither passed nor skipped (stages are sequential), else ``None``."""
        return next((k for k in range(1, stage) if not self.satisfied(k)), None)

    @property
    def terminal(self) -> bool:
        """True when a rollback blocked or abandoned the candidate."""
        return self.fate in TERMINAL_FATES

    def approval(self, stage: int) -> ApprovalStatus:
        """The approval status of ``stage`` (never granted: an empty status)."""
        return self.approvals.get(stage) or ApprovalStatus(stage=stage)

    def approval_in_force(self, stage: int) -> Grant | None:
        """The approval of ``stage`` in force, or ``None``."""
        return self.approval(stage).grant

    def revoked_since(self, stage: int, seq: int) -> bool:
        """True when a revocation of ``stage`` (or naming no stage) was recorded after ``seq``."""
        return any(r.seq > seq and r.stage in (None, stage) for r in self.revocations)

    def waivers_for(self, stage: int) -> Mapping[str, WaiverRecord]:
        """The latest waiver per gate recorded for ``stage`` (and those naming no stage)."""
        out = dict(self.waivers.get(None, {}))
        out.update(self.waivers.get(stage, {}))
        return out

    @property
    def awaiting_retrospective(self) -> tuple[ExceptionRecord, ...]:
        """Emergency exceptions no retrospective approval in force covers, oldest first."""
        return tuple(e for e in self.exceptions if e.awaiting_retrospective)

    @property
    def phase(self) -> CandidatePhase:
        """Where the candidate stands: its fate after a rollback, else how far it got."""
        if self.fate == "blocked":
            return CandidatePhase.BLOCKED
        if self.fate == "abandoned":
            return CandidatePhase.ABANDONED
        if self.promoted or self.passed(3):
            return CandidatePhase.PROMOTED
        if self.open_stage == 2:
            return CandidatePhase.CANARY
        if self.satisfied(2):
            return CandidatePhase.CANARY_ACCEPTED
        if self.satisfied(1):
            return CandidatePhase.LOCALLY_VALIDATED
        if self.fate == "returned-to-stage1":
            return CandidatePhase.RETURNED_TO_STAGE1
        return CandidatePhase.REGISTERED


def candidate_states(history: Iterable[EventLike]) -> dict[str, CandidateState]:
    """The state of every candidate named in ``history`` (one stream), in first-seen order."""
    events = list(history)
    digests = list(dict.fromkeys(ev.candidate for ev in events if ev.candidate))
    return {d: CandidateState.from_events(events, d) for d in digests}


# ---------------------------------------------------------------------------------- the fold


P = TypeVar("P", bound=Payload)


def _read(model: type[P], payload: Mapping[str, Any]) -> P | None:
    """The typed payload, or ``None`` when a record (older than validation at append) does not parse.

    Callers fail closed on ``None``: an unreadable result is a failure, an unreadable grant grants
    nothing, an unreadable revocation revokes its whole stage, an unreadable waiver waives nothing.
    """
    try:
        return parse_as(model, payload)
    except InvalidPayload:
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class _Fold:
    """Mutable state while folding; ``run`` returns the frozen ``CandidateState``."""

    def __init__(self, digest: str | None) -> None:
        self.digest = digest
        self.registered = False
        self.registration: dict[str, Any] = {}
        self.results: dict[int, StageRecord] = {}
        self.all_results: dict[int, StageRecord] = {}
        self.skipped: set[int] = set()
        self.skipped_ever: set[int] = set()
        self.grants: list[Grant] = []
        self.revocations: list[Revocation] = []
        self.decisions: dict[int, list[Grant | Revocation]] = {}
        self.waivers: dict[int | None, dict[str, WaiverRecord]] = {}
        self.exceptions: list[tuple[int, ExceptionRecord]] = []
        self.open_stage: int | None = None
        self.promoted = False
        self.rolled_back = False
        self.fate: str | None = None

    def run(self, history: Iterable[EventLike]) -> CandidateState:
        for index, ev in enumerate(history):
            if not ev.candidate:
                continue
            if self.digest is None:
                self.digest = ev.candidate
            if ev.candidate != self.digest:
                continue
            self.step(index, ev)
        return self.freeze()

    def step(self, index: int, ev: EventLike) -> None:
        kind = ev.kind
        if kind == EventKind.STAGE_STARTED:
            if ev.stage in (2, 3):
                self.open_stage = ev.stage
            return
        event_id: str = getattr(ev, "event_id", None) or ""
        seq: int = getattr(ev, "seq", None) or index
        actor: str = getattr(ev, "actor", None) or ""
        at: str = getattr(ev, "recorded_at", None) or ""
        if kind == EventKind.CANDIDATE_REGISTERED:
            if not self.registered:
                self.registration = dict(ev.payload)
            self.registered = True
        elif kind == EventKind.STAGE_COMPLETED and ev.stage is not None:
            passed = StageCompleted.passed_in(ev.payload)
            record = StageRecord(ev.stage, "pass" if passed else "fail", event_id, seq, at)
            self.results[ev.stage] = record
            self.all_results[ev.stage] = record
            if self.open_stage == ev.stage:
                self.open_stage = None
        elif kind == EventKind.PROMOTION_COMPLETED:
            self.promoted = True
        elif kind == EventKind.EXCEPTION_EMERGENCY:
            exc = _read(ExceptionEmergency, ev.payload) or ExceptionEmergency()
            skip = _int(exc.skip_stage)
            if skip is not None:
                self.skipped.add(skip)
                self.skipped_ever.add(skip)
            record_exc = ExceptionRecord(
                event_id, seq, skip, actor, str(exc.operator or actor), str(exc.reason or ""), at, exc
            )
            self.exceptions.append((index, record_exc))
        elif kind == EventKind.APPROVAL_GRANTED:
            granted = _read(ApprovalGranted, ev.payload)
            if granted is None:
                return
            stage = ev.stage if ev.stage is not None else _int(granted.stage)
            grant = Grant(
                event_id=event_id,
                seq=seq,
                stage=stage,
                actor=actor,
                operator=str(granted.operator or actor),
                recorded_at=at,
                retrospective=granted.retrospective,
                covers_exceptions=tuple(str(x) for x in granted.covers_exceptions),
                payload=granted,
                index=index,
            )
            self.grants.append(grant)
            if stage is not None:
                self.decisions.setdefault(stage, []).append(grant)
        elif kind == EventKind.APPROVAL_REVOKED:
            self.revoke(ev, event_id, seq, actor, at)
        elif kind == EventKind.WAIVER_GRANTED:
            waiver = _read(WaiverGranted, ev.payload) or WaiverGranted()
            scoped = waiver.scoped_candidate()
            gate = waiver.scoped_gate()
            if gate and scoped in (None, self.digest):
                stage = waiver.scoped_stage(ev.stage)
                self.waivers.setdefault(stage, {})[gate] = WaiverRecord(
                    gate, stage, event_id, seq, actor, str(waiver.reason or ""), waiver
                )
        elif kind == EventKind.ROLLBACK_COMPLETED:
            done = _read(RollbackCompleted, ev.payload)
            self.fate = done.candidate_fate if done is not None else None
            self.rolled_back = True
            self.results = {}
            self.skipped = set()
            self.promoted = False
            self.open_stage = None

    def revoke(self, ev: EventLike, event_id: str, seq: int, actor: str, at: str) -> None:
        revoked = _read(ApprovalRevoked, ev.payload) or ApprovalRevoked()
        target = revoked.approval_id
        stage = ev.stage if ev.stage is not None else _int(revoked.stage)
        if stage is None and target is not None:
            stage = next((g.stage for g in self.grants if g.event_id == target), None)
        revocation = Revocation(event_id, seq, stage, actor, at, target, revoked.reason, revoked)
        self.revocations.append(revocation)
        self.grants = [
            _revoked(g)
            if g.event_id == target or (target is None and (stage is None or g.stage == stage))
            else g
            for g in self.grants
        ]
        for st in [stage] if stage is not None else list(self.decisions):
            self.decisions.setdefault(st, []).append(revocation)

    def freeze(self) -> CandidateState:
        grants = {g.event_id: g for g in self.grants}
        approvals: dict[int, ApprovalStatus] = {}
        for stage, trail in self.decisions.items():
            trail = [grants.get(d.event_id, d) if isinstance(d, Grant) else d for d in trail]
            last = trail[-1]
            if isinstance(last, Grant):
                approvals[stage] = ApprovalStatus(stage, last, None, last.event_id, tuple(trail))
            else:
                previous = next((d.event_id for d in reversed(trail) if isinstance(d, Grant)), None)
                approvals[stage] = ApprovalStatus(
                    stage, None, last, last.approval_id or previous, tuple(trail)
                )
        exceptions = []
        for index, exc in self.exceptions:
            cover = next(
                (
                    g
                    for g in self.grants
                    if g.retrospective
                    and not g.revoked
                    and g.index > index
                    and (not g.covers_exceptions or exc.event_id in g.covers_exceptions)
                ),
                None,
            )
            exceptions.append(_covered(exc, cover.event_id if cover else None))
        return CandidateState(
            digest=self.digest or "",
            registered=self.registered,
            registration=self.registration,
            results=dict(self.results),
            all_results=dict(self.all_results),
            skipped=frozenset(self.skipped),
            skipped_ever=frozenset(self.skipped_ever),
            approvals=approvals,
            grants=tuple(self.grants),
            revocations=tuple(self.revocations),
            waivers={k: dict(v) for k, v in self.waivers.items()},
            exceptions=tuple(exceptions),
            open_stage=self.open_stage,
            promoted=self.promoted,
            rolled_back=self.rolled_back,
            fate=self.fate,
        )


def _revoked(grant: Grant) -> Grant:
    return replace(grant, revoked=True)


def _covered(exc: ExceptionRecord, by: str | None) -> ExceptionRecord:
    return replace(exc, covered_by=by)
