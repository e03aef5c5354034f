"""Production at a glance: what one workload runs now, from the ledger's read side.

``production_view`` answers, for one workload: the stable digest and since when (who promoted it, who
approved it), the rollback target, the open Stage 2 canary and its window, approvals pending and
overdue, the last rollback and why. The Dagster ``production`` asset and the mirror sensor show it;
the CLI's ``status`` answers the same questions from the same projections.

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = ["PRODUCTION_KINDS", "OpenCanary", "ProductionView", "production_view"]

PRODUCTION_KINDS = frozenset(
    {
        EventKind.CANDIDATE_REGISTERED,
        EventKind.STAGE_STARTED,
        EventKind.STAGE_COMPLETED,
        EventKind.APPROVAL_GRANTED,
        EventKind.APPROVAL_REVOKED,
        EventKind.EXCEPTION_EMERGENCY,
        EventKind.PROMOTION_COMPLETED,
        EventKind.ROLLBACK_COMPLETED,
    }
)
"""Event kinds that can change a workload's production view (the mirror refreshes it on those)."""


@dataclass(frozen=True)
class OpenCanary:
    """The Stage 2 canary whose observation window is open."""

    digest: str
    opened_at: str
    opened_seq: int
    window_seconds: int | None
    closes_at: str | None


@dataclass(frozen=True)
class ProductionView:
    """One workload's production state, as the ledger records it."""

    workload: str
    last_seq: int
    stable: str | None
    stable_image: str | None
    stable_since: str | None
    promoted_by: str | None
    approved_by: tuple[str, ...]
    rollback_target: str | None
    rollback_target_image: str | None
    rollback_target_kind: str | None
    open_canary: OpenCanary | None
    pending_approvals: tuple[dict[str, Any], ...]
    overdue_approvals: tuple[dict[str, Any], ...]
    last_rollback_at: str | None
    last_rollback_by: str | None
    last_rollback_from: str | None
    last_rollback_to: str | None
    last_rollback_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _plus(at: str, seconds: int) -> str:
    return (datetime.fromisoformat(at) + timedelta(seconds=seconds)).isoformat()


def production_view(store: EventStore, workload: str, decl: Declaration | None = None) -> ProductionView:
    """The production view of ``workload`` (``decl`` gives the canary window; without it, unknown).

    Pending approvals are the ledger's (a candidate whose last stage passed, without an approval for
    the next one, on a workload that requires one); overdue ones are emergency exceptions still
    awaiting their retrospective approval past its deadline (``approval.retrospective_deadline``,
    default 24 h; each with ``due_at``).
    """
    from railiance_ledger.ledger.projections import lineage, open_canary_digest, workload_status
    from railiance_ledger.lifecycle.approvals import pending_retrospective
    from railiance_ledger.lifecycle.gating import open_canary

    # projections only (O(1) in the workload's history); the candidate's own events for the canary
    lin = lineage(store, workload)
    status = workload_status(store, workload)
    current = lin.current_stable
    target = lin.rollback_target
    canary: OpenCanary | None = None
    open_digest = open_canary_digest(store, workload)
    opened = open_canary(store.read_candidate(workload, open_digest), open_digest) if open_digest else None
    if opened is not None and opened.candidate:
        window = decl.observation_window_seconds if decl is not None else None
        canary = OpenCanary(
            digest=opened.candidate,
            opened_at=opened.recorded_at,
            opened_seq=opened.seq,
            window_seconds=window,
            closes_at=_plus(opened.recorded_at, window) if window else None,
        )
    last = lin.rollbacks[-1] if lin.rollbacks else None
    return ProductionView(
        workload=workload,
        last_seq=status.last_seq,
        stable=current.digest if current else None,
        stable_image=current.image if current else None,
        stable_since=current.promoted_at if current else None,
        promoted_by=current.promoted_by if current else None,
        approved_by=tuple(a.operator for a in current.approvals if not a.revoked) if current else (),
        rollback_target=target.digest if target else None,
        rollback_target_image=target.image if target else None,
        rollback_target_kind=target.kind if target else None,
        open_canary=canary,
        pending_approvals=tuple(p.as_dict() for p in status.pending_approvals),
        # the deadlines need the exceptions' own records: read only when the projection lists one awaiting
        overdue_approvals=(
            tuple(p for p in pending_retrospective(store, workload) if p["overdue"])
            if status.awaiting_retrospective
            else ()
        ),
        last_rollback_at=last.recorded_at if last else None,
        last_rollback_by=last.actor if last else None,
        last_rollback_from=last.from_stable if last else None,
        last_rollback_to=last.final_stable if last else None,
        last_rollback_reason=last.reason if last else None,
    )
