"""Resources: ``ConfigurableResource``s that hold the configuration of the real adapters; the adapters
themselves are built by ``railiance_ledger.lifecycle.environment`` (the one composition root).

Every field defaults to ``None`` and is resolved when used, from the same environment variables the
CLI reads, so ``dagster dev -w workspace.yaml`` works with no configuration at all and tests pass the
same classes pointed at their own servers:

=====================  ==========================================  ===================================
resource               field (environment variable)                 default
=====================  ==========================================  ===================================
``ledger``             ``url`` (``RAILIANCE_LEDGER_URL``)           ``sqlite:///$RAILIANCE_HOME/ledger.db``
``apps``               ``apps_dir`` (``RAILIANCE_APPS_DIR``)        ``examples`` (relative to the repo root)
``registry``           ``url`` (``RAILIANCE_REGISTRY_URL``),        none: the digest sensor skips
                       ``username``/``password``/``token``
                       (``RAILIANCE_REGISTRY_USERNAME`` ...)
``statehub``           ``url`` (``RAILIANCE_STATEHUB_URL``)         none: notes are reported as not sent
``kube``               ``kubeconfig`` (``KUBECONFIG``), ``context``  ``~/.kube/config``
                       (``RAILIANCE_KUBE_CONTEXT``), ``ingress_url``
                       (``RAILIANCE_INGRESS_URL``)                  probes resolve ``routing.host``
``helm``               ``binary`` (``RAILIANCE_HELM``), ``env``,    helm on PATH, else ``.venv/bin/helm``
                       ``upgrade_args`` (``RAILIANCE_HELM_ARGS``)
``metrics``            ``url`` (``RAILIANCE_PROMETHEUS_URL``)       none: Stage 2 monitoring fails closed
=====================  ==========================================  ===================================
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.adapters.helm import Helm
    from railiance_ledger.adapters.kube import Kube
    from railiance_ledger.adapters.metrics import PrometheusMetrics
    from railiance_ledger.adapters.registry import OciRegistry
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import StateHubPort

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the code location's working directory)."""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


class LedgerResource(ConfigurableResource):  # type: ignore[type-arg]
    """The Railiance ledger (SQLite by default, PostgreSQL at scale), opened per use.

    ``actor`` is the identity recorded for what Dagster does on its own (Stage runs launched by
    sensors); a human's identity comes from the run config of the approval job.
    """

    url: str | None = Field(
        default=None, description="Ledger URL; else RAILIANCE_LEDGER_URL, else SQLite under RAILIANCE_HOME."
    )
    actor: str = Field(default="dagster", description="Actor recorded for automated stage runs.")
    sensor_actor: str = Field(
        default="dagster-sensor", description="Actor recorded for sensor registrations."
    )
    partitions_keep: int | None = Field(
        default=None,
        description="Candidate partitions kept per workload (the newest N; every stable and rollback target "
        "stays too); else RAILIANCE_PARTITIONS_KEEP, else 50. Older partitions are removed from Dagster; "
        "the ledger keeps everything.",
    )

    def keep(self) -> int:
        """How many of a workload's newest candidates keep their partition (at least 1)."""
        import os

        from railiance_ledger.lifecycle.retention import DEFAULT_KEEP

        raw = self.partitions_keep
        if raw is None:
            text = os.environ.get("RAILIANCE_PARTITIONS_KEEP", "").strip()
            raw = int(text) if text.isdigit() else DEFAULT_KEEP
        return max(1, int(raw))

    def resolved_url(self) -> str:
        """The URL the ledger opens (the CLI's resolution order)."""
        from railiance_ledger import config

        return config.ledger_url(self.url)

    @contextmanager
    def open(self) -> Iterator[EventStore]:
        """An open ``EventStore``, closed afterwards."""
        from railiance_ledger.ledger.store import EventStore

        store = EventStore.open(self.resolved_url())
        try:
            yield store
        finally:
            store.close()


class AppsResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where workloads are declared: every ``<apps_dir>/*/railiance/app.toml`` is one workload."""

    apps_dir: str | None = Field(
        default=None, description="Apps directory; else RAILIANCE_APPS_DIR, else 'examples'."
    )

    def path(self) -> Path:
        """The apps directory; a relative path is taken from the repository root."""
        raw = Path(self.apps_dir or _env("RAILIANCE_APPS_DIR") or "examples").expanduser()
        return raw if raw.is_absolute() else (REPO_ROOT / raw)


class RegistryResource(ConfigurableResource):  # type: ignore[type-arg]
    """The OCI registry the images are pushed to (``OciRegistry``), with optional credentials."""

    url: str | None = Field(
        default=None, description="Registry base URL (http(s)://host[:port]); else RAILIANCE_REGISTRY_URL."
    )
    username: str | None = Field(default=None, description="Else RAILIANCE_REGISTRY_USERNAME.")
    password: str | None = Field(default=None, description="Else RAILIANCE_REGISTRY_PASSWORD.")
    token: str | None = Field(default=None, description="Static bearer token; else RAILIANCE_REGISTRY_TOKEN.")
    timeout: float = Field(default=5.0, description="Seconds per HTTP request.")
    max_workers: int = Field(default=16, description="Concurrent registry requests.")

    def resolved_url(self) -> str | None:
        """The registry base URL, or ``None`` when none is configured."""
        return self.url or _env("RAILIANCE_REGISTRY_URL")

    @contextmanager
    def open(self) -> Iterator[OciRegistry]:
        """An ``OciRegistry`` over a pooled ``httpx.Client`` (closed afterwards), built by
        ``lifecycle.environment.open_registry``."""
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle.environment import open_registry

        url = self.resolved_url()
        if not url:
            raise InvalidInput(
                "no registry configured", hint="set RAILIANCE_REGISTRY_URL or the registry resource's url"
            )
        with open_registry(
            url,
            username=self.username or _env("RAILIANCE_REGISTRY_USERNAME"),
            password=self.password or _env("RAILIANCE_REGISTRY_PASSWORD"),
            token=self.token or _env("RAILIANCE_REGISTRY_TOKEN"),
            timeout=self.timeout,
            max_workers=self.max_workers,
        ) as registry:
            yield registry


class StateHubResource(ConfigurableResource):  # type: ignore[type-arg]
    """The State Hub notes are posted to (``StateHub``); unset means none is configured."""

    url: str | None = Field(default=None, description="State Hub base URL; else RAILIANCE_STATEHUB_URL.")
    timeout: float = Field(default=5.0, description="Seconds per HTTP request.")

    @contextmanager
    def open(self) -> Iterator[StateHubPort | None]:
        """A ``StateHub`` (closed afterwards), or ``None`` when no URL is configured
        (``lifecycle.environment.open_statehub``)."""
        from railiance_ledger.lifecycle.environment import open_statehub

        with open_statehub(self.url or _env("RAILIANCE_STATEHUB_URL"), timeout=self.timeout) as hub:
            yield hub


class KubeResource(ConfigurableResource):  # type: ignore[type-arg]
    """The Kubernetes cluster Stage 2 and 3 deploy to (``Kube`` over the official ``ApiClient``)."""

    kubeconfig: str | None = Field(
        default=None, description="Kubeconfig file; else KUBECONFIG, else ~/.kube/config."
    )
    context: str | None = Field(
        default=None, description="Kubeconfig context; else RAILIANCE_KUBE_CONTEXT, else current."
    )
    in_cluster: bool = Field(
        default=False, description="Use the pod's service account instead of a kubeconfig."
    )
    timeout: float = Field(default=10.0, description="Seconds per API request.")
    ingress_url: str | None = Field(
        default=None,
        description=(
            "Where outside probes enter the cluster (the ingress controller's address); requests carry "
            "Host: <routing.host>. Else RAILIANCE_INGRESS_URL, else routing.host as DNS resolves it."
        ),
    )

    def build(self) -> Kube:
        """A ``Kube`` (``lifecycle.environment.build_kube``); raises a clear ``AdapterError`` when no
        kubeconfig can be loaded."""
        from railiance_ledger.lifecycle.environment import build_kube

        return build_kube(
            self.kubeconfig or _env("KUBECONFIG"),
            self.context or _env("RAILIANCE_KUBE_CONTEXT"),
            timeout=self.timeout,
            in_cluster=self.in_cluster,
        )

    def kubeconfig_path(self) -> str | None:
        """The kubeconfig helm should use too (``KUBECONFIG`` for the helm subprocess)."""
        return self.kubeconfig or _env("KUBECONFIG")

    def resolved_ingress_url(self) -> str | None:
        """The ingress address outside probes go to, or ``None`` (``routing.host`` by DNS)."""
        return self.ingress_url or _env("RAILIANCE_INGRESS_URL")


class HelmResource(ConfigurableResource):  # type: ignore[type-arg]
    """The helm binary (``Helm``)."""

    binary: str | None = Field(
        default=None, description="helm path; else RAILIANCE_HELM, else helm on PATH or .venv/bin/helm."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for helm (e.g. HELM_CACHE_HOME, HELM_CONFIG_HOME, HELM_DATA_HOME).",
    )
    upgrade_args: list[str] | None = Field(
        default=None,
        description=(
            "Extra arguments for `helm upgrade --install`; else RAILIANCE_HELM_ARGS (space separated)."
        ),
    )

    def resolved_upgrade_args(self) -> tuple[str, ...]:
        """The extra ``helm upgrade`` arguments (the CLI's ``RAILIANCE_HELM_ARGS``)."""
        import shlex

        if self.upgrade_args is not None:
            return tuple(self.upgrade_args)
        return tuple(shlex.split(os.environ.get("RAILIANCE_HELM_ARGS", "")))

    def build(self, *, kubeconfig: str | None = None, context: str | None = None) -> Helm:
        """A ``Helm`` (``lifecycle.environment.build_helm``); ``env``, ``kubeconfig`` and ``context`` are
        passed to helm through its environment."""
        from railiance_ledger.lifecycle.environment import build_helm

        return build_helm(
            self.binary or _env("RAILIANCE_HELM"), env=self.env, kubeconfig=kubeconfig, context=context
        )


class MetricsResource(ConfigurableResource):  # type: ignore[type-arg]
    """Prometheus, for Stage 2 observation (``PrometheusMetrics``)."""

    url: str | None = Field(default=None, description="Prometheus base URL; else RAILIANCE_PROMETHEUS_URL.")
    timeout: float = Field(default=10.0, description="Seconds per query.")

    @contextmanager
    def open(self) -> Iterator[PrometheusMetrics]:
        """A ``PrometheusMetrics`` (closed afterwards; ``lifecycle.environment.open_metrics``); raises
        ``InvalidInput`` when none is configured."""
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle.environment import open_metrics

        url = self.url or _env("RAILIANCE_PROMETHEUS_URL")
        if not url:
            raise InvalidInput(
                "no Prometheus configured", hint="set RAILIANCE_PROMETHEUS_URL or the metrics resource's url"
            )
        with open_metrics(url, timeout=self.timeout) as metrics:
            yield metrics


@contextmanager
def http_client(
    timeout: float = 10.0, *, ingress_url: str | None = None, host: str | None = None
) -> Iterator[httpx.Client]:
    """The lifecycle's probe client (``lifecycle.environment.probe_client``): production host via the
    ingress."""
    from railiance_ledger.lifecycle.environment import probe_client

    with probe_client(timeout, ingress_url=ingress_url, host=host) as client:
        yield client


def default_resources() -> dict[str, Any]:
    """The resources of the code location, each resolving its settings from the environment."""
    return {
        "ledger": LedgerResource(),
        "apps": AppsResource(),
        "registry": RegistryResource(),
        "statehub": StateHubResource(),
        "kube": KubeResource(),
        "helm": HelmResource(),
        "metrics": MetricsResource(),
    }


class RedactedLog:
    """``context.log`` through the one redaction path: every line a run or sensor logs is redacted."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def _emit(self, level: str, text: str) -> None:
        from railiance_ledger.domain.redaction import redact

        getattr(self._log, level)(redact(str(text)))

    def info(self, text: str) -> None:
        """Log ``text`` (redacted) at info level."""
        self._emit("info", text)

    def warning(self, text: str) -> None:
        """Log ``text`` (redacted) at warning level."""
        self._emit("warning", text)

    def error(self, text: str) -> None:
        """Log ``text`` (redacted) at error level."""
        self._emit("error", text)


def log_of(context: Any) -> RedactedLog:
    """The redacted logger of a Dagster op or sensor ``context``."""
    return RedactedLog(context.log)
