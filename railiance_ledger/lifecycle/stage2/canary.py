"""The open Stage 2 canary as the ledger records it (``stage.started`` 2 and its samples)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import EventKind, RecordedEvent


@dataclass
class CanaryDeployment:
    started: RecordedEvent
    samples: list[dc.CanarySample]
    spec: dc.RoutingSpec
    release: str
    namespace: str
    selector: str
    deployed: bool = True
    """False while only the deploy's intent is recorded (it stopped before recording its outcome)."""


def open_deployment(history: Sequence[RecordedEvent], digest: str | None) -> CanaryDeployment | None:
    """The latest stage 2 ``stage.started`` (for ``digest`` when given) whose canary is still there: not
    yet completed or rolled back, or left behind by a ``rollback.incomplete`` (then only a
    ``rollback.completed`` closes it).

    ``stage.started`` is the deploy's intent (recorded before anything is applied); the deploy's
    outcome (``routing.changed`` with ``deployed``: the Helm revision, the rollout) is merged into
    the returned ``started`` payload, and ``deployed`` says whether it was recorded.
    """
    current: RecordedEvent | None = None
    samples: list[dc.CanarySample] = []
    outcome: dict[str, object] | None = None
    left_behind = False
    for ev in history:
        if digest is not None and ev.candidate not in (digest, None):
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 2:
            current, samples, outcome, left_behind = ev, [], None, False
        elif current is None or ev.candidate not in (current.candidate, None):
            continue
        elif ev.kind == EventKind.CANARY_SAMPLE:
            samples.append(dc.CanarySample.from_payload(ev.payload))
        elif (
            ev.kind == EventKind.ROUTING_CHANGED
            and ev.stage == 2
            and isinstance(ev.payload.get("deployed"), dict)
        ):
            outcome = dict(ev.payload["deployed"])
        elif ev.kind == EventKind.ROLLBACK_INCOMPLETE:
            left_behind = True
        elif ev.kind == EventKind.ROLLBACK_COMPLETED:
            current, samples, outcome, left_behind = None, [], None, False
        elif ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 2 and not left_behind:
            current, samples, outcome = None, [], None
    if current is None:
        return None
    p = dict(current.payload)
    if outcome is not None:
        p["release"] = {**(p.get("release") or {}), "revision": outcome.get("revision")}
        p.update({k: v for k, v in outcome.items() if k != "revision"})
        current = current.model_copy(update={"payload": p})
    return CanaryDeployment(
        started=current,
        samples=samples,
        spec=dc.RoutingSpec.from_dict(p["routing"]),
        release=str(p["release"]["name"]),
        namespace=str(p["release"]["namespace"]),
        selector=str(p.get("selector") or ""),
        deployed=outcome is not None or p.get("phase") == "deployed",
    )
