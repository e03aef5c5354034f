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

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from railiance_ledger.domain.events import EventKind, NewEvent


class RuleBroken(ValueError):
    """The append would break a lifecycle rule; the message says which and what to do."""


class EventLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def candidate(self) -> str | None: ...
    @property
    def stage(self) -> int | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...


def stage_passed(history: Iterable[EventLike], digest: str, stage: int) -> bool:
    """True when the latest ``stage.completed`` for ``(digest, stage)`` has status ``pass``."""
    latest: str | None = None
    for ev in history:
        if ev.kind == EventKind.STAGE_COMPLETED and ev.candidate == digest and ev.stage == stage:
            latest = str(ev.payload.get("status", "fail"))
    return latest == "pass"


def stage_excepted(history: Iterable[EventLike], digest: str, stage: int) -> bool:
    """True when an ``exception.emergency`` records skipping ``stage`` for ``digest``."""
    return any(
        ev.kind == EventKind.EXCEPTION_EMERGENCY
        and ev.candidate == digest
        and int(ev.payload.get("skip_stage", 0) or 0) == stage
        for ev in history
    )


def is_registered(history: Iterable[EventLike], digest: str) -> bool:
    """True when ``candidate.registered`` exists for ``digest``."""
    return any(ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate == digest for ev in history)


TERMINAL_FATES = frozenset({"blocked", "abandoned"})
"""Rollback fates after which a candidate may never move toward production again."""


def candidate_fate(event: EventLike) -> str | None:
    """The fate a ``rollback.completed`` recorded for its candidate, or ``None``.

    ``candidate_fate`` is ``returned-to-stage1``, ``blocked`` or ``abandoned``; older records only
    carry the prose ``candidate_disposition`` ("returned to Stage 1").
    """
    fate = event.payload.get("candidate_fate")
    if fate:
        return str(fate)
    text = str(event.payload.get("candidate_disposition") or "").lower()
    for known in ("blocked", "abandoned"):
        if known in text:
            return known
    return "returned-to-stage1" if "stage 1" in text else None


def since_last_rollback(history: list[EventLike], digest: str) -> tuple[list[EventLike], str | None]:
    """The candidate's events after its latest rollback, and the fate that rollback recorded.

    A rolled-back candidate keeps nothing it had earned: whatever it does next starts again from
    Stage 1 (``returned-to-stage1``) or is refused (``blocked``/``abandoned``).
    """
    fate: str | None = None
    start = 0
    for i, ev in enumerate(history):
        if ev.kind == EventKind.ROLLBACK_COMPLETED and ev.candidate == digest:
            fate, start = candidate_fate(ev), i + 1
    return history[start:], fate


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
    mine = [ev for ev in history if ev.candidate == digest]
    if kind == EventKind.CANDIDATE_REGISTERED:
        return
    if not is_registered(mine, digest):
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
    mine, fate = since_last_rollback(mine, digest)
    if progressing and fate in TERMINAL_FATES:
        raise RuleBroken(
            f"candidate {digest} was {fate} by a rollback and may not move toward production again; "
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
    for earlier in range(1, target):
        if stage_passed(mine, digest, earlier) or stage_excepted(mine, digest, earlier):
            continue
        raise RuleBroken(
            f"stage {target} for {digest} needs stage {earlier} to have passed for the same digest; "
            f"stages are sequential. To skip it, record `railiance exception APP_DIR --skip-stage {earlier} "
            "--operator NAME --reason TEXT` first"
        )
    if kind == EventKind.PROMOTION_COMPLETED and not (
        stage_passed(mine, digest, 2) or stage_excepted(mine, digest, 2)
    ):
        raise RuleBroken(f"promotion of {digest} needs stage 2 acceptance for the same digest")
