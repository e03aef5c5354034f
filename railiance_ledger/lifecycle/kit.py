"""The stage kit: what every stage run (Stages 1, 2, 3 and rollback) does the same way.

A ``StageRun`` is the context of one run of one stage for one workload: the event store, the
declaration, the operator, the stage number, the clock, the candidate (digest, pinned image,
source revision, registration event), the workload's ledger history and when the run started.
Services build one at the top and pass it down instead of a private ``_Ctx`` of their own::

    run = StageRun.open(store=store, decl=decl, operator=who, stage=2, image=image, clock=clock)
    # ``open`` resolves the candidate (``image`` or the newest registered; InvalidInput, exit 2,
    # when none), reads the history and notes ``started_at`` from the clock.
    waivers = run.waivers()                      # active waivers of this stage for the candidate
    state = run.state()                          # the candidate-state fold (stage results, approvals...)
    run.record_started({"plan": ...})            # ``stage.started`` (payload redacted)
    checks = [judge("cluster_ready", lambda: ...), ...]   # lifecycle.checks
    result = run.result(checks, evidence=[...], approval=run.approval_model(run.approval_in_force()))
    done = run.complete(result)                  # ``stage.completed``; ``done.document`` has ``ledger``
    return Outcome(document=done.document, events=run.events, warnings=done.warnings)

Building blocks, for stages whose recording is special:

- ``StageRun.for_workload(...)`` builds a run without resolving a candidate (Stage 1 names its
  candidate as one of its checks; rollback plans from lineage). ``run.use_candidate(resolved)``
  or setting ``digest``/``image``/``revision``/``registration`` fills it in later.
- ``run.new_event(kind, payload)`` builds a ``NewEvent`` of this workload, operator, candidate and
  stage (payload redacted); ``run.append(events, expected_version=...)`` appends and remembers
  what was appended in ``run.events``; ``run.refresh()`` re-reads the history.
- ``run.started_event(payload)`` / ``run.completed_event(document)`` build the two stage events
  without appending them (to append them together with others, or under optimistic concurrency).
- ``run.now()`` reads the injected ``Clock`` (``railiance_ledger.ports``); ``clock_of(now)``
  turns a legacy ``now=`` callable into one; ``format_timestamp`` is the one textual form.

Candidate resolution lives in ``lifecycle.candidates`` (``resolve_candidate``/``select_candidate``);
check building and error guarding in ``lifecycle.checks``; waiver application is the pure
``domain.waiving.apply_waivers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from railiance_ledger.domain.candidate_state import CandidateState, Grant
from railiance_ledger.domain.digests import parse_image_ref
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.domain.stage_result import (
    Approval,
    Candidate,
    Check,
    Evidence,
    StageResult,
    Workload,
    overall_status,
)
from railiance_ledger.lifecycle.candidates import ResolvedCandidate, resolve_candidate
from railiance_ledger.lifecycle.waivers import active_waivers
from railiance_ledger.ports import Clock, SystemClock

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

StageNumber = Literal[1, 2, 3]
TargetEnvironment = Literal["local", "canary", "production"]

TARGET_ENVIRONMENT: dict[int, TargetEnvironment] = {1: "local", 2: "canary", 3: "production"}
"""Where each stage runs the candidate (the stage result's ``target_environment``)."""


class ApprovalDecision(Protocol):
    """An approval as the result names it: an ``approval.granted`` event, or the fold's ``Grant``."""

    @property
    def event_id(self) -> str: ...

    @property
    def actor(self) -> str: ...


class CallableClock:
    """A ``Clock`` reading a ``now()`` callable (the ``now=`` parameters services take today)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now()


def clock_of(now: Clock | Callable[[], datetime] | None) -> Clock:
    """A ``Clock`` from a clock, a ``now()`` callable, or ``None`` (the system clock)."""
    if now is None:
        return SystemClock()
    if callable(now):
        return CallableClock(now)
    return now


@dataclass(frozen=True)
class Completion:
    """What ``StageRun.complete`` did: the stage-result document (with ``ledger`` when recorded),
    the ``stage.completed`` event (``None`` when the ledger refused it) and warnings to show."""

    document: dict[str, Any]
    event: RecordedEvent | None
    warnings: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        return self.event is not None


@dataclass
class StageRun:
    """One run of one stage for one workload (and, once named, one candidate). See the module doc."""

    store: EventStore
    decl: Declaration
    operator: str
    stage: StageNumber
    clock: Clock
    history: list[RecordedEvent]
    started_at: datetime
    digest: str | None = None
    image: str | None = None
    revision: str | None = None
    registration: RecordedEvent | None = None
    events: list[RecordedEvent] = field(default_factory=list)
    """Every event this run appended, in order."""

    # ------------------------------------------------------------------------------- construction

    @classmethod
    def for_workload(
        cls,
        *,
        store: EventStore,
        decl: Declaration,
        operator: str,
        stage: StageNumber,
        clock: Clock | Callable[[], datetime] | None = None,
    ) -> StageRun:
        """A run with the workload's history read and ``started_at`` taken, no candidate named yet."""
        clk = clock_of(clock)
        started = clk.now()
        return cls(
            store=store,
            decl=decl,
            operator=operator,
            stage=stage,
            clock=clk,
            history=store.read_stream(decl.workload.name),
            started_at=started,
        )

    @classmethod
    def open(
        cls,
        *,
        store: EventStore,
        decl: Declaration,
        operator: str,
        stage: StageNumber,
        image: str | None = None,
        clock: Clock | Callable[[], datetime] | None = None,
    ) -> StageRun:
        """A run for the registered candidate ``image`` names, else the newest registered one.

        Raises ``InvalidDigest``/``InvalidInput`` (exit 2) when ``image`` is not pinned by digest,
        is not registered, or nothing is registered.
        """
        run = cls.for_workload(store=store, decl=decl, operator=operator, stage=stage, clock=clock)
        run.use_candidate(
            resolve_candidate(run.history, run.workload, image, repository=decl.image.repository)
        )
        return run

    def use_candidate(self, candidate: ResolvedCandidate) -> None:
        """Name the run's candidate."""
        self.digest = candidate.digest
        self.image = candidate.image
        self.revision = candidate.revision
        self.registration = candidate.registration

    # ------------------------------------------------------------------------------------ reading

    @property
    def workload(self) -> str:
        return self.decl.workload.name

    @property
    def target_environment(self) -> TargetEnvironment:
        return TARGET_ENVIRONMENT[self.stage]

    @property
    def version(self) -> int:
        """The stream version of the history read last (the ``expected_version`` to append after)."""
        return self.history[-1].version if self.history else 0

    def now(self) -> datetime:
        return self.clock.now()

    def refresh(self) -> list[RecordedEvent]:
        """Re-read the workload's history (after appending, or to judge on the newest facts)."""
        self.history = self.store.read_stream(self.workload)
        return self.history

    def require_digest(self) -> str:
        """The candidate digest; a programming error when no candidate was named."""
        if self.digest is None:
            raise ValueError("this stage run names no candidate")
        return self.digest

    def waivers(self, history: Iterable[RecordedEvent] | None = None) -> dict[str, RecordedEvent]:
        """The active waivers of this stage for the candidate, per gate (none without a candidate)."""
        if self.digest is None:
            return {}
        return active_waivers(
            self.history if history is None else history, digest=self.digest, stage=self.stage
        )

    def state(self) -> CandidateState:
        """The candidate-state fold (``domain.candidate_state``) over the history read last."""
        return CandidateState.from_events(self.history, self.require_digest())

    def approval_in_force(self) -> Grant | None:
        """The candidate's approval for this stage in force (the fold's answer), else ``None``."""
        if self.digest is None:
            return None
        return self.state().approval_in_force(self.stage)

    # -------------------------------------------------------------------------------- the result

    def approval_model(self, approval: ApprovalDecision | None) -> Approval:
        """The result's approval: not required in Stage 1 or for a workload that is not
        production-critical; else the approval event (its id and operator) or ``missing``."""
        if self.stage == 1 or not self.decl.production_critical:
            return Approval(required=False, decision="not required")
        if approval is None:
            return Approval(required=True, decision="missing")
        return Approval(required=True, decision=approval.event_id, operator=approval.actor)

    def candidate_model(self) -> Candidate:
        """The result's candidate (the image passes the redaction path; ``""`` for what is unknown)."""
        return Candidate(digest=self.digest or "", image=redact(self.image or ""), revision=self.revision)

    def result(
        self,
        checks: Sequence[Check],
        *,
        evidence: Sequence[Evidence] = (),
        approval: Approval | None = None,
        rollback_target: dict[str, Any] | None = None,
        candidate: Candidate | None = None,
        finished_at: datetime | None = None,
    ) -> StageResult:
        """The stage result of ``checks`` (status ``pass`` only when none failed). ``approval``
        defaults to ``approval_model(None)``, ``candidate`` to the run's, ``finished_at`` to now."""
        checks = list(checks)
        return StageResult(
            workload=Workload(name=self.workload, repo=self.decl.workload.repo),
            stage=self.stage,
            candidate=candidate or self.candidate_model(),
            target_environment=self.target_environment,
            checks=checks,
            status=overall_status(checks),
            evidence=list(evidence),
            rollback_target=rollback_target,
            approval=approval or self.approval_model(None),
            ledger=None,
            started_at=format_timestamp(self.started_at),
            finished_at=format_timestamp(finished_at or self.now()),
        )

    # ------------------------------------------------------------------------------------ writing

    def new_event(
        self,
        kind: EventKind,
        payload: dict[str, Any],
        *,
        candidate: str | None = None,
        stage: int | None = None,
        redacted: bool = True,
    ) -> NewEvent:
        """An event of this workload by the run's operator, about the run's candidate and stage
        unless given; the payload passes the one redaction path unless ``redacted=False``."""
        return NewEvent(
            stream=self.workload,
            kind=kind,
            actor=self.operator,
            candidate=candidate if candidate is not None else self.digest,
            stage=stage if stage is not None else self.stage,
            payload=redact_value(payload) if redacted else payload,
        )

    def append(
        self, events: Sequence[NewEvent], *, expected_version: int | None = None
    ) -> list[RecordedEvent]:
        """Append ``events`` atomically; remember them in ``self.events``. Raises the store's errors."""
        recorded = self.store.append(list(events), expected_version=expected_version)
        self.events.extend(recorded)
        return recorded

    def started_event(self, payload: dict[str, Any]) -> NewEvent:
        """The ``stage.started`` event (payload redacted) for the candidate."""
        return self.new_event(EventKind.STAGE_STARTED, payload, candidate=self.require_digest())

    def record_started(self, payload: dict[str, Any]) -> RecordedEvent:
        """Append ``stage.started`` (payload redacted) and return it."""
        return self.append([self.started_event(payload)])[0]

    def completed_event(self, document: dict[str, Any]) -> NewEvent:
        """The ``stage.completed`` event carrying the stage-result ``document`` (redacted)."""
        return self.new_event(EventKind.STAGE_COMPLETED, document, candidate=self.require_digest())

    def complete(self, result: StageResult, *, expected_version: int | None = None) -> Completion:
        """Append ``stage.completed`` with the (redacted) stage-result document.

        The returned document is the result's, with ``ledger`` (seq, hash) once recorded. When the
        ledger's rules refuse the event, ``RuleViolation`` propagates (exit 3): a result that was not
        recorded never becomes a warning on an exit code derived from the document. Other ledger
        errors (conflicts, integrity) propagate too.
        """
        doc = result.to_document()
        ev = self.append([self.completed_event(doc)], expected_version=expected_version)[0]
        doc["ledger"] = {"seq": ev.seq, "hash": ev.hash}
        return Completion(document=doc, event=ev)


def make_evidence(kind: str, ref: str, detail: str = "") -> Evidence:
    """An evidence reference with ``ref`` and ``detail`` redacted."""
    return Evidence(kind=kind, ref=redact(ref), detail=redact(detail))  # type: ignore[arg-type]


class RunView:
    """The facts every stage context reads from its ``run`` (a ``StageRun``): one set of accessors
    for Stage 2's and Stage 3's contexts instead of a copy in each."""

    run: StageRun

    @property
    def decl(self) -> Declaration:
        return self.run.decl

    @property
    def workload(self) -> str:
        return self.run.workload

    @property
    def digest(self) -> str:
        return self.run.require_digest()

    @property
    def image(self) -> str:
        return self.run.image or self.digest

    @property
    def repository(self) -> str:
        return parse_image_ref(self.image).repository if "@" in self.image else ""

    @property
    def revision(self) -> str | None:
        return self.run.revision

    @property
    def history(self) -> list[RecordedEvent]:
        return self.run.history

    @history.setter
    def history(self, value: list[RecordedEvent]) -> None:
        self.run.history = value
