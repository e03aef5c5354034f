"""Candidate partition retention: which candidates keep a Dagster partition.

A workload keeps a partition for its newest ``keep`` registered candidates, for every candidate that
was ever stable and for the current rollback target; older partitions are removed from Dagster while
the ledger keeps every event. The work per call depends on how many candidates were just registered,
never on how many the workload has: when ``n`` candidates arrive, only the registrations ranked
``keep + 1 .. keep + n`` (newest first) can leave the window.

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.schema import events

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore

__all__ = ["DEFAULT_KEEP", "kept_stables", "leaving_window", "retired_candidates"]

DEFAULT_KEEP = 50
"""Candidate partitions kept per workload unless declared otherwise."""


def leaving_window(store: EventStore, workload: str, *, keep: int, arrived: int) -> list[str]:
    """Digests ranked ``keep + 1 .. keep + arrived`` among ``workload``'s registrations, newest first:
    the ones that ``arrived`` new registrations push out of a window of ``keep``."""
    if arrived <= 0:
        return []
    stmt = (
        sa.select(events.c.candidate)
        .where(events.c.stream == workload, events.c.kind == EventKind.CANDIDATE_REGISTERED.value)
        .order_by(events.c.seq.desc())
        .offset(max(0, keep))
        .limit(arrived)
    )
    with store.reading("leaving_window") as conn:
        return [str(d) for d in conn.execute(stmt).scalars() if d]


def kept_stables(store: EventStore, workload: str) -> set[str]:
    """Every digest that was ever stable for ``workload``, and its rollback target."""
    from railiance_ledger.ledger.projections import lineage

    lin = lineage(store, workload)
    kept = {s.digest for s in lin.stables}
    if lin.rollback_target is not None:
        kept.add(lin.rollback_target.digest)
    return kept


def retired_candidates(store: EventStore, workload: str, *, keep: int, arrived: int) -> list[str]:
    """The candidates whose partitions retire now that ``arrived`` new ones were registered."""
    leaving = leaving_window(store, workload, keep=keep, arrived=arrived)
    if not leaving:
        return []
    stay = kept_stables(store, workload)
    return [d for d in leaving if d not in stay]
