"""Stage 3 precheck ``readiness_answered``: the spec's Forgejo readiness interpretation as a gate.

"If any answer is missing, Forgejo remains in Stage 1 or Stage 2 preparation and must not cut over to
Stage 3." For a production-critical workload the readiness report (``lifecycle.readiness``) is read
for the candidate being promoted; every unanswered question fails the gate, naming the question and
what is missing, unless a Stage 3 waiver names that question (``readiness:<question id>``, recorded
with its reason). The gate takes no blanket waiver. Other workloads pass with "not required".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from railiance_ledger.domain.gates import READINESS_PREFIX
from railiance_ledger.domain.stage_result import Check, CheckStatus, Evidence
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.readiness import readiness_report

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.lifecycle.stage3.context import PromotionContext

GATE = "readiness_answered"


def check_readiness(store: EventStore, ctx: PromotionContext) -> Check:
    decl = ctx.decl
    if not decl.production_critical:
        return make_check(GATE, True, "not required: the workload is not production-critical")
    report = readiness_report(store=store, decl=decl, image=ctx.image)
    waivers = ctx.run.waivers()
    evidence = [
        Evidence(
            kind="summary",
            ref=f"readiness:{a.id}",
            detail=("answered: " if a.answered else "missing: ") + a.text,
        )
        for a in report.answers
    ]
    unanswered = [a for a in report.answers if not a.answered]
    waived = [
        (a, waivers[f"{READINESS_PREFIX}{a.id}"])
        for a in unanswered
        if f"{READINESS_PREFIX}{a.id}" in waivers
    ]
    open_ = [a for a in unanswered if f"{READINESS_PREFIX}{a.id}" not in waivers]
    if open_:
        listed = "; ".join(f"{a.id} ({a.question} missing: {', '.join(a.missing) or a.text})" for a in open_)
        remain = min(
            (a.must_remain_in for a in open_ if a.must_remain_in), key=lambda p: p.rank, default=None
        )
        where = f"; the workload remains in {remain}" if remain else ""
        return make_check(
            GATE,
            False,
            f"{len(open_)} readiness answer(s) missing: {listed}{where}; answer them in railiance/app.toml "
            f"or record a stage 3 waiver named {READINESS_PREFIX}<question> with the reason",
            evidence=evidence,
        )
    if waived:
        ids = ", ".join(f"{a.id} (waiver {ev.event_id})" for a, ev in waived)
        return Check(
            name=GATE,
            status=CheckStatus.WAIVED,
            reason=f"every readiness question answered except {ids}, waived",
            evidence=evidence,
            waiver=waived[0][1].event_id,
        )
    return make_check(
        GATE, True, f"all {len(report.answers)} readiness questions answered", evidence=evidence
    )
