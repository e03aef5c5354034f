"""Planning a rollback from the ledger: the target, an open Stage 3, the human decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.lifecycle.approvals import approval_state
from railiance_ledger.lifecycle.rollback.model import RestoreTarget, RollbackPlan

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore


def human_decision(
    store: EventStore,
    workload: str,
    *,
    approval_id: str | None,
    operator: str,
    digest: str,
    after_seq: int,
    what: str,
) -> RecordedEvent:
    """The approval that authorises ``what``: in force, for ``digest``, after ``after_seq``, by someone
    else."""

    if not approval_id:
        raise GateFailed(
            f"{what} needs a recorded human approval: none was given",
            hint=(
                "ask another operator to record one (`railiance approve APP_DIR --stage 3 --image <stable> "
                "--operator OTHER`) and pass its event id with --approval"
            ),
        )
    grant = next(
        (
            ev
            for ev in store.read_stream(workload)
            if ev.event_id == approval_id and ev.kind == EventKind.APPROVAL_GRANTED
        ),
        None,
    )
    if grant is None:
        raise GateFailed(f"{what}: approval {approval_id} is not an approval.granted of {workload}")
    if grant.candidate != digest:
        raise GateFailed(f"{what}: approval {approval_id} is for {grant.candidate}, not for {digest}")
    if grant.seq <= after_seq:
        raise GateFailed(
            f"{what}: approval {approval_id} predates the promotion it would cover (seq {grant.seq} "
            f"<= {after_seq}); a decision about this incident needs a fresh approval"
        )
    if grant.actor == operator:
        raise GateFailed(
            f"{what}: {operator} cannot approve their own request; another operator must approve"
        )
    state = approval_state(store, workload, digest, int(grant.stage or 3))
    if not state.granted or state.approval_id != grant.event_id:
        raise GateFailed(f"{what}: approval {approval_id} has been revoked or superseded")
    return grant


def open_stage3(history: Sequence[RecordedEvent]) -> RecordedEvent | None:
    """The latest stage 3 ``stage.started`` not finished: no ``stage.completed`` (stage 3) or
    ``rollback.completed`` after it, or a ``rollback.incomplete`` after it that no ``rollback.completed``
    (its own, or an operator's ``--resolve``) has closed yet."""
    current: RecordedEvent | None = None
    left_behind = False
    for ev in history:
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 3:
            current, left_behind = ev, False
        elif current is None or ev.candidate not in (current.candidate, None):
            continue
        elif ev.kind == EventKind.ROLLBACK_COMPLETED:
            current = None
        elif ev.kind == EventKind.ROLLBACK_INCOMPLETE:
            left_behind = True
        elif ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 3 and not left_behind:
            current = None
    return current


def earlier_stables(store: EventStore, workload: str) -> list[tuple[str, str | None]]:
    """``(digest, image)`` of every stable ``rollback --to`` may return to, most recent first: the
    stables still below the current one in the lineage (never rolled back), each with the restore
    information of its own completed promotion (so the ledger knows how to bring it back)."""
    lin = lineage(store, workload)
    by_digest = {s.digest: s for s in lin.stables if s.event_id is not None and s.state == "superseded"}
    return [(d, by_digest[d].image) for d in reversed(lin.stack[:-1]) if d in by_digest]


def plan_rollback(store: EventStore, decl: Declaration, *, to: str | None = None) -> RollbackPlan:
    """The rollback's target: the stable before the current one (``to``: an earlier stable of the
    lineage, refused with ``InvalidInput``, exit 2, naming the allowed digests, when it is not one)."""
    workload = decl.workload.name
    history = store.read_stream(workload)
    open3 = open_stage3(history)
    if to is not None:
        allowed = earlier_stables(store, workload)
        if open3 is not None or to not in {d for d, _ in allowed}:
            names = ", ".join(d for d, _ in allowed) or "none"
            why = "a Stage 3 promotion is unfinished; " if open3 is not None else ""
            raise InvalidInput(
                f"--to {to} is not an earlier verified stable of {workload} ({why}allowed: {names})",
                hint="see `railiance lineage WORKLOAD`; without --to it returns to the previous stable",
            )
    if open3 is not None:
        prev = open3.payload.get("previous_stable") or {}
        return RollbackPlan(
            leaving_digest=open3.candidate,
            leaving_image=(open3.payload.get("candidate") or {}).get("image"),
            leaving_restore=dict(open3.payload.get("candidate_restore") or {}),
            leaving_seq=open3.seq,
            target=RestoreTarget.from_restore(
                prev, decl, source="the stable an unfinished Stage 3 was replacing"
            ),
            open_stage3=open3,
        )
    lin = lineage(store, workload)
    current = lin.current_stable
    if current is None:
        raise GateFailed(
            f"{workload} has no stable version in the ledger: nothing was promoted, so there is nothing to "
            "roll back",
            hint="a Stage 2 canary is rolled back by `railiance rollback` while it is observed",
        )
    if to is not None:
        chosen = next(s for s in lin.stables if s.digest == to and s.event_id is not None)
        return RollbackPlan(
            leaving_digest=current.digest,
            leaving_image=current.image,
            leaving_restore=dict(current.restore),
            leaving_seq=current.seq,
            target=RestoreTarget.from_restore(
                chosen.restore,
                decl,
                source="ledger lineage (earlier stable chosen with --to)",
                digest=chosen.digest,
                image=chosen.image,
            ),
            open_stage3=None,
        )
    target = lin.rollback_target
    if target is None:
        raise GateFailed(f"{workload}: no earlier stable is known to roll back to from {current.digest}")
    if target.known:
        restore = RestoreTarget.from_restore(
            target.restore,
            decl,
            source="ledger lineage (previous stable)",
            digest=target.digest,
            image=target.image,
        )
    else:
        prev = dict(current.restore.get("previous_restore") or {})
        restore = RestoreTarget.from_restore(
            prev,
            decl,
            source="pre-ledger stable recorded by the first promotion",
            digest=target.digest,
            image=prev.get("image") or target.image,
        )
    return RollbackPlan(
        leaving_digest=current.digest,
        leaving_image=current.image,
        leaving_restore=dict(current.restore),
        leaving_seq=current.seq,
        target=restore,
        open_stage3=None,
    )
