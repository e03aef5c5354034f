"""Stage gating for the stage-gate sensor: which candidate may start which next stage now.

- ``next_stage_requests``: from new ledger events, which candidate may start which next stage now,
  and which must wait (and why): Stage 1 pass -> canary, canary deployed -> observe, canary
  accepted -> promote; production-critical workloads wait for an ``approval.granted``.
- ``open_canary``: the Stage 2 deployment whose observation window is still open.

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from railiance_ledger.domain.candidate_state import CandidateState, candidate_states
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.ledger.projections import partition_key

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = ["HeldStage", "NextStage", "next_stage_requests", "open_canary"]


@dataclass(frozen=True)
class NextStage:
    """A candidate whose upstream stage passed (for this digest) and which policy lets continue."""

    workload: str
    digest: str
    job: str
    """``canary``, ``observe`` or ``promote``."""
    reason: str
    trigger_seq: int
    run_key: str

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


@dataclass(frozen=True)
class HeldStage:
    """A candidate that could continue but must wait (an approval, a service not available yet)."""

    workload: str
    digest: str
    job: str
    reason: str
    trigger_seq: int

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


def _latest(
    history: Sequence[RecordedEvent], digest: str, kind: EventKind, stage: int
) -> RecordedEvent | None:
    found = None
    for ev in history:
        if ev.candidate == digest and ev.kind == kind and ev.stage == stage:
            found = ev
    return found


def _canary_opened(history: Sequence[RecordedEvent], state: CandidateState) -> RecordedEvent | None:
    """The Stage 2 ``stage.started`` that opened ``state``'s canary window, when the fold says it is open."""
    if state.open_stage != 2:
        return None
    return _latest(history, state.digest, EventKind.STAGE_STARTED, 2)


def open_canary(history: Sequence[RecordedEvent], digest: str | None = None) -> RecordedEvent | None:
    """The Stage 2 ``stage.started`` (of ``digest`` when given) whose window is still open, or ``None``.

    Whether a window is open is the candidate-state fold's answer (``CandidateState.open_stage``): it
    closes with that candidate's Stage 2 ``stage.completed`` or a ``rollback.completed``. Without
    ``digest``, the most recently opened window among the stream's candidates.
    """
    if digest is not None:
        return _canary_opened(history, CandidateState.from_events(history, digest))
    opened = [_canary_opened(history, state) for state in candidate_states(history).values()]
    return max((ev for ev in opened if ev is not None), key=lambda ev: ev.seq, default=None)


def next_stage_requests(
    store: EventStore,
    events: Iterable[RecordedEvent],
    decls: Mapping[str, Declaration],
    *,
    promote_available: bool = True,
) -> tuple[list[NextStage], list[HeldStage]]:
    """Which candidates touched by ``events`` may start their next stage now, and which must wait.

    Reads each touched candidate's history from the ledger (the events only say *which* candidates to
    look at), so the answer never depends on where the cursor stopped; stage results, approvals in
    force and the open canary are the candidate-state fold's (``CandidateState.from_events``):

    - Stage 1 passed and Stage 2 never started -> ``canary``; a production-critical workload waits
      for an ``approval.granted`` of that digest for stage 2.
    - a Stage 2 canary deployed and its window still open -> ``observe`` (one run per deployment).
    - Stage 2 passed (canary accepted) and Stage 3 never started -> ``promote``; production-critical
      waits for a stage 3 approval; held while the Stage 3 service is not available.

    Workloads not in ``decls`` (no declaration under the apps directory) are held with that reason.
    """
    touched: dict[tuple[str, str], int] = {}
    for ev in events:
        if ev.candidate and ev.kind in (
            EventKind.STAGE_COMPLETED,
            EventKind.STAGE_STARTED,
            EventKind.APPROVAL_GRANTED,
            EventKind.EXCEPTION_EMERGENCY,
        ):
            touched[(ev.stream, ev.candidate)] = ev.seq
    go: list[NextStage] = []
    held: list[HeldStage] = []
    for (workload, digest), seq in touched.items():
        # the candidate's own events only (indexed): the cost never grows with the workload's history
        history = store.read_candidate(workload, digest)
        decl = decls.get(workload)
        key = partition_key(workload, digest)
        if decl is None:
            held.append(
                HeldStage(workload, digest, "-", f"{workload} is not declared under the apps directory", seq)
            )
            continue
        critical = bool(decl.production_critical)
        state = CandidateState.from_events(history, digest)
        s1, s2 = state.results.get(1), state.results.get(2)
        s2_ever = _latest(history, digest, EventKind.STAGE_STARTED, 2) or state.all_results.get(2)
        s3_started = _latest(history, digest, EventKind.STAGE_STARTED, 3)
        canary = _canary_opened(history, state)
        if canary is not None:
            go.append(
                NextStage(
                    workload,
                    digest,
                    "observe",
                    f"canary deployed at seq {canary.seq}",
                    seq,
                    f"{key}:observe:{canary.seq}",
                )
            )
        elif s1 is not None and s1.passed and s2_ever is None:
            if critical and state.approval_in_force(2) is None:
                held.append(
                    HeldStage(
                        workload,
                        digest,
                        "canary",
                        "production-critical: waiting for an approval.granted for stage 2",
                        seq,
                    )
                )
            else:
                why = "stage 2 approved" if critical else "not production-critical"
                go.append(
                    NextStage(
                        workload,
                        digest,
                        "canary",
                        f"Stage 1 passed at seq {s1.seq}; {why}",
                        seq,
                        f"{key}:canary",
                    )
                )
        elif s2 is not None and s2.passed and s3_started is None:
            if critical and state.approval_in_force(3) is None:
                held.append(
                    HeldStage(
                        workload,
                        digest,
                        "promote",
                        "production-critical: waiting for an approval.granted for stage 3",
                        seq,
                    )
                )
            elif not promote_available:
                held.append(
                    HeldStage(workload, digest, "promote", "the Stage 3 service is not available yet", seq)
                )
            else:
                go.append(
                    NextStage(
                        workload,
                        digest,
                        "promote",
                        f"canary accepted at seq {s2.seq}",
                        seq,
                        f"{key}:promote",
                    )
                )
    return go, held
