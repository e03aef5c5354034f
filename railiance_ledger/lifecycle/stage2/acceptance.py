"""Stage 2 acceptance: the end-of-window verdicts, waivers, release identity, State Hub note and
the stage result (accepted, rejected or rolled back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.stage_result import (
    Check,
    CheckStatus,
    Evidence,
    overall_status,
)
from railiance_ledger.domain.waiving import WaiverWording, waive
from railiance_ledger.errors import AdapterNotFound
from railiance_ledger.lifecycle.checks import judge as _guard
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.notes import STATEHUB_URL_ENV
from railiance_ledger.lifecycle.stage2.acceptance_checks import not_run, run_acceptance_checks
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment
from railiance_ledger.lifecycle.stage2.context import (
    IDENTITY_GATE,
    STATEHUB_GATE,
    CanaryContext,
    StageOutcome,
    complete_stage,
    post_note,
    refresh_context,
    stage_result,
    target_text,
)
from railiance_ledger.lifecycle.stage2.prechecks import check_approval
from railiance_ledger.lifecycle.stage2.removal import roll_back_canary

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.lifecycle.notes import NoteOutcome
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


def verdicts(
    ctx: CanaryContext,
    dep: CanaryDeployment,
    samples: Sequence[dc.CanarySample],
    thresholds: dc.Thresholds,
    expected: int,
    helm: HelmPort | None,
    *,
    read_back: bool,
    declared: Sequence[Check] = (),
) -> list[Check]:
    """The acceptance gates, ``canary_release_identity``, the declared ``acceptance:<name>`` checks
    (``declared``, already run against the canary) and ``operator_approval`` (``statehub_note`` is
    added by the caller once the note about them was posted)."""
    rb = ctx.decl.rollback
    target = ctx.rollback_target
    readiness = dc.RollbackReadiness(
        target_known=bool(target),
        target=target_text(target),
        tested=bool(rb.tested),
        command=rb.command or "",
    )
    waivers = {name: ev.event_id for name, ev in ctx.waivers.items()}
    verdicts = dc.evaluate_window(
        samples, thresholds, expected_samples=expected, rollback=readiness, waivers=waivers
    )
    checks = [v.to_check() for v in verdicts]
    identity = _guard(IDENTITY_GATE, lambda: _check_release_identity(ctx, dep, helm if read_back else None))
    checks.append(_waive(ctx, identity))
    checks += [_waive(ctx, c) for c in declared]
    checks.append(check_approval(ctx))
    return checks


def _waive(ctx: CanaryContext, check: Check) -> Check:
    """``check`` as ``waived`` when it failed and a stage 2 waiver for its name and this candidate is
    recorded."""
    return waive(check, ctx.waivers.get(check.name), wording=WaiverWording.CHECK_FIRST)


_SHA256_HEX = frozenset("0123456789abcdef")


def _check_release_identity(ctx: CanaryContext, dep: CanaryDeployment, helm: HelmPort | None) -> Check:
    """``canary_release_identity``: the rendered release identity, namespace and release name were
    recorded at deploy and, read back from helm, are still what runs: the recorded revision is the
    deployed one and its manifest pins the candidate digest. ``helm=None`` (the canary was already
    removed by an immediate rollback) checks the record only and says so."""
    name = IDENTITY_GATE
    p = dep.started.payload
    rel = p.get("release") or {}
    sha = str((p.get("manifests") or {}).get("sha256") or "")
    release, namespace, revision = rel.get("name"), rel.get("namespace"), rel.get("revision")
    missing = [
        what
        for what, value in (("release name", release), ("namespace", namespace), ("revision", revision))
        if value in (None, "")
    ]
    if len(sha) != 64 or not set(sha) <= _SHA256_HEX:
        missing.append("rendered manifests sha256")
    if missing:
        return _check(
            name,
            False,
            "release identity not recorded in stage.started: missing " + ", ".join(missing),
            technical=True,
        )
    ident = f"release {namespace}/{release} revision {revision}, rendered manifests sha256:{sha}"
    evidence = [
        Evidence(kind="k8s-object", ref=f"helm-release/{namespace}/{release}", detail=f"revision {revision}"),
        Evidence(kind="summary", ref=f"manifests:sha256:{sha}", detail="rendered release identity"),
    ]
    if helm is None:
        return _check(
            name,
            True,
            f"{ident} recorded (not read back: the immediate rollback removed the release)",
            evidence=evidence,
        )
    try:
        history = helm.history(release=str(release), namespace=str(namespace))
    except AdapterNotFound:
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} not found: removed during the window "
            f"(recorded revision {revision})",
        )
    deployed = [r for r in history if str(r.get("status", "")).lower() == "deployed"]
    if not deployed:
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} has no deployed revision (recorded revision {revision})",
        )
    live = deployed[-1].get("revision")
    if str(live) != str(revision):
        return _check(
            name,
            False,
            f"canary release {namespace}/{release} is at revision {live}, not the recorded "
            f"revision {revision}: it was changed during the window",
        )
    get_manifest: Callable[..., str] | None = getattr(helm, "get_manifest", None)
    if get_manifest is not None:
        manifest = get_manifest(release=str(release), namespace=str(namespace), revision=int(str(revision)))
        if ctx.digest not in manifest:
            return _check(
                name,
                False,
                f"the deployed manifest of {namespace}/{release} revision {revision} does not "
                f"pin the candidate {ctx.digest}",
            )
    return _check(name, True, f"{ident}: deployed as recorded, pinned to {ctx.digest}", evidence=evidence)


def check_statehub_note(ctx: CanaryContext, note: NoteOutcome) -> Check:
    """``statehub_note``: the Stage 2 progress note about this result reached State Hub (its id is in
    the ledger as ``note.posted`` delivered=true); else fail closed with why, unless waived."""

    rec = note.record
    if note.delivered and note.note_id and rec is not None and rec.payload.get("delivered"):
        return _check(
            STATEHUB_GATE,
            True,
            f"progress note {note.note_id} delivered to State Hub (ledger note.posted seq {rec.seq})",
            evidence=[Evidence(kind="statehub", ref=note.note_id, detail=f"note.posted seq {rec.seq}")],
        )
    if not note.configured:
        reason = (
            f"no State Hub configured: {STATEHUB_URL_ENV} is not set, so the required Stage 2 progress "
            "note was not posted"
        )
    else:
        where = f" (ledger note.posted seq {rec.seq}, delivered=false)" if rec is not None else ""
        reason = (
            f"State Hub progress note not delivered after {note.attempts} attempt(s): {note.error}{where}"
        )
    return _waive(ctx, _check(STATEHUB_GATE, False, reason, technical=True))


def _window_evidence(
    ctx: CanaryContext, dep: CanaryDeployment, samples: Sequence[dc.CanarySample], note: NoteOutcome
) -> list[Evidence]:
    rel = dep.started.payload.get("release") or {}
    man = dep.started.payload.get("manifests") or {}
    last = samples[-1] if samples else None
    ev = [
        Evidence(kind="digest", ref=ctx.image, detail="candidate"),
        Evidence(
            kind="summary", ref=f"manifests:sha256:{man.get('sha256')}", detail="rendered release identity"
        ),
        Evidence(
            kind="k8s-object",
            ref=f"helm-release/{rel.get('namespace')}/{rel.get('name')}",
            detail=f"revision {rel.get('revision')}",
        ),
    ]
    if last is not None:
        pods = last.pods
        ev.append(
            Evidence(
                kind="pod-status",
                ref=dep.selector,
                detail=f"{pods.ready}/{pods.total} ready, {pods.restarts} restarts"
                if pods.available
                else f"pod status unavailable: {pods.reason}",
            )
        )
        ev.append(Evidence(kind="summary", ref=f"routing:{dep.spec.form}", detail=last.routing.reason))
        key = ctx.decl.key_health
        if last.health_inside is not None:
            ev.append(
                Evidence(
                    kind="http-status",
                    ref=last.health_inside.target or "inside",
                    detail=f"key health inside: {last.health_inside.reason} ({key.name} {key.path})",
                )
            )
        if last.health_outside is not None:
            ev.append(
                Evidence(
                    kind="http-status",
                    ref=last.health_outside.target or "outside",
                    detail=f"key health outside: {last.health_outside.reason} ({key.name} {key.path})",
                )
            )
        unavailable = [
            s.index for s in samples if not (s.canary.error_rate.usable and s.canary.p95_latency_ms.usable)
        ]
        if unavailable:
            ev.append(
                Evidence(
                    kind="query",
                    ref=ctx.decl.observability.prometheus_selector,
                    detail=f"metrics unavailable in samples {unavailable}",
                )
            )
        else:
            ev.append(
                Evidence(
                    kind="query",
                    ref=ctx.decl.observability.prometheus_selector,
                    detail=f"metrics window: {len(samples)} samples from {samples[0].at} to {last.at}",
                )
            )
    ref = (
        note.note_id
        if note.delivered and note.note_id
        else ("not configured" if not note.configured else "not delivered")
    )
    ev.append(Evidence(kind="statehub", ref=ref, detail="progress note"))
    return ev


def finish(
    *,
    store: EventStore,
    ctx: CanaryContext,
    dep: CanaryDeployment,
    kube: KubePort,
    helm: HelmPort,
    statehub: StateHubPort | None,
    operator: str,
    samples: list[dc.CanarySample],
    thresholds: dc.Thresholds,
    expected: int,
    events: list[RecordedEvent],
    now: Callable[[], datetime],
) -> StageOutcome:
    """End of the window: the gates; then the State Hub note about them; then ``statehub_note``.

    Gates passed: the note says "acceptance gates passed" (never "accepted": the stage accepts only
    once the note is recorded as delivered) and ``statehub_note`` judges its delivery; if that fails
    (no waiver), the canary is rejected and removed like any other. Gates failed: the canary is
    removed first, then the "rejected" note is posted and ``statehub_note`` judges it too.
    """
    refresh_context(ctx)
    declared = run_acceptance_checks(ctx, dep, kube)  # while the canary still runs
    checks = verdicts(ctx, dep, samples, thresholds, expected, helm, read_back=True, declared=declared)
    warnings: list[str] = []
    rolled_back = False
    if overall_status(checks) == "pass":
        head = events[-1].seq if events else dep.started.seq
        note = post_note(
            store,
            statehub,
            dep.started,
            ctx.decl,
            warnings=warnings,
            evidence=[],
            title=f"{ctx.workload}: Stage 2 canary acceptance gates passed",
            body=(
                f"Canary {ctx.image}: every acceptance gate passed over {len(samples)}/{expected} "
                f"samples (ledger up to seq {head}). Stage 2 accepts the candidate only once this "
                "note is recorded as delivered; the result follows in the ledger as stage.completed "
                f"(stage 2) of {ctx.workload} for {ctx.digest}."
            ),
        )
        checks.append(check_statehub_note(ctx, note))
        if overall_status(checks) == "fail":
            events += roll_back_canary(
                store=store,
                ctx=ctx,
                dep=dep,
                kube=kube,
                helm=helm,
                operator=operator,
                now=now,
                symptom=f"canary rejected at the end of the window: {STATEHUB_GATE}",
            )
            rolled_back = True
    else:
        failed = ", ".join(c.name for c in checks if c.status == CheckStatus.FAIL)
        events += roll_back_canary(
            store=store,
            ctx=ctx,
            dep=dep,
            kube=kube,
            helm=helm,
            operator=operator,
            symptom=f"canary rejected at the end of the window: {failed}",
            now=now,
        )
        rolled_back = True
        note = post_rejection(store, ctx, dep, statehub, samples, checks, expected, warnings)
        checks.append(check_statehub_note(ctx, note))
    return close(
        ctx=ctx,
        dep=dep,
        note=note,
        samples=samples,
        checks=checks,
        events=events,
        warnings=warnings,
        rolled_back=rolled_back,
        expected=expected,
        now=now,
    )


def post_rejection(
    store: EventStore,
    ctx: CanaryContext,
    dep: CanaryDeployment,
    statehub: StateHubPort | None,
    samples: Sequence[dc.CanarySample],
    checks: Sequence[Check],
    expected: int,
    warnings: list[str],
) -> NoteOutcome:
    """The "rejected" progress note, posted after the canary was removed."""
    failed = [f"{c.name}: {c.reason}" for c in checks if c.status == CheckStatus.FAIL]
    body = (
        f"Canary {ctx.image}: fail; {len(samples)}/{expected} samples. Failed gates: "
        + "; ".join(failed)
        + ". The canary was rolled back."
    )
    return post_note(
        store,
        statehub,
        dep.started,
        ctx.decl,
        title=f"{ctx.workload}: Stage 2 canary rejected",
        body=body,
        evidence=[],
        warnings=warnings,
    )


def close(
    *,
    ctx: CanaryContext,
    dep: CanaryDeployment,
    note: NoteOutcome,
    samples: list[dc.CanarySample],
    checks: list[Check],
    events: list[RecordedEvent],
    warnings: list[str],
    rolled_back: bool,
    expected: int,
    now: Callable[[], datetime],
) -> StageOutcome:
    status = overall_status(checks)
    started = datetime.fromisoformat(str(dep.started.payload.get("started_at") or dep.started.recorded_at))
    result = stage_result(ctx, checks, _window_evidence(ctx, dep, samples, note), started, now())
    doc, evs, w = complete_stage(ctx, result)
    doc["phase"] = "completed"
    doc["rolled_back"] = rolled_back
    doc["statehub_note"] = note.note_id if note.delivered else None
    return StageOutcome(
        document=doc,
        exit_code=0 if status == "pass" else 1,
        events=events + evs,
        warnings=warnings + w,
        rolled_back=rolled_back,
        samples=len(samples),
        expected_samples=expected,
    )


def rollback_and_fail(
    *,
    store: EventStore,
    ctx: CanaryContext,
    dep: CanaryDeployment,
    kube: KubePort,
    helm: HelmPort,
    statehub: StateHubPort | None,
    operator: str,
    samples: list[dc.CanarySample],
    thresholds: dc.Thresholds,
    symptom: str,
    expected: int,
    events: list[RecordedEvent],
    now: Callable[[], datetime],
) -> StageOutcome:
    events += roll_back_canary(
        store=store, ctx=ctx, dep=dep, kube=kube, helm=helm, operator=operator, symptom=symptom, now=now
    )
    refresh_context(ctx)
    declared = not_run(ctx, f"the canary was rolled back before the end of the window ({symptom})")
    checks = verdicts(ctx, dep, samples, thresholds, expected, helm, read_back=False, declared=declared)
    checks.insert(0, _check("immediate_rollback", False, f"rolled back immediately: {symptom}"))
    warnings: list[str] = []
    note = post_rejection(store, ctx, dep, statehub, samples, checks, expected, warnings)
    checks.append(check_statehub_note(ctx, note))
    return close(
        ctx=ctx,
        dep=dep,
        note=note,
        samples=samples,
        checks=checks,
        events=events,
        warnings=warnings,
        rolled_back=True,
        expected=expected,
        now=now,
    )
