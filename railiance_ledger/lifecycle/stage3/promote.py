"""Stage 3 entry point: every precheck first, then the declared promotion form."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from railiance_ledger.domain.stage_result import (
    Check,
    overall_status,
)
from railiance_ledger.lifecycle.approvals import require_operator
from railiance_ledger.lifecycle.checks import judge as _guard
from railiance_ledger.lifecycle.stage3.context import (
    PromotionOutcome,
    canary_deployment,
    complete_stage,
    make_context,
    stage_result,
)
from railiance_ledger.lifecycle.stage3.forms import PromotionForm, run_promotion
from railiance_ledger.lifecycle.stage3.forms_replace import ReleaseReplace
from railiance_ledger.lifecycle.stage3.forms_switch import RoutingSwitch
from railiance_ledger.lifecycle.stage3.forms_workflow import RolloutWorkflow
from railiance_ledger.lifecycle.stage3.prechecks import (
    check_backup,
    check_human,
    check_migrations,
    check_previous,
    check_rollback,
    check_stage2,
    check_statehub,
)
from railiance_ledger.lifecycle.stage3.readiness_gate import check_readiness
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


def promote(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None = None,
    image: str | None = None,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    home: Path | None = None,
    ready_timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    helm_upgrade_args: Sequence[str] = (),
) -> PromotionOutcome:
    """Stage 3: every precheck first, then the promotion, read-back, smoke, and the record.

    Exit 0 with a passing stage-result document when the smoke passed and stable routing points at
    the candidate; exit 1 with a failing one when a precheck failed (nothing changed) or the
    promotion failed (the previous stable was restored automatically, unless a forward-only
    migration blocks that: then the result says a human must decide). ``image`` names the
    candidate (default: the newest registered). ``ready_timeout`` bounds each rollout wait.
    """

    who = require_operator(operator, what="a promotion")
    ctx = make_context(store, decl, image, who, home, clock=now)
    started = ctx.run.started_at
    ctx.canary = canary_deployment(ctx.history, ctx.digest)
    checks: list[Check] = [_guard("stage2_accepted", lambda: check_stage2(ctx))]
    checks.append(_guard("previous_stable_recorded", lambda: check_previous(ctx, store, kube, helm)))
    checks.append(_guard("backup_posture_current", lambda: check_backup(ctx, started)))
    checks.append(_guard("migrations_approved", lambda: check_migrations(store, ctx)))
    checks.append(_guard("human_approval", lambda: check_human(store, ctx)))
    checks.append(_guard("rollback_available", lambda: check_rollback(ctx, kube, helm)))
    checks.append(_guard("readiness_answered", lambda: check_readiness(store, ctx)))

    checks.append(_guard("statehub_configured", lambda: check_statehub(ctx, statehub)))
    if overall_status(checks) == "fail":
        doc, events, warnings = complete_stage(ctx, stage_result(ctx, checks, []))
        return PromotionOutcome(document=doc, exit_code=1, events=events, warnings=warnings)
    form: PromotionForm
    if ctx.form == "routing-switch":
        form = RoutingSwitch(ctx)
    elif ctx.form == "workflow":
        form = RolloutWorkflow(ctx)
    else:
        form = ReleaseReplace(ctx, helm_upgrade_args=helm_upgrade_args)
    return run_promotion(
        form,
        store=store,
        ctx=ctx,
        checks=checks,
        kube=kube,
        helm=helm,
        http=http,
        statehub=statehub,
        now=now,
        started=started,
        ready_timeout=ready_timeout,
        sleep=sleep,
    )
