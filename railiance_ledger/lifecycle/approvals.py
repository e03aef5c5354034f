"""Human approval gates: approvals, revocations and emergency exceptions, recorded and noted.

The spec ("Human Approval Gates") asks that production-critical workloads get explicit human
approval before production traffic changes, recorded as a non-secret State Hub note naming the
approving operator, the candidate artifact, the stage, the observation window, the rollback target
and any waived gates with why. This module records exactly that as ``approval.granted``, and:

- refuses an approval without an operator identity (``--operator`` or ``RAILIANCE_OPERATOR``; the
  login name is not an identity for an approval): ``InvalidInput``, exit 2;
- enforces separation of duties: whoever registered the candidate or deployed it (Stage 2/3
  ``stage.started``, ``routing.changed``, ``promotion.completed``) cannot approve it: ``GateFailed``,
  exit 1, naming both roles;
- allows a *retrospective* approval only for a candidate with an ``exception.emergency`` (the
  spec's "Emergency approval can be retrospective only when delaying the action would increase
  production risk"), and lists every emergency action still awaiting one (``pending_retrospective``);
- records revocations (``approval.revoked``), which the Stage 2 observe loop treats as an immediate
  rollback condition during the observation window (``approval_state``);
- posts every record as a redacted State Hub note and keeps the outcome in the ledger
  (``lifecycle.notes.post_and_record``); an unreachable State Hub is reported, never dropped.

Services return a ``NotedEvent``: the recorded event (a ``RecordedEvent``) that also carries
``.note`` and ``.warnings`` for the CLI to print.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from railiance_ledger import config
from railiance_ledger.domain.digests import DigestFormatError, is_digest, parse_image_ref
from railiance_ledger.domain.durations import DurationFormatError, format_duration, parse_duration
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle.notes import NotedEvent, post_and_record, statehub_from_env

if TYPE_CHECKING:
    from railiance_ledger.adapters.statehub import NotePoster
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = [
    "APPROVABLE_STAGES",
    "WINDOW_GATE",
    "ApprovalState",
    "approval_state",
    "approve",
    "pending_retrospective",
    "record_exception",
    "require_operator",
    "revoke",
]

APPROVABLE_STAGES = (2, 3)
"""Stages a human approves: the production canary (Stage 2) and the promotion (Stage 3)."""

SKIPPABLE_STAGES = (1, 2)
"""Stages an emergency exception may skip on the way to production."""

WINDOW_GATE = "observation_window"
"""Gate name for the spec's 60-minute minimum window of production-critical workloads."""

_DEPLOY_KINDS = {EventKind.STAGE_STARTED, EventKind.ROUTING_CHANGED, EventKind.PROMOTION_COMPLETED}


# ---------------------------------------------------------------------------- shared helpers


def require_operator(operator: str | None, *, what: str = "an approval") -> str:
    """The explicit operator (``operator`` or ``RAILIANCE_OPERATOR``), else ``InvalidInput`` (exit 2).

    The login name is deliberately not accepted: a human decision needs a named human.
    """
    who = config.explicit_operator(operator.strip() if operator else None)
    if not who or not who.strip():
        raise InvalidInput(
            f"{what} needs an operator identity",
            hint="pass --operator NAME or set RAILIANCE_OPERATOR (the login name is not accepted for human decisions)",
        )
    return who.strip()


def _require_reason(reason: str | None, *, what: str, flag: str = "--reason TEXT") -> str:
    if not reason or not reason.strip():
        raise InvalidInput(f"{what} needs a reason", hint=f"pass {flag}")
    return redact(reason.strip())


@dataclass(frozen=True)
class _Candidate:
    digest: str
    image: str
    revision: str | None
    registration: RecordedEvent


def _resolve_candidate(history: list[RecordedEvent], workload: str, image: str | None) -> _Candidate:
    """The registered candidate named by ``image`` (a pinned ref or a bare digest), else the newest."""
    registered = [ev for ev in history if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate]
    if image is None:
        if not registered:
            raise InvalidInput(
                f"no candidate is registered for {workload}",
                hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
            )
        reg = registered[-1]
    else:
        text = image.strip()
        if is_digest(text):
            digest = text
        else:
            try:
                digest = parse_image_ref(text).digest
            except DigestFormatError as exc:
                raise InvalidInput(str(exc), hint="name the candidate as REPOSITORY@sha256:<64 hex>") from exc
        matches = [ev for ev in registered if ev.candidate == digest]
        if not matches:
            raise InvalidInput(
                f"candidate {digest} is not registered for {workload}",
                hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
            )
        reg = matches[0]
    assert reg.candidate is not None
    return _Candidate(
        digest=reg.candidate,
        image=str(reg.payload.get("image") or reg.candidate),
        revision=reg.payload.get("revision"),
        registration=reg,
    )


def _version(history: list[RecordedEvent]) -> int:
    return history[-1].version if history else 0


def _mapping(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "as_dict"):
        return dict(obj.as_dict())
    if hasattr(obj, "model_dump"):
        return dict(obj.model_dump(mode="json"))
    return {"ref": str(obj)}


def _statehub(statehub: NotePoster | None) -> NotePoster | None:
    """The injected State Hub, else the one configured by ``RAILIANCE_STATEHUB_URL`` (or none)."""
    return statehub if statehub is not None else statehub_from_env()


def _evidence(cand: _Candidate) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"kind": "summary", "ref": cand.image, "detail": "candidate image"}]
    if cand.revision:
        out.append({"kind": "commit", "ref": str(cand.revision), "detail": "source revision"})
    return out


# ---------------------------------------------------------------------------- rollback target


def current_stable_target(store: EventStore, workload: str) -> dict[str, Any] | None:
    """What we would roll back to right now: the ledger lineage's current stable, as a target.

    Returns ``{"kind": "ledger-stable", "image", "digest", ...}`` or ``None`` when the ledger has no
    stable version for the workload yet.
    """
    try:
        from railiance_ledger.ledger.projections import lineage
    except ImportError:  # pragma: no cover - the projection landed with the ledger
        return None
    lin = lineage(store, workload)
    data = _mapping(lin) or {}
    stable = data.get("current_stable")
    if stable is None and not isinstance(lin, Mapping):
        stable = getattr(lin, "current_stable", None)
    stable_map = _mapping(stable)
    if not stable_map:
        return None
    target: dict[str, Any] = {"kind": "ledger-stable"}
    for key in ("image", "digest", "revision", "promoted_at", "event_id", "seq", "restore"):
        if stable_map.get(key) is not None:
            target[key] = stable_map[key]
    if "image" not in target and "digest" not in target:
        target["ref"] = stable_map.get("ref")
    return target


def _explicit_rollback_target(value: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        target = dict(value)
        target.setdefault("kind", "manual")
        return target
    text = value.strip()
    if not text:
        raise InvalidInput(
            "an empty rollback target names nothing", hint="pass REPOSITORY@sha256:... or a recovery path"
        )
    try:
        ref = parse_image_ref(text)
        return {"kind": "digest-and-values", "image": ref.pinned, "digest": ref.digest, "source": "operator"}
    except DigestFormatError:
        return {"kind": "manual", "detail": redact(text), "source": "operator"}


def _default_rollback_target(store: EventStore, decl: Declaration) -> dict[str, Any] | None:
    target = current_stable_target(store, decl.workload.name)
    if target is not None:
        target["source"] = "ledger lineage (current stable)"
        return target
    previous = decl.rollback.previous_stable
    if previous:
        out = _explicit_rollback_target(previous)
        out["source"] = "declaration rollback.previous_stable"
        return out
    return None


# ---------------------------------------------------------------------------- separation of duties


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
    operator: str, history: list[RecordedEvent], cand: _Candidate, *, retrospective: bool
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


def approve(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str | None,
    stage: int,
    image: str | None = None,
    window: str | int | None = None,
    rollback_target: str | Mapping[str, Any] | None = None,
    waived_gates: Mapping[str, str] | None = None,
    retrospective: bool = False,
    statehub: NotePoster | None = None,
) -> NotedEvent:
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
    rollback target, a production-critical window under 60 minutes without a waiver (``GateFailed``).
    """
    who = require_operator(operator)
    if stage not in APPROVABLE_STAGES:
        raise InvalidInput(
            f"stage {stage} is not approved by a human: approvals are for stage 2 (canary) and stage 3 (promotion)",
            hint="use --stage 2 or --stage 3",
        )
    workload = decl.workload.name
    waived: dict[str, str] = {}
    for gate, why in (waived_gates or {}).items():
        name = str(gate).strip()
        if not name:
            raise InvalidInput("a waived gate needs a name", hint="use --waive GATE=REASON")
        waived[name] = _require_reason(why, what=f"waiving gate {name}", flag=f"--waive {name}=REASON")

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
    cand = _resolve_candidate(history, workload, image)

    approvers = [a for a in decl.approval.approvers]
    if approvers and who not in approvers:
        raise GateFailed(
            f"{who} is not a declared approver of {workload} (approval.approvers: {', '.join(approvers)})",
            hint="ask one of the declared approvers, or change [approval] approvers in railiance/app.toml",
        )
    duties = _check_separation(who, history, cand, retrospective=retrospective)

    exceptions = [
        ev for ev in history if ev.kind == EventKind.EXCEPTION_EMERGENCY and ev.candidate == cand.digest
    ]
    covers: list[str] = []
    if retrospective:
        if not exceptions:
            raise GateFailed(
                f"retrospective approval refused for {cand.image}: no emergency exception is recorded for it; "
                "an approval may only be retrospective when an emergency action was taken",
                hint="approve before the action instead, or record the emergency with `railiance exception`",
            )
        covered = _covered_exceptions(history)
        covers = [ev.event_id for ev in exceptions if ev.event_id not in covered] or [
            ev.event_id for ev in exceptions
        ]

    recorded_waivers = _recorded_waivers(history, cand.digest, stage)
    minimum = decl.criticality.minimum_window_seconds
    window_needs_waiver = minimum is not None and window_seconds < minimum
    window_waived_by: str | None = None
    if window_needs_waiver:
        if WINDOW_GATE in waived:
            window_waived_by = "this approval"
        elif window_waiver := next(
            (
                w
                for st in (stage, 2, 3)
                if (w := _recorded_waivers(history, cand.digest, st).get(WINDOW_GATE))
            ),
            None,
        ):
            # the window is a Stage 2 gate: a waiver recorded for the canary covers a Stage 3 approval too
            window_waived_by = str(window_waiver["event_id"])
        else:
            raise GateFailed(
                f"observation window {format_duration(window_seconds)} is under the {format_duration(minimum or 0)} "
                f"minimum for production-critical {workload}, and no waiver is recorded",
                hint=f"lengthen the window, or waive it: --waive {WINDOW_GATE}=REASON",
            )

    if rollback_target is not None:
        target: dict[str, Any] | None = _explicit_rollback_target(rollback_target)
    else:
        target = _default_rollback_target(store, decl)
    if target is None:
        raise GateFailed(
            f"approval refused: the rollback target of {workload} is unknown (no stable version in the ledger and "
            "no rollback.previous_stable declared); every promotion must have a rollback path",
            hint="pass --rollback-target REPOSITORY@sha256:... or a documented manual recovery path",
        )

    payload: dict[str, Any] = {
        "workload": workload,
        "operator": who,
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
            for g, w in recorded_waivers.items()
            if g not in waived
        ],
        "production_critical": decl.production_critical,
        "approval_required": decl.approval_required,
        "retrospective": retrospective,
        "covers_exceptions": covers,
        "separation_of_duties": duties,
    }
    event = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.APPROVAL_GRANTED,
                actor=who,
                candidate=cand.digest,
                stage=stage,
                payload=redact_value(payload),
            )
        ],
        expected_version=_version(history),
    )[0]
    waived_text = "; ".join(f"{w['gate']}: {w['reason']}" for w in payload["waived_gates"]) or "none"
    body = (
        f"{'Retrospective approval' if retrospective else 'Approval'} of {cand.image} for stage {stage} "
        f"of {workload} by {who}.\n"
        f"Observation window: {format_duration(window_seconds)} ({window_source}).\n"
        f"Rollback target: {_target_text(target)}.\n"
        f"Waived gates: {waived_text}.\n"
        + (f"Covers emergency exception(s): {', '.join(covers)}.\n" if covers else "")
        + f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=_statehub(statehub),
        event=event,
        title=f"{workload}: stage {stage} {'retrospectively ' if retrospective else ''}approved by {who}",
        body=body,
        evidence=_evidence(cand),
        required=decl.production_critical,
        required_reason="production-critical approvals must be recorded as a State Hub note",
    )
    return NotedEvent.wrap(event, note)


def _target_text(target: Mapping[str, Any]) -> str:
    kind = target.get("kind", "?")
    ref = target.get("image") or target.get("digest") or target.get("detail") or target.get("ref") or ""
    return f"{kind} {ref}".strip()


def _recorded_waivers(history: Iterable[RecordedEvent], digest: str, stage: int) -> dict[str, dict[str, Any]]:
    """Latest ``waiver.granted`` per gate recorded for ``digest`` and ``stage``."""
    out: dict[str, dict[str, Any]] = {}
    for ev in history:
        if ev.kind != EventKind.WAIVER_GRANTED or ev.candidate != digest:
            continue
        scope = ev.payload.get("scope") or {}
        ev_stage = scope.get("stage", ev.stage)
        if ev_stage is not None and int(ev_stage) != stage:
            continue
        gate = str(scope.get("gate") or ev.payload.get("gate") or "")
        if gate:
            out[gate] = {
                "event_id": ev.event_id,
                "reason": ev.payload.get("reason", ""),
                "operator": ev.actor,
            }
    return out


# ---------------------------------------------------------------------------- approval state


@dataclass(frozen=True)
class ApprovalState:
    """Whether ``(digest, stage)`` is approved now: the latest grant or revocation decides.

    ``revoked`` is True when the latest decision is a revocation (the Stage 2 observe loop treats a
    revocation during the observation window as an immediate-rollback condition).
    """

    workload: str
    digest: str
    stage: int
    granted: bool
    approval_id: str | None = None
    operator: str | None = None
    granted_at: str | None = None
    retrospective: bool = False
    revoked: bool = False
    revoked_at: str | None = None
    revoked_by: str | None = None
    revocation_id: str | None = None
    revocation_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "workload": self.workload,
            "digest": self.digest,
            "stage": self.stage,
            "granted": self.granted,
            "approval_id": self.approval_id,
            "operator": self.operator,
            "granted_at": self.granted_at,
            "retrospective": self.retrospective,
            "revoked": self.revoked,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "revocation_id": self.revocation_id,
            "revocation_reason": self.revocation_reason,
            "history": list(self.history),
        }


def approval_state(store: EventStore, workload: str, digest: str, stage: int) -> ApprovalState:
    """The approval state of ``digest`` for ``stage`` in ``workload``, from the ledger.

    Grants and revocations are taken in ledger order; the latest one decides. A revocation of any
    approval of ``(digest, stage)`` withdraws the approval (fail closed) until a new grant is recorded.
    """
    state: dict[str, Any] = {"granted": False}
    trail: list[dict[str, Any]] = []
    for ev in store.read_candidate(workload, digest):
        if ev.stage != stage:
            continue
        if ev.kind == EventKind.APPROVAL_GRANTED:
            state = {
                "granted": True,
                "approval_id": ev.event_id,
                "operator": ev.actor,
                "granted_at": ev.recorded_at,
                "retrospective": bool(ev.payload.get("retrospective")),
            }
            trail.append(
                {"kind": ev.kind, "event_id": ev.event_id, "operator": ev.actor, "at": ev.recorded_at}
            )
        elif ev.kind == EventKind.APPROVAL_REVOKED:
            state = {
                **state,
                "granted": False,
                "approval_id": ev.payload.get("approval_id") or state.get("approval_id"),
                "revoked": True,
                "revoked_at": ev.recorded_at,
                "revoked_by": ev.actor,
                "revocation_id": ev.event_id,
                "revocation_reason": ev.payload.get("reason"),
            }
            trail.append(
                {"kind": ev.kind, "event_id": ev.event_id, "operator": ev.actor, "at": ev.recorded_at}
            )
    return ApprovalState(workload=workload, digest=digest, stage=stage, history=trail, **state)


# ---------------------------------------------------------------------------- revoke


def revoke(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str | None,
    reason: str,
    approval_id: str | None = None,
    image: str | None = None,
    statehub: NotePoster | None = None,
) -> NotedEvent:
    """Record ``approval.revoked`` for one approval: by ``approval_id``, else the candidate's latest.

    Any operator may revoke (revoking is a safety action), but a named one is required. When the
    candidate is inside its Stage 2/3 observation window, the record says an immediate rollback is
    required (``immediate_rollback: true``); the observe loop acts on it through ``approval_state``.
    Refuses (``InvalidInput``) an empty reason, an unknown approval id, or nothing left to revoke.
    """
    who = require_operator(operator, what="a revocation")
    why = _require_reason(reason, what="a revocation")
    workload = decl.workload.name
    history = store.read_stream(workload)
    if approval_id:
        grant = next(
            (ev for ev in history if ev.event_id == approval_id and ev.kind == EventKind.APPROVAL_GRANTED),
            None,
        )
        if grant is None:
            raise InvalidInput(
                f"no approval {approval_id} in the ledger of {workload}",
                hint=f"list approvals with `railiance history {workload}`",
            )
        assert grant.candidate is not None and grant.stage is not None
        state = approval_state(store, workload, grant.candidate, grant.stage)
        if not state.granted or state.approval_id != grant.event_id:
            raise InvalidInput(
                f"approval {approval_id} is not in force (already revoked or superseded)",
                hint="revoke the approval currently in force, or nothing",
            )
    else:
        cand = _resolve_candidate(history, workload, image)
        live = [
            state
            for state in (approval_state(store, workload, cand.digest, st) for st in APPROVABLE_STAGES)
            if state.granted
        ]
        if not live:
            raise InvalidInput(
                f"no approval in force for {cand.image}: nothing to revoke",
                hint=f"see `railiance history {workload}`",
            )
        newest = max(live, key=lambda st: st.granted_at or "")
        grant = next(ev for ev in history if ev.event_id == newest.approval_id)
    assert grant.candidate is not None
    in_window = _in_observation(history, grant.candidate)
    payload = {
        "workload": workload,
        "approval_id": grant.event_id,
        "approval_event_id": grant.event_id,  # the name ledger.projections reads
        "approved_by": grant.actor,
        "operator": who,
        "reason": why,
        "candidate": grant.payload.get("candidate") or {"digest": grant.candidate},
        "stage": grant.stage,
        "in_observation_window": in_window is not None,
        "observing_stage": in_window,
        "immediate_rollback": in_window is not None,
    }
    event = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.APPROVAL_REVOKED,
                actor=who,
                candidate=grant.candidate,
                stage=grant.stage,
                payload=redact_value(payload),
            )
        ],
        expected_version=_version(history),
    )[0]
    image_text = (grant.payload.get("candidate") or {}).get("image") or grant.candidate
    body = (
        f"Approval {grant.event_id} (stage {grant.stage}, by {grant.actor}) of {image_text} revoked by {who}.\n"
        f"Reason: {why}.\n"
        + (
            "The candidate is inside its observation window: rollback must be immediate.\n"
            if in_window
            else ""
        )
        + f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=_statehub(statehub),
        event=event,
        title=f"{workload}: stage {grant.stage} approval revoked by {who}",
        body=body,
        required=decl.production_critical,
        required_reason="production-critical approval decisions must be recorded as a State Hub note",
    )
    warnings = []
    if in_window is not None:
        warnings.append(
            f"approval revoked during the stage {in_window} observation window of {image_text}: "
            "the spec requires an immediate rollback"
        )
    return NotedEvent.wrap(event, note, warnings)


def _in_observation(history: Iterable[RecordedEvent], digest: str) -> int | None:
    """The stage (2 or 3) whose ``stage.started`` for ``digest`` has no ``stage.completed`` yet."""
    open_stage: int | None = None
    for ev in history:
        if ev.candidate != digest:
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage in (2, 3):
            open_stage = ev.stage
        elif ev.kind == EventKind.ROLLBACK_COMPLETED or (
            ev.kind == EventKind.STAGE_COMPLETED and ev.stage == open_stage
        ):
            open_stage = None
    return open_stage


# ---------------------------------------------------------------------------- emergency exceptions


def record_exception(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str | None,
    skip_stage: int,
    reason: str,
    image: str | None = None,
    statehub: NotePoster | None = None,
) -> NotedEvent:
    """Record ``exception.emergency``: skipping ``skip_stage`` for one candidate, awaiting approval.

    The spec lets a workload skip a stage toward production only when an operator records an
    emergency exception in State Hub; it is posted as a note (a warning when no State Hub is
    configured) and stays in ``pending_retrospective`` until a retrospective approval lands.
    """
    who = require_operator(operator, what="an emergency exception")
    why = _require_reason(reason, what="an emergency exception")
    if skip_stage not in SKIPPABLE_STAGES:
        raise InvalidInput(
            f"stage {skip_stage} cannot be skipped: an emergency exception skips stage 1 or stage 2 on the way to production",
            hint="use --skip-stage 1 or --skip-stage 2",
        )
    workload = decl.workload.name
    history = store.read_stream(workload)
    cand = _resolve_candidate(history, workload, image)
    payload = {
        "workload": workload,
        "operator": who,
        "skip_stage": skip_stage,
        "reason": why,
        "candidate": {"image": cand.image, "digest": cand.digest, "revision": cand.revision},
        "scope": {
            "workload": workload,
            "candidate": cand.digest,
            "skipped_stage": skip_stage,
            "unlocks_stage": skip_stage + 1,
        },
        "awaiting_retrospective_approval": True,
        "production_critical": decl.production_critical,
    }
    event = store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.EXCEPTION_EMERGENCY,
                actor=who,
                candidate=cand.digest,
                stage=skip_stage,
                payload=redact_value(payload),
            )
        ],
        expected_version=_version(history),
    )[0]
    body = (
        f"EMERGENCY EXCEPTION: {who} skips stage {skip_stage} for {cand.image} of {workload}.\n"
        f"Reason: {why}.\n"
        "A retrospective approval by another operator must be recorded immediately after stabilization "
        f"(railiance approve APP_DIR --stage {skip_stage + 1} --retrospective).\n"
        f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=_statehub(statehub),
        event=event,
        title=f"{workload}: emergency exception, stage {skip_stage} skipped by {who}",
        body=body,
        evidence=_evidence(cand),
        required=True,
        required_reason="the spec requires emergency exceptions to be recorded in State Hub",
    )
    return NotedEvent.wrap(event, note)


def _covered_exceptions(history: Iterable[RecordedEvent]) -> set[str]:
    """Exception event ids covered by a retrospective approval that is still in force."""
    history = list(history)
    revoked = {str(ev.payload.get("approval_id")) for ev in history if ev.kind == EventKind.APPROVAL_REVOKED}
    covered: set[str] = set()
    for ev in history:
        if (
            ev.kind == EventKind.APPROVAL_GRANTED
            and ev.payload.get("retrospective")
            and ev.event_id not in revoked
        ):
            covered.update(str(x) for x in ev.payload.get("covers_exceptions") or [])
    return covered


def pending_retrospective(store: EventStore, workload: str) -> list[dict[str, Any]]:
    """Every emergency exception of ``workload`` still awaiting its retrospective approval.

    An exception stops being pending when a retrospective ``approval.granted`` covering it is
    recorded (and not revoked). Oldest first.
    """
    history = store.read_stream(workload)
    covered = _covered_exceptions(history)
    out: list[dict[str, Any]] = []
    for ev in history:
        if ev.kind != EventKind.EXCEPTION_EMERGENCY or ev.event_id in covered:
            continue
        cand = ev.payload.get("candidate") or {}
        out.append(
            {
                "exception_id": ev.event_id,
                "seq": ev.seq,
                "workload": workload,
                "digest": ev.candidate,
                "image": cand.get("image") or ev.candidate,
                "skip_stage": ev.payload.get("skip_stage"),
                "reason": ev.payload.get("reason"),
                "operator": ev.actor,
                "recorded_at": ev.recorded_at,
                "scope": ev.payload.get("scope"),
            }
        )
    return out
