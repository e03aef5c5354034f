"""Stage 3 record: judging the promotion (smoke), recording it, or restoring the previous stable."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.domain.stage_result import (
    Check,
    Evidence,
)
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.probes import run_smoke
from railiance_ledger.lifecycle.notes import post_and_record
from railiance_ledger.lifecycle.rollback.model import RollbackPlan
from railiance_ledger.lifecycle.rollback.restore import perform
from railiance_ledger.lifecycle.stage3.context import (
    PromotionContext,
    PromotionOutcome,
    complete_stage,
    stage_result,
)
from railiance_ledger.lifecycle.unfinished import incomplete_event, manual_command

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


def judge_promotion(
    decl: Declaration, kube: KubePort, http: httpx.Client, namespace: str, routing: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], Check, str | None]:
    """After a promotion: the smoke results, the ``post_promotion_smoke`` check, and why the promotion
    failed (stable routing not on the candidate, or a failed smoke), or ``None`` when it stands."""
    smoke = run_smoke(decl, kube, http, namespace)
    smoke_ok = bool(smoke) and all(s["ok"] for s in smoke)
    check = _check(
        "post_promotion_smoke",
        smoke_ok,
        "; ".join(f"{s['name']} {s['target']}: {s['detail']}" for s in smoke)
        or "no [[smoke]] checks declared: Stage 3 requires a smoke result after promotion",
        evidence=[
            Evidence(kind="http-status", ref=str(s["target"]), detail=f"{s['name']}: {s['detail']}")
            for s in smoke
        ],
    )
    failure: str | None = None
    if not routing["ok"]:
        failure = f"stable routing does not point at the promoted candidate: {routing['detail']}"
    elif not smoke_ok:
        failure = "post-promotion smoke failed: " + "; ".join(
            f"{s['name']}: {s['detail']}" for s in smoke if not s["ok"]
        )
    return smoke, check, failure


def record_promotion(
    *,
    store: EventStore,
    ctx: PromotionContext,
    checks: list[Check],
    payload: dict[str, Any],
    routing: Mapping[str, Any],
    smoke: Sequence[Mapping[str, Any]],
    statehub: StateHubPort | None,
    events: list[RecordedEvent],
) -> PromotionOutcome:
    """``promotion.completed`` (``payload``), the State Hub note, ``stage.completed`` (3): the promotion
    passed."""

    prev = ctx.previous
    assert prev is not None
    workload, workflow_id, form = ctx.workload, str(payload["workflow_id"]), str(payload["form"])
    release, new_rev = str(payload["release"]), payload.get("helm_revision")
    promo = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.PROMOTION_COMPLETED,
                actor=ctx.operator,
                candidate=ctx.digest,
                stage=3,
                payload=redact_value(payload),
            )
        ]
    )[0]
    events.append(promo)
    warnings: list[str] = []
    evidence = _evidence(ctx, workflow_id, str(payload["command"]), new_rev, routing, smoke, release=release)
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=promo,
        title=f"{workload}: promoted {ctx.image} to stable",
        body=(
            f"Stage 3 promotion {workflow_id} of {ctx.image} ({form}).\nPrevious stable: {prev.text}.\n"
            f"New stable: {ctx.image}, Helm revision {new_rev} of {ctx.namespace}/{release}.\n"
            f"Routing: {routing['detail']}.\nSmoke: "
            + "; ".join(f"{s['name']} {s['detail']}" for s in smoke)
            + f".\nRollback target retained: {prev.text} (Helm revision {prev.helm_revision}, "
            f"manifests {prev.manifests_sha256 or 'not stored'}"
            + (
                f", previous routing of {len(payload['routing_previous'])} objects"
                if payload.get("routing_previous")
                else ""
            )
            + f").\nLedger event {promo.event_id} (seq {promo.seq})."
        ),
        evidence=[e.model_dump(mode="json") for e in evidence],
        required=True,
        required_reason="Stage 3 evidence includes a State Hub progress note",
    )
    if note.warning:
        warnings.append(note.warning)
    evidence.append(Evidence(kind="statehub", ref=note.note_id or "not delivered", detail="progress note"))
    doc, evs, w = complete_stage(ctx, stage_result(ctx, checks, evidence))
    doc.update(
        {
            "workflow_id": workflow_id,
            "rolled_back": False,
            "promotion": {"seq": promo.seq, "event_id": promo.event_id},
            "statehub_note": note.note_id,
        }
    )
    exit_code = 0 if doc["status"] == "pass" else 1
    return PromotionOutcome(
        document=doc, exit_code=exit_code, events=events + evs, warnings=warnings + w, workflow_id=workflow_id
    )


def _evidence(
    ctx: PromotionContext,
    workflow_id: str,
    command: str,
    new_rev: Any,
    routing: Mapping[str, Any],
    smoke: Sequence[Mapping[str, Any]],
    *,
    release: str | None = None,
) -> list[Evidence]:
    prev = ctx.previous
    assert prev is not None
    release = release or ctx.release
    ev = [
        Evidence(kind="workflow", ref=workflow_id, detail=command),
        Evidence(kind="digest", ref=prev.image or prev.digest or "unknown", detail="previous stable"),
        Evidence(kind="digest", ref=ctx.image, detail="new stable"),
        Evidence(
            kind="k8s-object",
            ref=f"helm-release/{ctx.namespace}/{release}",
            detail=f"revision {new_rev} (previous stable: {prev.serving_release or prev.release} revision "
            f"{prev.helm_revision})",
        ),
        Evidence(
            kind="summary",
            ref=f"routing:{routing.get('host') or routing.get('stable_service')}",
            detail=str(routing.get("detail")),
        ),
    ]
    ev += [
        Evidence(kind="http-status", ref=str(s.get("target")), detail=f"smoke {s['name']}: {s['detail']}")
        for s in smoke
    ]
    ev.append(
        Evidence(
            kind="summary",
            ref=f"rollback-target:{prev.image or prev.digest}",
            detail=f"retained: Helm revision {prev.helm_revision}, manifests {prev.manifests_sha256}",
        )
    )
    if ctx.stage2_result is not None:
        ev.append(
            Evidence(kind="summary", ref=f"ledger:{ctx.stage2_result.event_id}", detail="stage 2 acceptance")
        )
    return ev


def fail_and_restore(
    *,
    store: EventStore,
    ctx: PromotionContext,
    checks: list[Check],
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    started_ev: RecordedEvent,
    events: list[RecordedEvent],
    failure: str,
    workflow_id: str,
    candidate_restore: dict[str, Any],
    ready_timeout: float,
    sleep: Callable[[float], None],
    strategy: str | None = None,
    undo_failures: Sequence[str] = (),
) -> PromotionOutcome:
    """The promotion changed production and failed: restore the previous stable, then record the stage.

    A restore whose steps fail is recorded as ``rollback.incomplete`` (and the ``automatic_rollback``
    check names what remains); so is a restore blocked by a forward-only migration.

    ``strategy`` overrides the declared rollback strategy (a routing switch is always undone by
    restoring the routing it replaced).
    """
    assert ctx.previous is not None
    strategy = strategy or ctx.decl.rollback.strategy
    warnings: list[str] = []
    rollback_doc: dict[str, Any] | None = None
    if ctx.decl.migrations.classification == "forward-only":
        checks.append(
            _check(
                "automatic_rollback",
                False,
                f"{failure}. Automatic rollback BLOCKED: the candidate carries a forward-only migration; "
                "production may still serve the candidate. A human must decide: "
                "`railiance rollback APP_DIR --reason TEXT --accept-forward-only --approval <id>`",
            )
        )
        rolled_back = False
        events += store.append(
            [
                incomplete_event(
                    workload=ctx.workload,
                    operator=ctx.operator,
                    candidate=ctx.digest,
                    stage=3,
                    reason=f"{failure}; the automatic rollback is blocked by a forward-only migration",
                    remaining=[
                        f"production may still serve the candidate {ctx.image} (promotion {workflow_id})"
                    ],
                    command=(
                        "railiance rollback APP_DIR --reason TEXT --accept-forward-only --approval <id>; "
                        "or, keeping the candidate after review, "
                        "railiance rollback APP_DIR --resolve --reason TEXT"
                    ),
                )
            ]
        )
    else:
        plan = RollbackPlan(
            leaving_digest=ctx.digest,
            leaving_image=ctx.image,
            leaving_restore=candidate_restore,
            leaving_seq=started_ev.seq,
            target=ctx.previous,
            open_stage3=started_ev,
        )
        out = perform(
            store=store,
            decl=ctx.decl,
            operator=ctx.operator,
            kube=kube,
            helm=helm,
            http=http,
            plan=plan,
            symptom=failure,
            fate="returned-to-stage1",
            strategy=strategy,
            started_payload={
                "symptom": failure,
                "reason": failure,
                "at": format_timestamp(now()),
                "automatic": True,
                "workflow_id": workflow_id,
                "strategy": strategy,
                "from_stable": ctx.digest,
                "rollback_target": ctx.previous.as_dict(),
            },
            statehub=statehub,
            now=now,
            home=ctx.home,
            ready_timeout=ready_timeout,
            sleep=sleep,
            finish_open_stage=False,
        )
        events += out.events
        warnings += out.warnings
        rollback_doc = out.document
        rolled_back = True
        restored = (
            f"{failure}. Previous stable {ctx.previous.text} restored automatically: "
            f"{out.document.get('action')}; verification "
            f"{'passed' if out.passed else 'FAILED'}: "
            f"{out.document['verification']['check'].get('detail')}"
        )
        if undo_failures and out.phase != "incomplete":
            # The stable is back but the candidate's routing could not be taken off: still incomplete.
            left = incomplete_event(
                workload=ctx.workload,
                operator=ctx.operator,
                candidate=ctx.digest,
                stage=3,
                reason=f"{failure}; the canary routing could not be removed after the failed promotion",
                remaining=list(undo_failures),
                failures=list(undo_failures),
                command=manual_command(
                    [f"kubectl --namespace {ctx.namespace} delete the canary routing objects listed"],
                    "remove the canary routing",
                ),
            )
            events += store.append([left])
            out = replace(out, phase="incomplete", exit_code=1)
            out.document["ledger"] = {"seq": events[-1].seq, "hash": events[-1].hash}
            out.document["failures"] = list(undo_failures)
            out.document["manual_command"] = left.payload["manual_command"]
        if out.phase == "incomplete":
            restored = (
                f"{failure}. The automatic rollback to {ctx.previous.text} is INCOMPLETE (seq "
                f"{out.document['ledger']['seq']}): {'; '.join(out.document.get('failures') or [])}; "
                f"manual command: {out.document.get('manual_command')}"
            )
        checks.append(_check("automatic_rollback", out.passed, restored))
    evidence = [Evidence(kind="workflow", ref=workflow_id, detail="promotion (failed)")]
    if rollback_doc is not None:
        evidence.append(
            Evidence(
                kind="summary", ref=f"ledger:seq {rollback_doc['ledger']['seq']}", detail="rollback.completed"
            )
        )
        if rollback_doc.get("statehub_note"):
            evidence.append(
                Evidence(kind="statehub", ref=str(rollback_doc["statehub_note"]), detail="rollback note")
            )
    doc, evs, w = complete_stage(ctx, stage_result(ctx, checks, evidence))
    doc.update({"workflow_id": workflow_id, "rolled_back": rolled_back, "rollback": rollback_doc})
    return PromotionOutcome(
        document=doc,
        exit_code=1,
        events=events + evs,
        warnings=warnings + w,
        rolled_back=rolled_back,
        workflow_id=workflow_id,
        rollback=rollback_doc,
    )
