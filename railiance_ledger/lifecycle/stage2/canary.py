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


def open_deployment(history: Sequence[RecordedEvent], digest: str | None) -> CanaryDeployment | None:
    """The latest stage 2 ``stage.started`` (for ``digest`` when given) not yet completed or rolled back."""
    current: RecordedEvent | None = None
    samples: list[dc.CanarySample] = []
    for ev in history:
        if digest is not None and ev.candidate not in (digest, None):
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 2:
            current, samples = ev, []
        elif current is None or ev.candidate not in (current.candidate, None):
            continue
        elif ev.kind == EventKind.CANARY_SAMPLE:
            samples.append(dc.CanarySample.from_payload(ev.payload))
        elif (
            ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 2
        ) or ev.kind == EventKind.ROLLBACK_COMPLETED:
            current, samples = None, []
    if current is None:
        return None
    p = current.payload
    return CanaryDeployment(
        started=current,
        samples=samples,
        spec=dc.RoutingSpec.from_dict(p["routing"]),
        release=str(p["release"]["name"]),
        namespace=str(p["release"]["namespace"]),
        selector=str(p.get("selector") or ""),
    )
