"""Waivers: a human decision, recorded in the ledger, that one gate may fail for one candidate.

A waiver names the gate, the candidate digest and the stage, the operator, and a reason. A stage
honours it by turning that gate's ``fail`` (or a declared check that was skipped) into ``waived``
with the waiver's event id. Some gates can never be waived, because the spec makes them fail
closed without exception (plaintext secrets, an artifact that cannot be traced to source, a
workload that cannot say how it will be observed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import gates
from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.identity import Operator, OperatorLike
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.text import NAME_MAX, REASON_MAX, text_problem
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.approvals.signing import DEGRADED_DEPENDENCY_GATE_PREFIX, seal, to_sign
from railiance_ledger.lifecycle.candidates import select_candidate

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort

NON_WAIVABLE: dict[int, frozenset[str]] = {1: frozenset(g.value for g in gates.non_waivable(1))}
"""Gates, per stage, that the spec makes fail closed without exception (from ``domain.gates``). Only
Stage 1 refuses waivers by name; other stages record any gate name and honour the waivable ones."""

WAIVABLE_STAGE2: frozenset[str] = frozenset(g.value for g in gates.waivable_gates(2))
"""Stage 2 gates whose failure ``lifecycle.stage2`` turns into ``waived`` when a waiver names them
(the spec: "any required evidence is missing and no operator waiver is recorded" fails closed, so a
recorded waiver is the way through). Other stage 2 names are recorded but no Stage 2 check reads them."""

_GATE_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*(?::[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


def stage1_gates(decl: Declaration) -> list[str]:
    """Every Stage 1 gate name for ``decl``: the required checks, then ``local_check:<name>``."""
    return list(gates.names_for(1)) + [
        f"{gates.LOCAL_CHECK_PREFIX}{c.name}" for c in (getattr(decl, "local_checks", None) or [])
    ]


def record_waiver(**kwargs: Any) -> RecordedEvent:
    """Record a waiver (see ``_record_waiver``); ``signature`` signs what ``waiver_to_sign`` returns."""
    recorded = _record_waiver(**kwargs)
    assert recorded is not None
    return recorded


def waiver_to_sign(**kwargs: Any) -> bytes:
    """The canonical record a waiver with these arguments would append."""
    out: list[bytes] = []
    _record_waiver(**kwargs, payload_sink=out)
    return out[0]


def _record_waiver(
    *,
    store: EventStore,
    decl: Declaration,
    gate: str,
    operator: OperatorLike,
    reason: str,
    candidate: str | None = None,
    stage: int = 1,
    statehub: StateHubPort | None = None,
    signature: str | None = None,
    payload_sink: list[bytes] | None = None,
) -> RecordedEvent | None:
    """Append ``waiver.granted`` for ``gate`` of ``candidate`` (default: the newest registered one).

    Refuses (``InvalidInput``, nothing written) an empty reason or operator, a gate that is not a
    gate of that stage, a gate the spec never lets be waived, and a candidate that is not
    registered for the workload. The reason is stored redacted.

    The waiver is also posted, redacted, as a State Hub note (the injected ``statehub``; none when
    it is ``None``) and the outcome kept in the ledger as ``note.posted``; the returned event is a
    ``NotedEvent`` whose ``.warnings`` say when the note was not delivered.

    ``operator`` is an ``Operator`` (``domain.identity``) or a plain name (taken as given
    explicitly); the record keeps ``operator_explicit``.
    """
    gate = gate.strip()
    if not operator or not str(operator).strip():
        raise InvalidInput(
            "a waiver needs an operator", hint="pass --operator NAME or set RAILIANCE_OPERATOR"
        )
    identity = Operator.of(operator)
    name_problem = text_problem(identity.name, limit=NAME_MAX)
    if name_problem:
        raise InvalidInput(f"the operator name {name_problem}", hint="pass a plain --operator NAME")
    if not reason or not reason.strip():
        raise InvalidInput("a waiver needs a reason", hint="pass --reason TEXT saying why the gate may fail")
    problem = text_problem(reason.strip(), limit=REASON_MAX, allow_newlines=True)
    if problem:
        raise InvalidInput(f"the waiver's reason {problem}", hint="pass a shorter, plain --reason TEXT")
    if stage not in (1, 2, 3):
        raise InvalidInput(f"stage {stage} does not exist", hint="use --stage 1, 2 or 3")
    if not _GATE_RE.match(gate):
        raise InvalidInput(f"gate {gate!r} is not a gate name", hint="use a check name such as local_health")
    if gate in NON_WAIVABLE.get(stage, frozenset()):
        raise InvalidInput(
            f"gate {gate} of stage {stage} cannot be waived: the lifecycle makes it fail closed",
            hint="fix the cause instead (see docs/stage1.md)",
        )
    if gate.startswith(DEGRADED_DEPENDENCY_GATE_PREFIX):
        _check_dependency_gate(decl, gate, stage)
    if stage == 1:
        known = stage1_gates(decl)
        if gate not in known:
            raise InvalidInput(
                f"{gate!r} is not a Stage 1 gate of {decl.workload.name}",
                hint="one of: " + ", ".join(g for g in known if g not in NON_WAIVABLE[1]),
            )
    workload = decl.workload.name
    history = store.read_stream(workload)
    digest = _resolve_candidate(history, workload, candidate)
    payload: dict[str, Any] = {
        "gate": gate,
        "reason": redact(reason.strip()),
        "operator": identity.name,
        "operator_explicit": identity.explicit,
        "scope": {"gate": gate, "candidate": digest, "stage": stage},
    }
    event = NewEvent(
        stream=workload,
        kind=EventKind.WAIVER_GRANTED,
        actor=identity.name,
        candidate=digest,
        stage=stage,
        payload=payload,
    )
    if payload_sink is not None:
        payload_sink.append(to_sign(decl, event))
        return None
    recorded = store.append([seal(decl, event, signature)])[0]
    return _post_waiver_note(store=store, decl=decl, event=recorded, statehub=statehub)


def _check_dependency_gate(decl: Declaration, gate: str, stage: int) -> None:
    """A degraded-dependency approval names a declared dependency and Stage 2 (where it is checked)."""
    name = gate[len(DEGRADED_DEPENDENCY_GATE_PREFIX) :]
    declared = [d.name for d in decl.dependencies]
    if name not in declared:
        raise InvalidInput(
            f"{name!r} is not a declared dependency of {decl.workload.name}",
            hint="one of: " + (", ".join(declared) or "(no [[dependencies]] declared)"),
        )
    if stage != 2:
        raise InvalidInput(
            f"platform dependencies are checked before Stage 2, not stage {stage}",
            hint=f"pass --stage 2 --gate {gate}",
        )


def _post_waiver_note(
    *, store: EventStore, decl: Declaration, event: RecordedEvent, statehub: StateHubPort | None
) -> RecordedEvent:
    """Post the waiver as a State Hub note and record the outcome (see ``lifecycle.notes``)."""
    from railiance_ledger.lifecycle.notes import NotedEvent, post_and_record

    scope = event.payload.get("scope") or {}
    body = (
        f"Waiver of gate {scope.get('gate')} (stage {scope.get('stage')}) for {event.candidate} of "
        f"{event.stream} "
        f"by {event.actor}.\nReason: {event.payload.get('reason')}.\n"
        f"Ledger event {event.event_id} (seq {event.seq})."
    )
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=f"{event.stream}: gate {scope.get('gate')} waived by {event.actor}",
        body=body,
        required=bool(getattr(decl, "production_critical", False)),
        required_reason=(
            "waivers of production-critical workloads are operator decisions State Hub should hold"
        ),
    )
    return NotedEvent.wrap(event, note)


def _resolve_candidate(history: Iterable[RecordedEvent], workload: str, candidate: str | None) -> str:
    found = select_candidate(history, workload, candidate)
    if found is None:
        raise InvalidInput(
            f"no candidate is registered for {workload}; a waiver names one candidate",
            hint="register it with `railiance candidate add APP_DIR --image REF@sha256:...`",
        )
    return found.digest


def active_waivers(history: Iterable[RecordedEvent], *, digest: str, stage: int) -> dict[str, RecordedEvent]:
    """The latest ``waiver.granted`` per gate for ``digest`` and ``stage`` (non-waivable gates excluded).

    The waivers come from the candidate-state fold (``CandidateState.waivers_for``); the rule that
    some gates are never waived comes from the gate catalogue (``NON_WAIVABLE``).
    """
    events = list(history)
    by_id = {ev.event_id: ev for ev in events if ev.kind == EventKind.WAIVER_GRANTED}
    banned = NON_WAIVABLE.get(stage, frozenset())
    state = CandidateState.from_events(events, digest)
    return {gate: by_id[w.event_id] for gate, w in state.waivers_for(stage).items() if gate not in banned}
