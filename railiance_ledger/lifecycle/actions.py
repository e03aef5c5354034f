"""Acting on a workload: integrity first, one action at a time, every append version-checked.

Every command and Dagster job that changes a workload (deploy, observe, promote, rollback,
approve/revoke, waive, exception) runs inside :func:`acting`:

1. **Integrity before action.** ``ledger.checkpoint.check_integrity`` verifies the chain from the
   stored verified checkpoint (O(new events)); a mismatch raises ``IntegrityError`` naming the first
   bad seq before anything is read to decide or touched.
2. **Blocked workloads refuse.** A ``rollback.incomplete`` newer than the last ``rollback.completed``
   means the cluster is in a state the ledger says is unfinished: every action but ``rollback``
   raises ``WorkloadBlocked`` naming what remains and the manual command.
3. **The lease.** ``lease.acquired`` (holder ``operator@host:pid``, action, expiry) is appended with
   the stream version read just before as ``expected_version``: of two processes racing, exactly one
   append succeeds; the other sees ``ConcurrencyConflict`` and, re-reading, the winner's lease, and
   raises ``LeaseHeld`` naming it. A lease whose expiry has passed (its holder crashed) is shown as
   expired and may be taken over. ``lease.released`` ends it, whatever the action's outcome.
4. **Expected version on every append.** The action appends through a :class:`LeasedStore`: each
   append carries the version the action last saw. When another writer appended in between (a State
   Hub note, a sensor), the store re-reads what was appended: if it took the lease over, the action
   stops with ``LeaseHeld``; otherwise the append is retried at the new version.

The lease and the version check work wherever the ledger's append lock does: across processes on
SQLite, across processes and hosts on PostgreSQL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import payloads
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.errors import ConcurrencyConflict, LeaseHeld, LedgerError, WorkloadBlocked
from railiance_ledger.ledger.checkpoint import IntegrityCheck, check_integrity
from railiance_ledger.ledger.store import EventStore

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration

DEFAULT_LEASE = timedelta(minutes=30)
"""How long a lease lasts unless the action asks for more (``observe`` asks for its window)."""

ACTIONS = ("deploy", "observe", "promote", "rollback", "approve", "revoke", "waive", "exception", "resolve")
"""The actions that take the lease."""

UNBLOCKING_ACTIONS = frozenset({"rollback", "resolve"})
"""Actions allowed while an incomplete rollback blocks the workload (they are how it is resolved)."""


def lease_duration(decl: Declaration, action: str) -> timedelta:
    """How long ``action`` on ``decl``'s workload may hold the lease: ``observe`` (and ``promote``,
    which may observe Stage 3) its observation window plus the default, every other action the default."""
    if action in {"observe", "promote"}:
        return DEFAULT_LEASE + timedelta(seconds=decl.observation_window_seconds)
    return DEFAULT_LEASE


def holder_name(operator: str) -> str:
    """``operator@host:pid``: who holds a lease, precise enough to find the process."""
    return f"{operator}@{socket.gethostname()}:{os.getpid()}"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Lease:
    """A ``lease.acquired`` event not yet released."""

    event_id: str
    seq: int
    holder: str
    action: str
    expires_at: str

    def expired(self, now: datetime) -> bool:
        """True once the expiry has passed (an unparsable expiry never expires: fail closed)."""
        until = _parse_time(self.expires_at)
        return until is not None and until <= now

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """A JSON-ready dict (with ``expired`` when ``now`` is given)."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "seq": self.seq,
            "holder": self.holder,
            "action": self.action,
            "expires_at": self.expires_at,
        }
        if now is not None:
            data["expired"] = self.expired(now)
        return data


@dataclass(frozen=True)
class Blocker:
    """An unresolved ``rollback.incomplete``: what remains and how to resolve it."""

    seq: int
    reason: str
    remaining: list[Any]
    manual_command: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "seq": self.seq,
            "reason": self.reason,
            "remaining": self.remaining,
            "manual_command": self.manual_command,
        }


@dataclass(frozen=True)
class WorkloadActionState:
    """The fold of a workload's stream that actions look at: the lease in force and any blocker."""

    version: int
    lease: Lease | None
    blocker: Blocker | None

    @classmethod
    def from_events(cls, events: Sequence[RecordedEvent]) -> WorkloadActionState:
        """Fold the stream (in order): the newest unreleased lease, the newest unresolved incomplete rollback."""
        lease: Lease | None = None
        blocker: Blocker | None = None
        version = 0
        for ev in events:
            version = max(version, ev.version)
            kind = ev.kind
            if kind == EventKind.LEASE_ACQUIRED:
                acq = payloads.read_or_default(payloads.LeaseAcquired, ev.payload)
                lease = Lease(ev.event_id, ev.seq, acq.holder or "", acq.action or "", acq.expires_at or "")
            elif kind == EventKind.LEASE_RELEASED:
                rel = payloads.read_or_default(payloads.LeaseReleased, ev.payload)
                if lease is not None and rel.lease_id in (None, lease.event_id):
                    lease = None
            elif kind == EventKind.ROLLBACK_INCOMPLETE:
                inc = payloads.read_or_default(payloads.RollbackIncomplete, ev.payload)
                extra = inc.model_extra or {}
                blocker = Blocker(
                    seq=ev.seq,
                    reason=inc.reason or "",
                    remaining=list(inc.remaining_cleanup or []),
                    manual_command=str(extra.get("manual_command") or ""),
                )
            elif kind == EventKind.ROLLBACK_COMPLETED:
                blocker = None
        return cls(version=version, lease=lease, blocker=blocker)


def action_state(store: EventStore, workload: str) -> WorkloadActionState:
    """The lease and blocker of ``workload`` as the ledger holds them now."""
    return WorkloadActionState.from_events(store.read_stream(workload))


class LeasedStore(EventStore):
    """The ledger as an action holding the workload's lease sees it: appends to the workload's
    stream carry the version the action last saw (see the module docstring); reads pass through."""

    def __init__(self, inner: EventStore, *, workload: str, lease_id: str, version: int) -> None:
        super().__init__(inner.engine, url=inner.url)
        self._inner = inner
        self.workload = workload
        self.lease_id = lease_id
        self.version = version

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        now: datetime | None = None,
    ) -> list[RecordedEvent]:
        batch = list(events)
        if not batch or batch[0].stream != self.workload:
            return self._inner.append(batch, expected_version=expected_version, now=now)
        if expected_version is not None:
            recorded = self._inner.append(batch, expected_version=expected_version, now=now)
        else:
            recorded = self._append_at_seen_version(batch, now)
        self.version = recorded[-1].version
        return recorded

    def _append_at_seen_version(self, batch: list[NewEvent], now: datetime | None) -> list[RecordedEvent]:
        for _attempt in range(5):
            try:
                return self._inner.append(batch, expected_version=self.version, now=now)
            except ConcurrencyConflict:
                newer = self._inner.read_stream(self.workload, after_version=self.version)
                for ev in newer:
                    if ev.kind == EventKind.LEASE_ACQUIRED:
                        acq = payloads.read_or_default(payloads.LeaseAcquired, ev.payload)
                        raise LeaseHeld(
                            f"workload {self.workload!r}: the lease was taken over by {acq.holder} "
                            f"({acq.action}) at seq {ev.seq} while this action held it; nothing more is recorded",
                            holder=acq.holder or "",
                            action=acq.action or "",
                            expires_at=acq.expires_at or "",
                        ) from None
                if newer:
                    self.version = newer[-1].version
        raise ConcurrencyConflict(
            f"workload {self.workload!r}: other writers kept appending; the action's record could not be placed",
            hint="re-run the command",
        )


@dataclass
class Action:
    """An action in progress: the store to use, the lease it holds, the integrity check it passed."""

    store: LeasedStore
    lease: Lease
    integrity: IntegrityCheck
    taken_over: Lease | None = None


def _held_error(workload: str, lease: Lease) -> LeaseHeld:
    return LeaseHeld(
        f"workload {workload!r} is held by {lease.holder} ({lease.action}, lease seq {lease.seq}, "
        f"expires {lease.expires_at}); nothing was done",
        holder=lease.holder,
        action=lease.action,
        expires_at=lease.expires_at,
    )


def _blocked_error(workload: str, blocker: Blocker) -> WorkloadBlocked:
    remaining = "; ".join(str(item) for item in blocker.remaining) or "see the event"
    return WorkloadBlocked(
        f"workload {workload!r} is blocked by an incomplete rollback (seq {blocker.seq}: {blocker.reason}); "
        f"remaining: {remaining}; nothing was done",
        hint=(
            (f"finish it by hand ({blocker.manual_command}), then " if blocker.manual_command else "")
            + "run `railiance rollback APP_DIR --reason ...` (a completed rollback resolves it) "
            "or `railiance rollback APP_DIR --resolve --reason ...` once the cluster is restored"
        ),
    )


@contextmanager
def acting(
    store: EventStore,
    workload: str,
    action: str,
    operator: str,
    *,
    duration: timedelta = DEFAULT_LEASE,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[Action]:
    """Check integrity, refuse a blocked workload, take the lease; yield the action; release the lease.

    Raises ``IntegrityError``, ``WorkloadBlocked`` or ``LeaseHeld`` (all exit 3) before anything is done.
    """
    integrity = check_integrity(store)
    state = action_state(store, workload)
    if state.blocker is not None and action not in UNBLOCKING_ACTIONS:
        raise _blocked_error(workload, state.blocker)
    at = now()
    taken_over = None
    if state.lease is not None:
        if not state.lease.expired(at):
            raise _held_error(workload, state.lease)
        taken_over = state.lease
    holder = holder_name(operator)
    payload = payloads.LeaseAcquired(
        holder=holder, action=action, expires_at=format_timestamp(at + duration)
    ).to_payload()
    if taken_over is not None:
        payload["took_over"] = taken_over.as_dict()
    event = NewEvent(
        stream=workload,
        kind=EventKind.LEASE_ACQUIRED,
        actor=operator,
        candidate=None,
        stage=None,
        payload=payload,
    )
    try:
        acquired = store.append([event], expected_version=state.version)[0]
    except ConcurrencyConflict:
        again = action_state(store, workload)
        if again.lease is not None:
            raise _held_error(workload, again.lease) from None
        raise
    lease = Lease(acquired.event_id, acquired.seq, holder, action, payload["expires_at"])
    leased = LeasedStore(store, workload=workload, lease_id=acquired.event_id, version=acquired.version)
    if taken_over is not None:
        _take_over_unfinished(leased, workload, operator, action, lease, taken_over)
    try:
        yield Action(store=leased, lease=lease, integrity=integrity, taken_over=taken_over)
    except BaseException as exc:
        _record_unfinished(leased, workload, operator, action, acquired.seq, exc)
        raise
    finally:
        _release(leased, workload, operator, lease)


def _take_over_unfinished(
    leased: LeasedStore, workload: str, operator: str, action: str, lease: Lease, dead: Lease
) -> None:
    """The expired lease's holder died (SIGKILL, power loss) after recording an intent: record what it
    left open as ``rollback.incomplete``; unless this action is a rollback, release and refuse."""
    left = unfinished_since(leased.read_stream(workload), dead.seq)
    if left is None:
        return
    payload = payloads.RollbackIncomplete(
        reason=f"{dead.action} by {dead.holder} stopped (its lease expired at {dead.expires_at}) "
        "after recording its intent",
        remaining_cleanup=left["remaining"],
    ).to_payload()
    payload["manual_command"] = f"railiance rollback APP_DIR --reason 'unfinished {dead.action}'"
    payload["action"] = dead.action
    event = NewEvent(
        stream=workload,
        kind=EventKind.ROLLBACK_INCOMPLETE,
        actor=operator,
        candidate=left["candidate"],
        stage=None,
        payload=payload,
    )
    recorded = leased.append([event])[0]
    if action in UNBLOCKING_ACTIONS:
        return
    _release(leased, workload, operator, lease)
    blocker = Blocker(
        recorded.seq, str(payload["reason"]), list(left["remaining"]), payload["manual_command"]
    )
    raise _blocked_error(workload, blocker)


def unfinished_since(events: Sequence[RecordedEvent], after_seq: int) -> dict[str, Any] | None:
    """What an action that stopped left open after ``after_seq`` (its lease): a Stage 2/3
    ``stage.started`` without its ``stage.completed``, or a ``rollback.started`` without its
    ``rollback.completed``; with the last routing change. ``None`` when nothing is open."""
    open_stage: RecordedEvent | None = None
    open_rollback: RecordedEvent | None = None
    routing: RecordedEvent | None = None
    for ev in events:
        if ev.seq <= after_seq:
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage in (2, 3):
            open_stage = ev
        elif ev.kind == EventKind.STAGE_COMPLETED and open_stage is not None and ev.stage == open_stage.stage:
            open_stage = None
        elif ev.kind == EventKind.ROLLBACK_STARTED:
            open_rollback = ev
        elif ev.kind in (EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_INCOMPLETE):
            open_rollback = None
            open_stage = None
        elif ev.kind == EventKind.ROUTING_CHANGED:
            routing = ev
    if open_stage is None and open_rollback is None:
        return None
    remaining: list[str] = []
    candidate = None
    if open_stage is not None:
        release = open_stage.payload.get("release") or {}
        candidate = open_stage.candidate
        remaining.append(
            f"stage {open_stage.stage} of {open_stage.candidate} started at seq {open_stage.seq} has no result; "
            f"release {release.get('name', '?')} in namespace {release.get('namespace', '?')} may be installed"
        )
    if open_rollback is not None:
        candidate = candidate or open_rollback.candidate
        remaining.append(f"the rollback started at seq {open_rollback.seq} did not complete")
    if routing is not None:
        remaining.append(
            f"routing last changed at seq {routing.seq}: {routing.payload.get('action') or routing.payload}"
        )
    return {"candidate": candidate, "remaining": remaining}


def _record_unfinished(
    leased: LeasedStore, workload: str, operator: str, action: str, lease_seq: int, exc: BaseException
) -> None:
    """Intent recorded, outcome not: append ``rollback.incomplete`` naming what remains and the
    manual command, so every later action refuses until a rollback completes or is resolved."""
    try:
        left = unfinished_since(leased.read_stream(workload, after_version=0), lease_seq)
        if left is None:
            return
        payload = payloads.RollbackIncomplete(
            reason=f"{action} stopped after recording its intent: {type(exc).__name__}: {exc}",
            remaining_cleanup=left["remaining"],
        ).to_payload()
        payload["manual_command"] = f"railiance rollback APP_DIR --reason 'unfinished {action}'"
        payload["action"] = action
        leased.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.ROLLBACK_INCOMPLETE,
                    actor=operator,
                    candidate=left["candidate"],
                    stage=None,
                    payload=payload,
                )
            ]
        )
    except (LedgerError, ValueError):
        return  # the ledger itself refuses: the lease stays visible and expires; status shows it


def _release(leased: LeasedStore, workload: str, operator: str, lease: Lease) -> None:
    """Append ``lease.released``; a failure leaves the lease to expire (it is visible in ``status``)."""
    event = NewEvent(
        stream=workload,
        kind=EventKind.LEASE_RELEASED,
        actor=operator,
        candidate=None,
        stage=None,
        payload=payloads.LeaseReleased(
            holder=lease.holder, action=lease.action, lease_id=lease.event_id
        ).to_payload(),
    )
    try:
        leased.append([event])
    except LeaseHeld:
        return  # taken over after expiry: the new holder's lease stands
    except LedgerError:
        return


def action_summary(store: EventStore, workload: str, *, now: datetime | None = None) -> dict[str, Any]:
    """What ``status`` shows about actions: the lease in force (with ``expired``) and any blocker."""
    state = action_state(store, workload)
    at = now or datetime.now(UTC)
    return {
        "lease": state.lease.as_dict(at) if state.lease is not None else None,
        "blocked_by": state.blocker.as_dict() if state.blocker is not None else None,
    }


def resolve_incomplete(action: Action, workload: str, operator: str, reason: str) -> RecordedEvent:
    """Record that an operator restored the cluster by hand after a ``rollback.incomplete``: a
    ``rollback.completed`` with ``resolves_incomplete`` (the blocker's seq). Raises ``WorkloadBlocked``
    when nothing is blocked (there is nothing to resolve)."""
    state = action_state(action.store, workload)
    if state.blocker is None:
        raise WorkloadBlocked(
            f"workload {workload!r} has no incomplete rollback to resolve; nothing was recorded",
            hint="`railiance status WORKLOAD` shows what blocks a workload",
        )
    payload = payloads.RollbackCompleted(reason=reason).to_payload()
    payload.update(resolves_incomplete=state.blocker.seq, resolved_by_operator=True)
    event = NewEvent(
        stream=workload,
        kind=EventKind.ROLLBACK_COMPLETED,
        actor=operator,
        candidate=None,
        stage=None,
        payload=payload,
    )
    return action.store.append([event])[0]
