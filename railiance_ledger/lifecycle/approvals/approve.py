"""``approve``: record a human approval, with separation of duties and the window and target rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.durations import DurationFormatError, format_duration, parse_duration
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.identity import OperatorLike
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle.approvals.common import (
    APPROVABLE_STAGES,
    WINDOW_GATE,
    candidate_evidence,
    require_identity,
    require_reason,
    stream_version,
    target_text,
)
from railiance_ledger.lifecycle.approvals.signing import seal, to_sign
from railiance_ledger.lifecycle.approvals.target import default_rollback_target, explicit_rollback_target
from railiance_ledger.lifecycle.candidates import ResolvedCandidate, resolve_candidate
from railiance_ledger.lifecycle.notes import NotedEvent, post_and_record

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort

__all__ = ["approval_to_sign", "approve", "recorded_waivers"]

_DEPLOY_KINDS = {EventKind.STAGE_STARTED, EventKind.ROUTING_CHANGED, EventKind.PROMOTION_COMPLETED}


def _event_digest(ev: RecordedEvent) -> str | None:
    """The candidate digest an event concerns: the envelope's, else the payload's."""
    if ev.candidate:
        return ev.candidate
    cand = ev.payload.get("candidate")
    if isinstance(cand, Mapping):
        return cand.get("digest")
    if isinstance(cand, str):
        return cand
    digest = ev.payload.get("digest")
    return str(digest) if digest else None


def _duty_roles(events: Iterable[RecordedEvent], digest: str) -> dict[str, list[str]]:
    """Operators who registered / deployed ``digest`` (and recorded emergency exceptions for it)."""
    roles: dict[str, list[str]] = {}

    def add(actor: str, role: str) -> None:
        roles.setdefault(actor, [])
        if role not in roles[actor]:
            roles[actor].append(role)

    for ev in events:
        ev_digest = _event_digest(ev)
        if ev_digest != digest:
            continue
        if ev.kind == EventKind.CANDIDATE_REGISTERED:
            add(ev.actor, f"registered the candidate (candidate.registered, seq {ev.seq})")
        elif ev.kind == EventKind.STAGE_STARTED and ev.stage in (2, 3):
            add(ev.actor, f"deployed it (stage.started stage {ev.stage}, seq {ev.seq})")
        elif ev.kind in _DEPLOY_KINDS - {EventKind.STAGE_STARTED}:
            add(ev.actor, f"deployed it ({ev.kind}, seq {ev.seq})")
    return roles


def _check_separation(
    operator: str, history: list[RecordedEvent], cand: ResolvedCandidate, *, retrospective: bool
) -> dict[str, Any]:
    roles = _duty_roles(history, cand.digest)
    if retrospective:
        for ev in history:
            if ev.kind == EventKind.EXCEPTION_EMERGENCY and ev.candidate == cand.digest:
                roles.setdefault(ev.actor, []).append(f"recorded the emergency exception (seq {ev.seq})")
    mine = roles.get(operator, [])
    if mine:
        raise GateFailed(
            f"separation of duties: {operator} may not approve {cand.image}: {operator} "
            + " and ".join(mine)
            + "; the operator who registers or deploys a candidate cannot also approve it",
            hint="ask another operator to approve (railiance approve APP_DIR --operator OTHER)",
        )
    registrars = sorted(a for a, rs in roles.items() if any(r.startswith("registered") for r in rs))
    deployers = sorted(a for a, rs in roles.items() if any(r.startswith("deployed") for r in rs))
    return {"registered_by": registrars, "deployed_by": deployers, "approver_is_independent": True}


# ---------------------------------------------------------------------------- approve


def approve(**kwargs: Any) -> NotedEvent:
    """Record a human approval (see ``_approve`` for the parameters, the record and the refusals).

    ``signature`` is the armored SSHSIG over the record ``approval_to_sign`` returns for the same
    arguments; it is verified against the declared allowed signers before anything is written.
    """
    noted = _approve(**kwargs)
    assert noted is not None
    return noted


def approval_to_sign(**kwargs: Any) -> bytes:
    """The canonical record an approval with these arguments would append: what the operator signs."""
    out: list[bytes] = []
    _approve(**kwargs, payload_sink=out)
    return out[0]


def _approve(
    *,
    store: EventStore,
    decl: Declaration,
    operator: OperatorLike | None,
    stage: int,
    image: str | None = None,
    window: str | int | None = None,
    rollback_target: str | Mapping[str, Any] | None = None,
    waived_gates: Mapping[str, str] | None = None,
    retrospective: bool = False,
    statehub: StateHubPort | None = None,
    signature: str | None = None,
    payload_sink: list[bytes] | None = None,
) -> NotedEvent | None:
    """Record a human approval of one candidate for one stage as ``approval.granted``.

    The record names what the spec asks: the approving operator, the candidate artifact (image,
    digest, revision), the stage, the observation window (``window`` or the declared one), the
    rollback target (``rollback_target``, else the ledger lineage's current stable, else the
    declared ``rollback.previous_stable``) and every waived gate with its reason (``waived_gates``
    plus waivers already recorded for the candidate and stage).

    Refuses, writing nothing: no operator identity (``InvalidInput``); a stage other than 2 or 3, an
    unregistered candidate, an empty waiver reason, an unparsable window (``InvalidInput``); an
    operator who registered or deployed the candidate, an operator not among the declared
    ``approval.approvers``, a retrospective approval without an emergency exception, an unknown
    rollback target, a production-critical window under 60 minutes without a waiver, a candidate
    whose previous stage failed or has not passed with no emergency exception skipping it
    (``GateFailed``); a missing, invalid or unallowed signature where one is required
    (``lifecycle.approvals.signing.seal``).
    With ``payload_sink``, nothing is written: the canonical record to sign is appended to it.
    """
    identity = require_identity(operator)
    who = identity.name
    if stage not in APPROVABLE_STAGES:
        raise InvalidInput(
            f"stage {stage} is not approved by a human: approvals are for stage 2 (canary) and stage 3 "
            "(promotion)",
            hint="use --stage 2 or --stage 3",
        )
    workload = decl.workload.name
    waived: dict[str, str] = {}
    for gate, why in (waived_gates or {}).items():
        name = str(gate).strip()
        if not name:
            raise InvalidInput("a waived gate needs a name", hint="use --waive GATE=REASON")
        waived[name] = require_reason(why, what=f"waiving gate {name}", flag=f"--waive {name}=REASON")

    if window is None:
        window_seconds, window_source = (
            decl.observation_window_seconds,
            (
                "declaration canary.observation_window"
                if decl.window_declared
                else f"default for {decl.criticality}"
            ),
        )
    else:
        try:
            window_seconds, window_source = parse_duration(window), "operator"
        except DurationFormatError as exc:
            raise InvalidInput(str(exc), hint="use forms like 90s, 15m, 1h30m") from exc

    history = store.read_stream(workload)
    cand = resolve_candidate(history, workload, image)
    state = CandidateState.from_events(history, cand.digest)

    approvers = [a for a in decl.approval.approvers]
    if approvers and who not in approvers:
        raise GateFailed(
            f"{who} is not a declared approver of {workload} (approval.approvers: {', '.join(approvers)})",
            hint="ask one of the declared approvers, or change [approval] approvers in railiance/app.toml",
        )
    duties = _check_separation(who, history, cand, retrospective=retrospective)
    _check_reached(state, stage, cand)

    exceptions = state.exceptions
    covers: list[str] = []
    if retrospective:
        if not exceptions:
            raise GateFailed(
                f"retrospective approval refused for {cand.image}: no emergency exception is recorded for "
                "it; an approval may only be retrospective when an emergency action was taken",
                hint="approve before the action instead, or record the emergency with `railiance exception`",
            )
        covers = [e.event_id for e in exceptions if e.awaiting_retrospective] or [
            e.event_id for e in exceptions
        ]

    waivers = recorded_waivers(state, stage)
    minimum = decl.criticality.minimum_window_seconds
    window_needs_waiver = minimum is not None and window_seconds < minimum
    window_waived_by: str | None = None
    if window_needs_waiver:
        if WINDOW_GATE in waived:
            window_waived_by = "this approval"
        elif window_waiver := next(
            (w for st in (stage, 2, 3) if (w := recorded_waivers(state, st).get(WINDOW_GATE))),
            None,
        ):
            # the window is a Stage 2 gate: a waiver recorded for the canary covers a Stage 3 approval too
            window_waived_by = str(window_waiver["event_id"])
        else:
            raise GateFailed(
                f"observation window {format_duration(window_seconds)} is under the "
                f"{format_duration(minimum or 0)} "
                f"minimum for production-critical {workload}, and no waiver is recorded",
                hint=f"lengthen the window, or waive it: --waive {WINDOW_GATE}=REASON",
            )

    if rollback_target is not None:
        target: dict[str, Any] | None = explicit_rollback_target(rollback_target)
    else:
        target = default_rollback_target(store, decl)
    if target is None:
        raise GateFailed(
            f"approval refused: the rollback target of {workload} is unknown (no stable version in the "
            "ledger and no rollback.previous_stable declared); every promotion must have a rollback path",
            hint="pass --rollback-target REPOSITORY@sha256:... or a documented manual recovery path",
        )

    payload: dict[str, Any] = {
        "workload": workload,
        "operator": who,
        "operator_explicit": identity.explicit,
        "candidate": {"image": cand.image, "digest": cand.digest, "revision": cand.revision},
        "stage": stage,
        "observation_window": {
            "seconds": window_seconds,
            "text": format_duration(window_seconds),
            "source": window_source,
            "minimum_seconds": minimum,
            "needs_waiver": window_needs_waiver,
            "waived_by": window_waived_by,
        },
        "rollback_target": target,
        "waived_gates": [{"gate": g, "reason": r, "source": "this approval"} for g, r in waived.items()]
        + [
            {
                "gate": g,
                "reason": w["reason"],
                "source": "waiver.granted",
                "event_id": w["event_id"],
                "operator": w["operator"],
            }
            for g, w in waivers.items()
            if g not in waived
        ],
        "production_critical": decl.production_critical,
        "approval_required": decl.approval_required,
        "retrospective": retrospective,
        "covers_exceptions": covers,
        "separation_of_duties": duties,
    }
    draft = NewEvent(
        stream=workload,
        kind=EventKind.APPROVAL_GRANTED,
        actor=who,
        candidate=cand.digest,
        stage=stage,
        payload=redact_value(payload),
    )
    if payload_sink is not None:
        payload_sink.append(to_sign(decl, draft))
        return None
    event = store.append([seal(decl, draft, signature)], expected_version=stream_version(history))[0]
    waived_text = "; ".join(f"{w['gate']}: {w['reason']}" for w in payload["waived_gates"]) or "none"
    body = (
        f"{'Retrospective approval' if retrospective else 'Approval'} of {cand.image} for stage {stage} "
        f"of {workload} by {who}.\n"
        f"Observation window: {format_duration(window_seconds)} ({window_source}).\n"
        f"Rollback target: {target_text(target)}.\n"
        f"Waived gates: {waived_text}.\n"
        + (f"Covers emergency exception(s): {', '.join(covers)}.\n" if covers else "")
        + f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=f"{workload}: stage {stage} {'retrospectively ' if retrospective else ''}approved by {who}",
        body=body,
        evidence=candidate_evidence(cand),
        required=decl.production_critical,
        required_reason="production-critical approvals must be recorded as a State Hub note",
    )
    return NotedEvent.wrap(event, note)


def _check_reached(state: CandidateState, stage: int, cand: ResolvedCandidate) -> None:
    """Refuse approving ``stage`` unless every stage before it passed or is skipped by an emergency exception.

    Stages are sequential: a Stage 2 approval needs Stage 1 passed, a Stage 3 approval needs Stages 1
    and 2 passed (the canary's observation window over). A stage that failed, or that has no result
    yet, is refused by name; an emergency exception (``railiance exception --skip-stage N``) covers it.
    """
    missing = state.first_unsatisfied_before(stage)
    if missing is None:
        return
    result = state.results.get(missing)
    if result is not None:
        what = f"stage {missing} of {cand.image} failed (seq {result.seq})"
    else:
        what = f"stage {missing} of {cand.image} has not passed (no stage {missing} result is recorded)"
    raise GateFailed(
        f"approval refused: {what}, so the candidate has not reached stage {stage}; "
        "an approval cannot stand in for a stage result",
        hint=(
            f"run stage {missing} until it passes, then approve; or record an emergency exception "
            f"(railiance exception APP_DIR --skip-stage {missing} --reason TEXT) and approve retrospectively"
        ),
    )


def recorded_waivers(state: CandidateState, stage: int) -> dict[str, dict[str, Any]]:
    """Latest ``waiver.granted`` per gate recorded for the candidate and ``stage``, as the approval lists
    them."""
    return {
        gate: {"event_id": w.event_id, "reason": w.reason, "operator": w.actor}
        for gate, w in state.waivers_for(stage).items()
    }
