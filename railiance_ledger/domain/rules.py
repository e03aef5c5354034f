"""Lifecycle rules checked at append time. Pure: the caller passes the candidate's history.

- Stages are sequential per candidate digest: stage N needs, for every earlier stage k, a passing
  ``stage.completed`` (the latest result for k) or a recorded ``exception.emergency`` skipping k.
- A stage result for digest X never satisfies a gate for digest Y: every ``stage.completed``
  payload must name the same digest as its envelope, and history is filtered by digest.
- Everything about a candidate needs that candidate to be registered first.
- A rollback resets its candidate: results earned before it no longer count (the candidate returns
  to Stage 1), and a candidate the rollback ``blocked`` or ``abandoned`` may not progress again.
- A failing stage result is always recorded (for a registered candidate): evidence is never refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from railiance_ledger.domain.candidate_state import TERMINAL_FATES, CandidateState, EventLike
from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.payloads import RollbackCompleted, parse_as

__all__ = [
    "TERMINAL_FATES",
    "EventLike",
    "RuleBroken",
    "candidate_fate",
    "check_append",
    "is_registered",
    "stage_excepted",
    "stage_passed",
]


class RuleBroken(ValueError):
    """The append would break a lifecycle rule; the message says which and what to do."""


def stage_passed(history: Iterable[EventLike], digest: str, stage: int) -> bool:
    """True when the latest ``stage.completed`` for ``(digest, stage)`` has status ``pass``.

    Over the whole ``history`` given (the caller decides whether results before a rollback count).
    """
    result = CandidateState.from_events(history, digest).all_results.get(stage)
    return result is not None and result.passed


def stage_excepted(history: Iterable[EventLike], digest: str, stage: int) -> bool:
    """True when an ``exception.emergency`` in ``history`` records skipping ``stage`` for ``digest``."""
    return stage in CandidateState.from_events(history, digest).skipped_ever


def is_registered(history: Iterable[EventLike], digest: str) -> bool:
    """True when ``candidate.registered`` exists for ``digest``."""
    return CandidateState.from_events(history, digest).registered


def candidate_fate(event: EventLike) -> str | None:
    """The fate a ``rollback.completed`` recorded for its candidate, or ``None``.

    ``returned-to-stage1``, ``blocked`` or ``abandoned``; older records are upcast by
    ``domain.payloads`` (``RollbackCompleted``).
    """
    return parse_as(RollbackCompleted, event.payload).candidate_fate


def check_append(history: list[EventLike], new: NewEvent) -> None:
    """Raise ``RuleBroken`` when ``new`` may not follow ``history`` (the same stream's events)."""
    kind = new.kind
    if kind.needs_candidate and not new.candidate:
        raise RuleBroken(f"{kind} must name a candidate digest")
    if kind in {EventKind.STAGE_STARTED, EventKind.STAGE_COMPLETED} and new.stage is None:
        raise RuleBroken(f"{kind} must name a stage (1, 2 or 3)")
    digest = new.candidate
    if digest is None:
        return
    if kind == EventKind.CANDIDATE_REGISTERED:
        return
    state = CandidateState.from_events(history, digest)
    if not state.registered:
        raise RuleBroken(
            f"candidate {digest} is not registered for {new.stream}; "
            "register it first with `railiance candidate add APP_DIR --image REF@sha256:...`"
        )
    if kind == EventKind.STAGE_COMPLETED:
        doc_digest = (new.payload.get("candidate") or {}).get("digest")
        if doc_digest != digest:
            raise RuleBroken(
                f"stage result names digest {doc_digest!r} but the event is for {digest}: "
                "a result for one digest never stands for another"
            )
        if new.payload.get("stage") not in (None, new.stage):
            raise RuleBroken("stage result document and event disagree on the stage")
    progressing = kind in {
        EventKind.STAGE_STARTED,
        EventKind.APPROVAL_GRANTED,
        EventKind.PROMOTION_COMPLETED,
    } or (kind == EventKind.STAGE_COMPLETED and new.payload.get("status") == "pass")
    if progressing and state.terminal:
        raise RuleBroken(
            f"candidate {digest} was {state.fate} by a rollback and may not move toward production again; "
            "build and register a new candidate"
        )
    if kind == EventKind.STAGE_COMPLETED and not progressing:
        return  # a failing result is always recorded: evidence of what went wrong is never refused
    target: int | None = None
    if kind in {EventKind.STAGE_STARTED, EventKind.STAGE_COMPLETED}:
        target = new.stage
    elif kind == EventKind.PROMOTION_COMPLETED:
        target = 3
    if target is None:
        return
    earlier = state.first_unsatisfied_before(target)
    if earlier is not None:
        raise RuleBroken(
            f"stage {target} for {digest} needs stage {earlier} to have passed for the same digest; "
            f"stages are sequential. To skip it, record `railiance exception APP_DIR --skip-stage {earlier} "
            "--operator NAME --reason TEXT` first"
        )
    if kind == EventKind.PROMOTION_COMPLETED and not state.satisfied(2):
        raise RuleBroken(f"promotion of {digest} needs stage 2 acceptance for the same digest")
