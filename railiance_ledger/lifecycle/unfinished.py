"""Rollbacks that could not finish (``rollback.incomplete``) and stages that never recorded a result.

Every cluster change of an action is preceded by its intent (``stage.started``, ``rollback.started``)
and followed by its outcome. When a rollback's own steps fail, what remains (routing weight,
releases, objects) is recorded as ``rollback.incomplete`` with the manual command; the workload is
then blocked (``lifecycle.actions``) until a rollback completes or an operator resolves it. When an
action stopped between its intent and its result (an exception, a SIGKILL found by the next
action), the rollback that cleans up after it also records the stage's failed result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.payloads import RollbackIncomplete
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import StageRun

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

RETRY_COMMAND = "railiance rollback APP_DIR --reason '{what}'"
RESOLVE_COMMAND = "railiance rollback APP_DIR --resolve --reason '{what}'"


def manual_command(by_hand: Sequence[str], what: str) -> str:
    """The manual command an operator runs: retry the rollback, or do ``by_hand`` and resolve."""
    retry = RETRY_COMMAND.format(what=what)
    if not by_hand:
        return retry
    return f"{retry}; or by hand: {'; '.join(by_hand)}; then {RESOLVE_COMMAND.format(what=what)}"


def incomplete_event(
    *,
    workload: str,
    operator: str,
    candidate: str | None,
    stage: int | None,
    reason: str,
    remaining: Sequence[str],
    failures: Sequence[str] = (),
    command: str,
    extra: dict[str, Any] | None = None,
) -> NewEvent:
    """A ``rollback.incomplete``: why, what remains, the failed steps and the manual command."""
    payload = RollbackIncomplete(
        reason=reason, remaining_cleanup=list(remaining) or ["see failures"], failures=list(failures)
    ).to_payload()
    payload["manual_command"] = command
    payload.update(extra or {})
    return NewEvent(
        stream=workload,
        kind=EventKind.ROLLBACK_INCOMPLETE,
        actor=operator,
        candidate=candidate,
        stage=stage,
        payload=redact_value(payload),
    )


def still_open_after(history: Sequence[RecordedEvent], started: RecordedEvent) -> bool:
    """True when an action's intent ``started`` is not finished: a ``rollback.incomplete`` about its
    candidate came after it and no ``rollback.completed`` since (a stage result alone does not close
    what a rollback left behind)."""
    pending = False
    for ev in history:
        if ev.seq <= started.seq or ev.candidate not in (started.candidate, None):
            continue
        if ev.kind == EventKind.ROLLBACK_INCOMPLETE:
            pending = True
        elif ev.kind == EventKind.ROLLBACK_COMPLETED:
            pending = False
    return pending


def has_result(history: Sequence[RecordedEvent], started: RecordedEvent) -> bool:
    """True when the stage ``started`` opened has a ``stage.completed`` after it."""
    return any(
        ev.seq > started.seq
        and ev.kind == EventKind.STAGE_COMPLETED
        and ev.stage == started.stage
        and ev.candidate == started.candidate
        for ev in history
    )


def record_unfinished_result(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    started: RecordedEvent,
    image: str,
    reason: str,
) -> RecordedEvent | None:
    """Append the failed ``stage.completed`` of the stage ``started`` opened and nobody finished
    (the action stopped between its intent and its result); ``None`` when it already has a result."""
    history = store.read_stream(decl.workload.name)
    if started.stage not in (2, 3) or has_result(history, started):
        return None
    run = StageRun.open(
        store=store, decl=decl, operator=operator, stage=2 if started.stage == 2 else 3, image=image
    )
    name = "canary_applied" if started.stage == 2 else "promotion_applied"
    result = run.result([make_check(name, False, reason, technical=True)])
    return run.complete(result).event
