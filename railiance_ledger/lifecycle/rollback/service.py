"""The rollback service: remove an open canary, or return production to the previous stable."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from railiance_ledger.domain.events import EventKind, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle.approvals import require_operator
from railiance_ledger.lifecycle.rollback.defer import defer_rollback
from railiance_ledger.lifecycle.rollback.manual import manual_rollback
from railiance_ledger.lifecycle.rollback.model import CANDIDATE_FATES, RollbackOutcome
from railiance_ledger.lifecycle.rollback.plan import human_decision, open_stage3, plan_rollback
from railiance_ledger.lifecycle.rollback.restore import perform
from railiance_ledger.lifecycle.stage2.canary import open_deployment
from railiance_ledger.lifecycle.stage2.removal import remove_canary
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.domain.payloads import CandidateFate
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort

_ROLLBACK_ENDS = (EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_INCOMPLETE)


def rollback(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    reason: str,
    statehub: StateHubPort | None = None,
    defer: bool = False,
    approval_id: str | None = None,
    candidate_fate: str = "returned-to-stage1",
    accept_forward_only: bool = False,
    automatic: bool = False,
    manual_done: bool = False,
    to: str | None = None,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    home: Path | None = None,
    ready_timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackOutcome:
    """Roll production back to the previous stable (or defer it with a human approval), verify, record.

    ``reason`` is the triggering symptom. ``candidate_fate`` records whether the rolled-back
    candidate is ``returned-to-stage1`` (it needs a new Stage 1 pass), ``blocked`` or ``abandoned``
    (it may never be promoted again). ``automatic=True`` marks callers that are not a human at a
    terminal (sensors, the promotion's own rollback): they never get past a forward-only migration.

    While a Stage 2 canary is being observed, the rollback removes the canary (``stage2.remove_canary``).
    ``to`` (a digest) returns to that earlier stable of the lineage instead of the previous one
    (``plan.plan_rollback``; refused with ``InvalidInput`` when it is not one, or while a canary is open).
    Raises ``InvalidInput`` (exit 2) for a missing reason, operator or unknown fate, and ``GateFailed``
    (exit 1) when there is nothing to roll back to, a deferral or forward-only override lacks its
    approval, or a forward-only migration blocks an automatic rollback.
    """

    who = require_operator(operator, what="a rollback")
    if not reason or not reason.strip():
        raise InvalidInput("a rollback needs the triggering symptom", hint="pass --reason TEXT")
    symptom = redact(reason.strip())
    if candidate_fate not in CANDIDATE_FATES:
        raise InvalidInput(
            f"unknown candidate fate {candidate_fate!r}", hint="use one of " + ", ".join(CANDIDATE_FATES)
        )
    workload = decl.workload.name
    history = store.read_stream(workload)

    if not defer and open_deployment(history, None) is not None and open_stage3(history) is None:
        if to is not None:
            raise InvalidInput(
                f"--to {to}: a Stage 2 canary of {workload} is open; its rollback removes the canary and "
                "production stays as it is",
                hint="run `railiance rollback APP_DIR --reason TEXT` without --to first",
            )
        events = remove_canary(
            store=store,
            decl=decl,
            operator=who,
            kube=kube,
            helm=helm,
            reason=symptom,
            now=now,
            fate=cast("CandidateFate", candidate_fate),
        )
        done = next((e for e in reversed(events) if e.kind in _ROLLBACK_ENDS), None)
        ok = done is not None and done.kind == EventKind.ROLLBACK_COMPLETED
        phase = "canary-removed" if ok else "incomplete"
        doc = {
            "kind": "railiance.rollback/v1",
            "workload": workload,
            "phase": phase,
            "symptom": symptom,
            "action": done.payload.get("action") if done else None,
            "final_stable": done.payload.get("final_stable") if done else None,
            "remaining_cleanup": done.payload.get("remaining_cleanup") if done else None,
            "manual_command": done.payload.get("manual_command") if done else None,
            "status": "pass" if ok else "fail",
            "ledger": {"seq": done.seq, "hash": done.hash} if done else None,
        }
        return RollbackOutcome(document=doc, exit_code=0 if ok else 1, phase=phase, events=events)

    plan = plan_rollback(store, decl, to=to)
    leaving = plan.leaving_digest or ""
    forward_only = plan.leaving_restore.get("migrations") == "forward-only" or (
        plan.open_stage3 is not None and decl.migrations.classification == "forward-only"
    )
    decision: RecordedEvent | None = None
    if forward_only:
        if automatic or not accept_forward_only:
            raise GateFailed(
                f"forward-only migration in {plan.leaving_image or leaving} blocks automatic rollback: the "
                "older "
                f"code would run against data it may not understand; a human must decide",
                hint=(
                    "review the migration, then have another operator approve and run "
                    "`railiance rollback APP_DIR --reason TEXT --accept-forward-only --approval <approval "
                    "id>`"
                ),
            )
        decision = human_decision(
            store,
            workload,
            approval_id=approval_id,
            operator=who,
            digest=leaving,
            after_seq=plan.leaving_seq,
            what="rolling back over a forward-only migration",
        )
    if defer:
        return defer_rollback(
            store=store,
            decl=decl,
            operator=who,
            plan=plan,
            symptom=symptom,
            approval_id=approval_id,
            statehub=statehub,
            now=now,
        )

    strategy = decl.rollback.strategy
    started_payload = {
        "symptom": symptom,
        "reason": symptom,
        "at": format_timestamp(now()),
        "strategy": strategy,
        "from_stable": leaving or None,
        "from_image": plan.leaving_image,
        "rollback_target": plan.target.as_dict(),
        "automatic": automatic,
        "forward_only_accepted_by": decision.event_id if decision else None,
    }
    if strategy == "manual":
        return manual_rollback(
            store=store,
            decl=decl,
            operator=who,
            kube=kube,
            http=http,
            plan=plan,
            symptom=symptom,
            fate=candidate_fate,
            started_payload=started_payload,
            statehub=statehub,
            done=manual_done,
            now=now,
            home=home,
            ready_timeout=ready_timeout,
            sleep=sleep,
        )
    return perform(
        store=store,
        decl=decl,
        operator=who,
        kube=kube,
        helm=helm,
        http=http,
        plan=plan,
        symptom=symptom,
        fate=candidate_fate,
        strategy=strategy,
        started_payload=started_payload,
        statehub=statehub,
        now=now,
        home=home,
        ready_timeout=ready_timeout,
        sleep=sleep,
    )
