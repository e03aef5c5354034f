"""The canary guard's question: which immediate-rollback conditions appeared while a canary is observed.

- ``rollback_conditions``: immediate-rollback conditions that appeared during an open Stage 2
  observation window (an approval revoked, a canary sample naming an immediate-rollback symptom).

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.ledger.projections import partition_key
from railiance_ledger.lifecycle.gating import open_canary

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = ["RollbackCondition", "rollback_conditions"]


@dataclass(frozen=True)
class RollbackCondition:
    """An immediate-rollback condition seen during an open Stage 2 observation window."""

    workload: str
    digest: str
    reason: str
    seq: int

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


def _sample_symptom(payload: Mapping[str, Any], decl: Declaration | None) -> str | None:
    flagged = payload.get("immediate_rollback")
    if flagged:
        return str(payload.get("symptom") or payload.get("immediate_rollback_reason") or flagged)
    if payload.get("immediate_rollback_reason"):
        return str(payload["immediate_rollback_reason"])
    if decl is None:
        return None
    try:
        sample = dc.CanarySample.from_payload(payload)
        thresholds = dc.Thresholds.from_mapping(decl.canary.thresholds.model_dump())
    except (KeyError, TypeError, ValueError):
        return None
    return dc.immediate_rollback_reason(sample, thresholds)


def rollback_conditions(
    store: EventStore, events: Iterable[RecordedEvent], decls: Mapping[str, Declaration]
) -> list[RollbackCondition]:
    """Immediate-rollback conditions among ``events`` whose candidate's canary window is still open.

    An ``approval.revoked`` (stage 2 or unstaged) of the candidate being observed, or a
    ``canary.sample`` naming an immediate-rollback symptom (``domain.canary.immediate_rollback_reason``
    against the declared thresholds, or an explicit ``immediate_rollback`` flag in its payload).
    One condition per candidate (the first seen).
    """
    out: dict[tuple[str, str], RollbackCondition] = {}
    for ev in events:
        if not ev.candidate or (ev.stream, ev.candidate) in out:
            continue
        reason: str | None = None
        if ev.kind == EventKind.APPROVAL_REVOKED and ev.stage in (None, 2):
            reason = f"approval revoked by {ev.actor} during the observation window (seq {ev.seq})"
        elif ev.kind == EventKind.CANARY_SAMPLE:
            symptom = _sample_symptom(ev.payload, decls.get(ev.stream))
            if symptom:
                reason = f"canary sample seq {ev.seq}: {symptom}"
        if reason is None:
            continue
        # the candidate's own events only (indexed): the cost never grows with the workload's history
        if open_canary(store.read_candidate(ev.stream, ev.candidate), ev.candidate) is None:
            continue  # the window already closed (observe rolled back itself, or it completed)
        out[(ev.stream, ev.candidate)] = RollbackCondition(ev.stream, ev.candidate, reason, ev.seq)
    return list(out.values())
