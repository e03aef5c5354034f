"""Removing a canary from the cluster: routing first (restore patched objects, delete ours), then
the release; a typed result per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.errors import AdapterError, AdapterNotFound
from railiance_ledger.lifecycle.cluster.objects import FIELD_MANAGER

if TYPE_CHECKING:
    from railiance_ledger.ports import HelmPort, KubePort


class StepOutcome(StrEnum):
    """How one removal step ended."""

    DONE = "done"
    """The step did what it says (restored, deleted, uninstalled)."""
    ALREADY_GONE = "already-gone"
    """The object or release did not exist any more: nothing to do."""
    FAILED = "failed"
    """The step could not be done; the object or release may remain."""


@dataclass(frozen=True)
class RemovalStep:
    """One step of a canary removal and how it ended; ``text`` is the line the ledger records."""

    outcome: StepOutcome
    text: str


@dataclass(frozen=True)
class CanaryRemoval:
    """Every step of a canary removal, in order."""

    steps: tuple[RemovalStep, ...] = ()

    @property
    def failed(self) -> bool:
        """True when any step failed (something of the canary may remain)."""
        return any(step.outcome is StepOutcome.FAILED for step in self.steps)

    @property
    def text(self) -> str:
        """The steps as one line for the record (``"nothing to remove"`` when there were none)."""
        return "; ".join(step.text for step in self.steps) or "nothing to remove"

    def __str__(self) -> str:
        return self.text


def remove_canary_objects(
    *,
    kube: KubePort,
    helm: HelmPort | None,
    spec: dc.RoutingSpec,
    release: str,
    namespace: str,
    creates: Sequence[Mapping[str, Any]],
    previous: Sequence[Mapping[str, Any]],
) -> CanaryRemoval:
    """Remove the canary: routing first (restore patched stable objects, delete ours), then the release.

    Never raises for an adapter failure: each step's outcome is recorded (a failed step is
    ``StepOutcome.FAILED``), so the caller can record what remains and decide.
    """
    done: list[RemovalStep] = []
    for obj in previous:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kube.apply(manifests=[dict(obj)], field_manager=FIELD_MANAGER)
            done.append(RemovalStep(StepOutcome.DONE, f"restored {what}"))
        except AdapterError as exc:
            done.append(RemovalStep(StepOutcome.FAILED, f"FAILED to restore {what}: {exc.reason}"))
    for obj in creates:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kube.delete(
                api_version=str(obj["apiVersion"]),
                kind=str(obj["kind"]),
                name=str(obj["metadata"]["name"]),
                namespace=namespace,
            )
            done.append(RemovalStep(StepOutcome.DONE, f"deleted {what}"))
        except AdapterNotFound:
            done.append(RemovalStep(StepOutcome.ALREADY_GONE, f"{what} already gone"))
        except AdapterError as exc:
            done.append(RemovalStep(StepOutcome.FAILED, f"FAILED to delete {what}: {exc.reason}"))
    if helm is not None:
        try:
            helm.uninstall(release=release, namespace=namespace)
            done.append(RemovalStep(StepOutcome.DONE, f"helm uninstall {release}"))
        except AdapterNotFound:
            done.append(RemovalStep(StepOutcome.ALREADY_GONE, f"release {release} already gone"))
        except AdapterError as exc:
            done.append(RemovalStep(StepOutcome.FAILED, f"FAILED helm uninstall {release}: {exc.reason}"))
    return CanaryRemoval(tuple(done))
