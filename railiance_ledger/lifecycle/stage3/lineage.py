"""The lineage read helper for ``railiance lineage``: the projection plus each stable's evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import DEFAULT_PAGE, lineage

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore


def lineage_with_evidence(
    store: EventStore,
    workload: str,
    *,
    at: str | None = None,
    limit: int | None = DEFAULT_PAGE,
    before: int | None = None,
) -> dict[str, Any]:
    """``ledger.projections.lineage`` (as a dict) with each stable's evidence added.

    For every stable promoted through the ledger, ``evidence`` gives the Stage 3 stage-result ledger
    reference (seq, hash, status), the promotion's workflow id, and the State Hub note ids recorded
    for the promotion and its stage result; ``approvals`` (from the projection) says who approved
    it. ``limit``/``before`` page the stables and rollbacks (``ledger.projections.lineage``). With ``at``
    only events recorded at or before that instant count (what was stable then, who
    approved it, with which evidence).
    """

    lin = lineage(store, workload, at=at, limit=limit, before=before)
    data = lin.as_dict()
    bound = lin.at  # ``at`` normalized by the projection
    history = [ev for ev in store.read_stream(workload) if bound is None or ev.recorded_at <= bound]
    notes: dict[str, list[str]] = {}
    for ev in history:
        if ev.kind == EventKind.NOTE_POSTED and ev.payload.get("delivered") and ev.payload.get("note_id"):
            notes.setdefault(str(ev.payload.get("ref_event_id")), []).append(str(ev.payload["note_id"]))
    by_event = {ev.event_id: ev for ev in history}

    def evidence(stable: dict[str, Any]) -> dict[str, Any]:
        promo = by_event.get(str(stable.get("event_id")))
        if promo is None:
            return {"promotion": None, "stage_result": None, "notes": []}
        result = next(
            (
                ev
                for ev in history
                if ev.seq > promo.seq
                and ev.kind == EventKind.STAGE_COMPLETED
                and ev.stage == 3
                and ev.candidate == promo.candidate
            ),
            None,
        )
        ids = notes.get(promo.event_id, []) + (notes.get(result.event_id, []) if result else [])
        return {
            "promotion": {
                "event_id": promo.event_id,
                "seq": promo.seq,
                "hash": promo.hash,
                "workflow_id": promo.payload.get("workflow_id"),
                "helm_revision": promo.payload.get("helm_revision"),
            },
            "stage_result": {
                "event_id": result.event_id,
                "seq": result.seq,
                "hash": result.hash,
                "status": result.payload.get("status"),
            }
            if result
            else None,
            "notes": ids,
        }

    for stable in data["stables"]:
        stable["evidence"] = evidence(stable)
    if data["current_stable"] is not None:
        data["current_stable"]["evidence"] = evidence(data["current_stable"])
    return data
