"""Test-controlled pod behaviour: what the emulated kubelet does with a pod, chosen by image or annotation."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

BEHAVIOUR_ANNOTATION = "emulator.railiance.dev/behaviour"


class PodMode(StrEnum):
    """How an emulated pod behaves."""

    READY = "ready"
    """Running; Ready once ``ready_after`` seconds have passed (slow readiness when > 0)."""
    CRASHLOOP = "crashloop"
    """Running but never Ready; restartCount grows every ``restart_interval`` seconds; CrashLoopBackOff."""
    PENDING = "pending"
    """Pending and unschedulable (PodScheduled False, reason Unschedulable)."""


@dataclass
class Behaviour:
    """One behaviour: the mode, its timings, and the log lines its pods print."""

    mode: PodMode = PodMode.READY
    ready_after: float = 0.0
    restart_interval: float = 1.0
    logs: list[str] = field(default_factory=list)


class BehaviourRegistry:
    """Behaviours keyed by image (exact, or repository without tag/digest) or by the value of the pod
    annotation ``emulator.railiance.dev/behaviour``; per-pod log lines override a behaviour's logs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Behaviour] = {}
        self._pod_logs: dict[tuple[str, str], list[str]] = {}

    def set(
        self,
        key: str,
        mode: PodMode | str = PodMode.READY,
        *,
        ready_after: float = 0.0,
        restart_interval: float = 1.0,
        logs: list[str] | None = None,
    ) -> Behaviour:
        """Register the behaviour for an image (or annotation value) ``key``."""
        b = Behaviour(PodMode(mode), ready_after, restart_interval, list(logs or []))
        with self._lock:
            self._by_key[key] = b
        return b

    def set_pod_logs(self, namespace: str, pod: str, lines: list[str]) -> None:
        """Script the log lines of one pod (e.g. to make them contain a secret or 401s)."""
        with self._lock:
            self._pod_logs[(namespace, pod)] = list(lines)

    def clear(self) -> None:
        """Forget every behaviour and scripted log."""
        with self._lock:
            self._by_key.clear()
            self._pod_logs.clear()

    def for_pod(self, pod: dict[str, Any]) -> Behaviour:
        """The behaviour of a pod: annotation first, then the first container's image, else ready."""
        meta = pod.get("metadata") or {}
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        image = str(containers[0].get("image", ""))
        repo = image.split("@")[0]
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        candidates = [(meta.get("annotations") or {}).get(BEHAVIOUR_ANNOTATION, ""), image, repo]
        with self._lock:
            for key in candidates:
                if key and key in self._by_key:
                    return self._by_key[key]
        return Behaviour()

    def logs_for(self, pod: dict[str, Any]) -> list[str]:
        """The log lines of a pod: its scripted lines, else its behaviour's, else a start-up line."""
        meta = pod.get("metadata") or {}
        with self._lock:
            scripted = self._pod_logs.get((meta.get("namespace", ""), meta.get("name", "")))
        if scripted is not None:
            return scripted
        return self.for_pod(pod).logs or [f"emulated container of pod {meta.get('name')} started"]
