"""The real adapters a lifecycle command needs, built from configuration.

The CLI and the Dagster resources never build adapters themselves: they describe where things are
(flags or environment) and this module builds the ``Kube``, ``Helm``, registry, metrics and State
Hub clients, so every caller gets the same adapters and the same defaults.

Environment (flags win where the CLI has one):

- ``KUBECONFIG`` / ``RAILIANCE_KUBE_CONTEXT``: the cluster (``--kubeconfig`` / ``--context``).
- ``RAILIANCE_REGISTRY_URL``: the OCI registry base URL; default ``https://<host of image.repository>``.
  ``RAILIANCE_REGISTRY_USERNAME`` / ``RAILIANCE_REGISTRY_PASSWORD`` for the token flow.
- ``RAILIANCE_PROMETHEUS_URL``: Prometheus; when unset the metrics adapter points nowhere and every
  metric is "metrics unavailable" (which fails closed unless waived).
- ``RAILIANCE_STATEHUB_URL``: State Hub for progress notes.
- ``RAILIANCE_HELM``: the helm binary (default: ``helm`` on PATH, else ``.venv/bin/helm``);
  ``RAILIANCE_HELM_ARGS``: extra arguments for ``helm upgrade --install`` (space separated).
  helm runs with the same ``KUBECONFIG`` (and ``HELM_KUBECONTEXT`` for the context) and inherits
  ``HELM_CACHE_HOME``/``HELM_CONFIG_HOME``/``HELM_DATA_HOME`` from the environment.
- ``RAILIANCE_INGRESS_URL``: where Stage 2 outside health probes enter the cluster (e.g. the
  ingress controller's address); requests carry ``Host: <routing.host>``. Default: ``routing.host``
  resolved by DNS.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from railiance_ledger.adapters.helm import Helm
    from railiance_ledger.adapters.kube import Kube
    from railiance_ledger.adapters.metrics import PrometheusMetrics
    from railiance_ledger.adapters.registry import OciRegistry
    from railiance_ledger.adapters.statehub import NotePoster
    from railiance_ledger.declaration.models import Declaration

UNREACHABLE_PROMETHEUS = "http://127.0.0.1:9"
"""Where the metrics adapter points when no Prometheus is configured: the discard port refuses, so
every query answers "metrics unavailable" instead of a number."""


@dataclass
class Environment:
    """Where the external systems are; ``open()`` builds the adapters for one command."""

    kubeconfig: str | None = None
    context: str | None = None
    registry_url: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None
    prometheus_url: str | None = None
    helm_binary: str | None = None
    helm_args: tuple[str, ...] = ()
    ingress_url: str | None = None
    timeout: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> Environment:
        """Read the environment variables listed in the module docstring; flags override them."""
        e = os.environ if env is None else env
        return cls(
            kubeconfig=kubeconfig or e.get("KUBECONFIG") or None,
            context=context or e.get("RAILIANCE_KUBE_CONTEXT") or None,
            registry_url=e.get("RAILIANCE_REGISTRY_URL") or None,
            registry_username=e.get("RAILIANCE_REGISTRY_USERNAME") or None,
            registry_password=e.get("RAILIANCE_REGISTRY_PASSWORD") or None,
            prometheus_url=e.get("RAILIANCE_PROMETHEUS_URL") or None,
            helm_binary=e.get("RAILIANCE_HELM") or None,
            helm_args=tuple(shlex.split(e.get("RAILIANCE_HELM_ARGS", ""))),
            ingress_url=e.get("RAILIANCE_INGRESS_URL") or None,
        )

    def registry_base(self, decl: Declaration) -> str:
        """The registry URL: configured, else ``https://`` plus the host part of ``image.repository``."""
        if self.registry_url:
            return self.registry_url.rstrip("/")
        host = decl.image.repository.split("/", 1)[0]
        return f"https://{host}"

    def kube(self) -> Kube:
        """The Kubernetes adapter for the configured kubeconfig and context."""
        from railiance_ledger.adapters.kube import Kube

        return Kube.from_kubeconfig(self.kubeconfig, self.context, timeout=self.timeout)

    def helm(self) -> Helm:
        """The real helm binary, pointed at the same kubeconfig and context."""
        from railiance_ledger.adapters.helm import Helm
        from railiance_ledger.lifecycle.stage1 import default_helm

        base = Helm(self.helm_binary) if self.helm_binary else default_helm()
        env: dict[str, str] = dict(base.env)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        if self.context:
            env["HELM_KUBECONTEXT"] = self.context
        return Helm(base.binary, env=env)

    @contextmanager
    def open(self, decl: Declaration) -> Iterator[Adapters]:
        """Build every adapter for ``decl``; HTTP clients are closed when the block ends."""
        from railiance_ledger.adapters.metrics import PrometheusMetrics
        from railiance_ledger.adapters.registry import OciRegistry
        from railiance_ledger.lifecycle.notes import statehub_from_env

        timeout = httpx.Timeout(self.timeout)
        with (
            probe_client(self.timeout, ingress_url=self.ingress_url, host=decl.routing.host) as http,
            httpx.Client(timeout=timeout, trust_env=False) as registry_http,
            httpx.Client(timeout=timeout, trust_env=False) as metrics_http,
        ):
            yield Adapters(
                kube=self.kube(),
                helm=self.helm(),
                registry=OciRegistry(
                    registry_http,
                    self.registry_base(decl),
                    username=self.registry_username,
                    password=self.registry_password,
                ),
                metrics=PrometheusMetrics(metrics_http, self.prometheus_url or UNREACHABLE_PROMETHEUS),
                http=http,
                statehub=statehub_from_env(),
                helm_args=self.helm_args,
                metrics_configured=bool(self.prometheus_url),
                ingress_url=self.ingress_url,
            )


@dataclass
class Adapters:
    """The adapters of one command."""

    kube: Kube
    helm: Helm
    registry: OciRegistry
    metrics: PrometheusMetrics
    http: httpx.Client
    statehub: NotePoster | None
    helm_args: tuple[str, ...] = ()
    metrics_configured: bool = True
    ingress_url: str | None = None

    @property
    def warnings(self) -> list[str]:
        """Configuration gaps the operator should know about before the result."""
        out = []
        if not self.metrics_configured:
            out.append(
                "RAILIANCE_PROMETHEUS_URL is not set: every metric is 'metrics unavailable' (fails closed)"
            )
        return out


@contextmanager
def probe_client(
    timeout: float = 10.0, *, ingress_url: str | None = None, host: str | None = None
) -> Iterator[httpx.Client]:
    """A plain ``httpx.Client`` (no proxies from the environment) for probes; closed afterwards.

    With ``ingress_url`` and ``host``, requests for ``host`` (the declared ``routing.host``: Stage 3
    smoke, rollback verification) are sent to ``ingress_url`` with ``Host: <host>``, as ``curl
    --resolve`` would: the production URL entered through the ingress controller's address.
    """
    if not (ingress_url and host):
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            yield client
        return
    entry = httpx.URL(ingress_url)
    inner = httpx.HTTPTransport(trust_env=False)

    class _ThroughIngress(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.host == host:
                request.headers["Host"] = host
                request.url = request.url.copy_with(
                    scheme=entry.scheme,
                    host=entry.host,
                    port=entry.port,
                    path=entry.path.rstrip("/") + request.url.path,
                )
            return inner.handle_request(request)

        def close(self) -> None:
            inner.close()

    with httpx.Client(timeout=timeout, trust_env=False, transport=_ThroughIngress()) as client:
        yield client


def host_of(url: str) -> str:
    """The host of ``url`` (for messages)."""
    return urlsplit(url).hostname or url
