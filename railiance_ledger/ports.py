"""The Protocols the lifecycle needs from the outside world: one set, one module.

Each external system the lifecycle talks to is one port here; the adapters in
``railiance_ledger.adapters`` implement them structurally (each adapter module asserts, for mypy, that
its class satisfies its port) and ``lifecycle/environment.py`` builds them. Services are typed
against these ports only, so tests and Dagster resources can pass any implementation.

    KubePort        Kubernetes API (adapters.kube.Kube)
    HelmPort        the helm binary (adapters.helm.Helm)
    RegistryPort    an OCI registry (adapters.registry.OciRegistry)
    MetricsPort     Prometheus (adapters.metrics.PrometheusMetrics)
    StateHubPort    State Hub notes (adapters.statehub.StateHub)
    Clock           the time (SystemClock)

The value types that cross a port (pod summaries, metric samples and values) live here too, so the
lifecycle never imports an adapter module for a type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "HelmPort",
    "KubePort",
    "MetricValue",
    "MetricsPort",
    "PodState",
    "PodSummary",
    "RegistryPort",
    "Sample",
    "Series",
    "StateHubPort",
    "StateHubWitnessPort",
    "SystemClock",
    "Timestamp",
]

Timestamp = dt.datetime | float


# ----------------------------------------------------------------------------------------- clock


class Clock(Protocol):
    """Where services get the time from (injected, so tests can pin it)."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)``."""

    def now(self) -> dt.datetime:
        """The current time in UTC."""
        return dt.datetime.now(dt.UTC)


SYSTEM_CLOCK = SystemClock()
"""The one system clock (``now=SYSTEM_CLOCK.now`` is the default of the services' ``now`` parameter)."""


# ------------------------------------------------------------------------------------ kubernetes


@dataclass(frozen=True)
class PodState:
    """One pod as the gates see it."""

    name: str
    phase: str
    ready: bool
    restarts: int
    waiting_reason: str = ""


@dataclass(frozen=True)
class PodSummary:
    """The pods behind a selector: counts, restart totals and one :class:`PodState` per pod."""

    total: int
    ready: int
    pending: int
    crashlooping: int
    restarts_max: int
    restarts_total: int
    pods: tuple[PodState, ...] = field(default_factory=tuple)

    @property
    def all_ready(self) -> bool:
        """True when there is at least one pod and every pod is ready."""
        return self.total > 0 and self.ready == self.total


class KubePort(Protocol):
    """What the lifecycle needs from Kubernetes (keyword-only, plain dicts and our types only)."""

    def namespace_ready(self, *, namespace: str) -> bool: ...
    def dry_run_apply(
        self, *, manifests: list[dict[str, Any]], field_manager: str
    ) -> list[dict[str, Any]]: ...
    def apply(
        self, *, manifests: list[dict[str, Any]], field_manager: str, force: bool = True
    ) -> list[dict[str, Any]]: ...
    def delete(self, *, api_version: str, kind: str, namespace: str | None, name: str) -> bool: ...
    def get(
        self, *, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...
    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...
    def pod_summary(self, *, namespace: str, selector: str) -> PodSummary: ...
    def pod_logs(
        self,
        *,
        namespace: str,
        selector: str,
        tail_lines: int = 200,
        limit_bytes: int = 65536,
        max_pods: int = 20,
    ) -> dict[str, str]: ...
    def has_api(self, *, group: str, version: str, kind: str) -> bool: ...
    def ingress_class_exists(self, *, name: str) -> bool: ...
    def secret_exists(self, *, namespace: str, name: str) -> bool: ...
    def service_proxy_get(
        self, *, namespace: str, service: str, port: int | str, path: str, timeout: float = 5.0
    ) -> tuple[int, str]: ...


# ------------------------------------------------------------------------------------------ helm


class HelmPort(Protocol):
    """What the lifecycle needs from helm."""

    def template(
        self,
        *,
        chart: Path | str,
        release: str,
        namespace: str,
        values_files: Sequence[Path | str] = (),
        set_values: Mapping[str, str] | None = None,
        kube_version: str | None = None,
        timeout: float = 60.0,
    ) -> str: ...
    def install_or_upgrade(
        self,
        *,
        chart: Path | str,
        release: str,
        namespace: str,
        values_files: Sequence[Path | str] = (),
        set_values: Mapping[str, str] | None = None,
        wait: bool = False,
        extra_args: Sequence[str] = (),
        timeout: float = 300.0,
    ) -> dict[str, object]: ...
    def history(self, *, release: str, namespace: str, timeout: float = 60.0) -> list[dict[str, object]]: ...
    def uninstall(self, *, release: str, namespace: str, timeout: float = 300.0) -> None: ...


# -------------------------------------------------------------------------------------- registry


class RegistryPort(Protocol):
    """What the lifecycle and the new-digest sensor need from an OCI registry."""

    def resolve_tag(self, *, repository: str, tag: str) -> str:
        """The digest ``repository:tag`` points at now."""
        ...

    def digest_exists(self, *, repository: str, digest: str) -> bool:
        """True when a manifest with ``digest`` exists in ``repository``."""
        ...

    def list_tags(self, *, repository: str, pattern: str | None = None) -> list[str]:
        """Every tag of ``repository``, optionally only those matching ``pattern``."""
        ...

    def tags_with_digests(self, *, repository: str, pattern: str | None = None) -> dict[str, str]:
        """Tag -> digest for every (matching) tag of ``repository``."""
        ...


# --------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: labels, value, evaluation time (unix seconds)."""

    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: labels and ``(unix seconds, value)`` points in time order."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        """The values alone, in time order."""
        return [value for _, value in self.points]


@dataclass(frozen=True)
class MetricValue:
    """A gate signal: a number, or an explicit "metrics unavailable" with the reason.

    ``value`` is ``None`` exactly when ``available`` is false. ``query`` is the PromQL asked, kept
    as evidence. ``reason`` is empty when available.
    """

    value: float | None
    available: bool
    query: str
    reason: str = ""

    @classmethod
    def of(cls, value: float, *, query: str) -> MetricValue:
        """An available value."""
        return cls(value=value, available=True, query=query, reason="")

    @classmethod
    def unavailable(cls, reason: str, *, query: str) -> MetricValue:
        """No value: ``reason`` says why (prefixed with "metrics unavailable")."""
        text = reason if reason.startswith("metrics unavailable") else f"metrics unavailable: {reason}"
        return cls(value=None, available=False, query=query, reason=text)


class MetricsPort(Protocol):
    """What canary observation needs from a metrics backend."""

    def instant(self, *, query: str) -> list[Sample]:
        """Evaluate ``query`` now."""
        ...

    def range(self, *, query: str, start: Timestamp, end: Timestamp, step: float | str) -> list[Series]:
        """Evaluate ``query`` over ``[start, end]`` every ``step``."""
        ...

    def error_rate(self, *, selector: str, window: str = "1m") -> MetricValue:
        """Fraction of 5xx responses over ``window``."""
        ...

    def p95_latency_ms(self, *, selector: str, window: str = "1m") -> MetricValue:
        """95th percentile request latency in milliseconds over ``window``."""
        ...

    def saturation(self, *, selector: str, window: str = "1m") -> MetricValue:
        """Mean saturation ratio over ``window`` of the busiest instance."""
        ...


# ------------------------------------------------------------------------------------- State Hub


class StateHubPort(Protocol):
    """What the lifecycle needs from State Hub: post one note, get its id."""

    @property
    def base_url(self) -> str: ...

    def post_note(
        self, *, workload: str, kind: str, title: str, body: str, evidence: list[dict[str, Any]]
    ) -> str:
        """Post one note and return its id."""
        ...


class StateHubWitnessPort(Protocol):
    """State Hub as the ledger's external witness: the notes it recorded, read back."""

    def list_notes(self) -> list[dict[str, Any]]:
        """Every note State Hub holds (each with its ``evidence``), oldest first."""
        ...
