"""The real adapters a lifecycle command needs, built from configuration.

The composition root: the CLI and the Dagster resources never build adapters themselves, and the
lifecycle services never build one "just in case". Callers describe where things are (flags,
environment, resource configuration) and this module builds the ``Kube``, ``Helm``, registry,
metrics and State Hub clients, once per command or run, and passes them into every service call;
HTTP clients are closed when the command ends.

- ``Environment.from_env(...).open(decl)``: every adapter of a cluster command (deploy, observe,
  promote, rollback); ``Environment.statehub()``: the State Hub alone (approve, revoke, waive,
  exception, notes); ``open_local()``: Stage 1's helm and probe client (``railiance run``).
- ``build_kube``, ``build_helm``, ``open_registry``, ``open_metrics``, ``open_statehub``,
  ``probe_client``: the single builders, also used by the Dagster resources with their own settings.

Environment (flags win where the CLI has one):

- ``KUBECONFIG`` / ``RAILIANCE_KUBE_CONTEXT``: the cluster (``--kubeconfig`` / ``--context``).
- ``RAILIANCE_REGISTRY_URL``: the OCI registry base URL; default ``https://<host of image.repository>``.
  ``RAILIANCE_REGISTRY_USERNAME`` / ``RAILIANCE_REGISTRY_PASSWORD`` for the token flow.
- ``open_registries()``: the registry of each image reference (``RegistryPool``) with the user's
  docker credentials (``~/.docker/config.json``, ``REGISTRY_AUTH_FILE``, credential helpers) and the
  per-registry TLS settings of ``RAILIANCE_REGISTRIES`` (default ``$RAILIANCE_HOME/registries.toml``);
  ``RAILIANCE_REGISTRY_URL`` there is an override (every registry's requests go to it).
- ``RAILIANCE_PROMETHEUS_URL``: Prometheus; when unset the metrics adapter points nowhere and every
  metric is "metrics unavailable" (which fails closed unless waived).
- ``RAILIANCE_STATEHUB_URL``: State Hub for progress notes; unset means none is configured (the
  services record that the note was not sent, and warn when the spec expects one).
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
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from railiance_ledger.lifecycle.notes import STATEHUB_URL_ENV

if TYPE_CHECKING:
    from railiance_ledger.adapters.attestations import OciAttestations
    from railiance_ledger.adapters.dagster_web import DagsterWeb
    from railiance_ledger.adapters.helm import Helm
    from railiance_ledger.adapters.kube import Kube
    from railiance_ledger.adapters.metrics import PrometheusMetrics
    from railiance_ledger.adapters.registries import RegistryPool
    from railiance_ledger.adapters.registry import OciRegistry
    from railiance_ledger.adapters.webhook_server import WebhookServer
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ports import StateHubPort, StateHubWitnessPort

UNREACHABLE_PROMETHEUS = "http://127.0.0.1:9"
"""Where the metrics adapter points when no Prometheus is configured: the discard port refuses, so
every query answers "metrics unavailable" instead of a number."""

LOCAL_PROBE_TIMEOUT = 5.0
"""Seconds per request of Stage 1's local health probes (httpx's default, as ``railiance run`` always had)."""


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
    statehub_url: str | None = None
    timeout: float = 10.0
    statehub_timeout: float = 5.0
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
            statehub_url=e.get(STATEHUB_URL_ENV, "").strip() or None,
        )

    def registry_base(self, decl: Declaration) -> str:
        """The registry URL: configured, else ``https://`` plus the host part of ``image.repository``."""
        if self.registry_url:
            return self.registry_url.rstrip("/")
        host = decl.image.repository.split("/", 1)[0]
        return f"https://{host}"

    def kube(self) -> Kube:
        """The Kubernetes adapter for the configured kubeconfig and context."""
        return build_kube(self.kubeconfig, self.context, timeout=self.timeout)

    def helm(self) -> Helm:
        """The real helm binary, pointed at the same kubeconfig and context."""
        return build_helm(self.helm_binary, kubeconfig=self.kubeconfig, context=self.context)

    @contextmanager
    def statehub(self) -> Iterator[StateHubPort | None]:
        """The State Hub of ``RAILIANCE_STATEHUB_URL`` (closed afterwards), or ``None`` when none is set.

        The CLI's State Hub client follows the proxy settings of the environment (as it always has);
        the other clients of a command do not.
        """
        with open_statehub(self.statehub_url, timeout=self.statehub_timeout, trust_env=True) as hub:
            yield hub

    @contextmanager
    def witness(self) -> Iterator[StateHubWitnessPort | None]:
        """The State Hub of ``RAILIANCE_STATEHUB_URL`` read as the ledger's witness, or ``None``."""
        with open_statehub_witness(self.statehub_url, timeout=self.statehub_timeout) as hub:
            yield hub

    @contextmanager
    def open(self, decl: Declaration) -> Iterator[Adapters]:
        """Build every adapter for ``decl``; HTTP clients are closed when the block ends."""
        with (
            probe_client(self.timeout, ingress_url=self.ingress_url, host=decl.routing.host) as http,
            open_registry(
                self.registry_base(decl),
                username=self.registry_username,
                password=self.registry_password,
                timeout=self.timeout,
            ) as registry,
            open_metrics(self.prometheus_url or UNREACHABLE_PROMETHEUS, timeout=self.timeout) as metrics,
            self.statehub() as statehub,
        ):
            yield Adapters(
                kube=self.kube(),
                helm=self.helm(),
                registry=registry,
                metrics=metrics,
                http=http,
                statehub=statehub,
                helm_args=self.helm_args,
                metrics_configured=bool(self.prometheus_url),
                ingress_url=self.ingress_url,
            )


@dataclass
class LocalAdapters:
    """The adapters of Stage 1 (``railiance run``): helm for ``helm template``, a probe client, and the
    registries the candidate's image configuration is read from (provenance, platforms)."""

    helm: Helm
    http: httpx.Client
    registries: RegistryPool | None = None


@contextmanager
def open_local() -> Iterator[LocalAdapters]:
    """Stage 1's adapters: the helm on ``PATH`` (else ``.venv/bin/helm``), a probe client with no
    proxies and the registry pool of ``open_registries`` (closed afterwards). Stage 1 renders and
    probes locally, so no cluster setting applies."""
    with (
        probe_client(LOCAL_PROBE_TIMEOUT) as http,
        open_registries(timeout=LOCAL_PROBE_TIMEOUT) as registries,
    ):
        yield LocalAdapters(helm=build_helm(), http=http, registries=registries)


@contextmanager
def open_dagster_web(url: str | None, *, timeout: float = 10.0) -> Iterator[DagsterWeb | None]:
    """The Dagster webserver's GraphQL API at ``url`` (closed afterwards), or ``None`` when unset."""
    if not url:
        yield None
        return
    from railiance_ledger.adapters.dagster_web import DagsterWeb

    with httpx.Client(timeout=timeout, trust_env=False) as client:
        yield DagsterWeb(client, url)


def build_webhook_server(
    spool: Path, *, secret: str, host: str, port: int, on_stored: Callable[[list[Any]], None] | None = None
) -> WebhookServer:
    """The push-notification receiver storing into the spool file ``spool``."""
    from railiance_ledger.adapters.push_spool import PushSpool
    from railiance_ledger.adapters.webhook_server import WebhookServer

    return WebhookServer(PushSpool(spool), secret=secret, host=host, port=port, on_stored=on_stored)


@contextmanager
def open_registries(
    env: Mapping[str, str] | None = None,
    *,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    max_workers: int = 8,
) -> Iterator[RegistryPool]:
    """The registry of each image reference, with the user's credentials (closed afterwards).

    ``url`` (else ``RAILIANCE_REGISTRY_URL``) overrides every registry's address, with ``username``/
    ``password``/``token`` (else ``RAILIANCE_REGISTRY_USERNAME``/``_PASSWORD``/``_TOKEN``) when given
    and the docker config's credentials otherwise. Per-registry TLS and plain-HTTP settings come from
    ``RAILIANCE_REGISTRIES`` (default ``$RAILIANCE_HOME/registries.toml``).
    """
    from railiance_ledger.adapters.docker_credentials import Credentials, DockerCredentialStore
    from railiance_ledger.adapters.registries import RegistryPool, load_registry_settings
    from railiance_ledger.config import railiance_home

    e = dict(os.environ if env is None else env)
    settings_file = e.get("RAILIANCE_REGISTRIES")
    settings = load_registry_settings(
        Path(settings_file) if settings_file else railiance_home() / "registries.toml"
    )
    override = url or e.get("RAILIANCE_REGISTRY_URL") or None
    user = username or e.get("RAILIANCE_REGISTRY_USERNAME") or None
    secret = password or e.get("RAILIANCE_REGISTRY_PASSWORD") or None
    creds = (
        Credentials(username=user, password=secret, source="RAILIANCE_REGISTRY_USERNAME") if user else None
    )
    pool = RegistryPool(
        credentials=DockerCredentialStore(e),
        settings=settings,
        override_url=override,
        override_credentials=creds,
        override_token=None if user else (token or e.get("RAILIANCE_REGISTRY_TOKEN") or None),
        timeout=timeout,
        max_workers=max_workers,
        env=e,
    )
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class Adapters:
    """The adapters of one command."""

    kube: Kube
    helm: Helm
    registry: OciRegistry
    metrics: PrometheusMetrics
    http: httpx.Client
    statehub: StateHubPort | None
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


def build_kube(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    timeout: float = 10.0,
    in_cluster: bool = False,
) -> Kube:
    """The Kubernetes adapter: the pod's service account with ``in_cluster``, else the kubeconfig
    (``None``: ``$KUBECONFIG`` or ``~/.kube/config``) and its ``context`` (``None``: the current one)."""
    from railiance_ledger.adapters.kube import Kube

    if in_cluster:
        return Kube.in_cluster(timeout=timeout)
    return Kube.from_kubeconfig(kubeconfig, context, timeout=timeout)


def default_helm() -> Helm:
    """The helm on ``PATH``, else the one ``scripts/bootstrap`` unpacked next to this Python."""
    from railiance_ledger.adapters.helm import Helm

    found = shutil.which("helm")
    if found:
        return Helm(found)
    local = Path(sys.executable).parent / "helm"
    return Helm(str(local) if local.exists() else "helm")


def build_helm(
    binary: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> Helm:
    """The helm binary (``None``: helm on ``PATH``, else ``.venv/bin/helm``) with ``env`` added to its
    environment, pointed at ``kubeconfig`` (``KUBECONFIG``) and ``context`` (``HELM_KUBECONTEXT``)."""
    from railiance_ledger.adapters.helm import Helm

    base = Helm(binary) if binary else default_helm()
    merged: dict[str, str] = {**base.env, **dict(env or {})}
    if kubeconfig:
        merged["KUBECONFIG"] = kubeconfig
    if context:
        merged["HELM_KUBECONTEXT"] = context
    return Helm(base.binary, env=merged)


@contextmanager
def open_registry(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    max_workers: int | None = None,
) -> Iterator[OciRegistry]:
    """The OCI registry at ``url`` over its own ``httpx.Client`` (no proxies; closed afterwards).

    ``max_workers`` bounds concurrent requests (the connection pool is sized for it); ``token`` is a
    static bearer token, used only when no ``username`` is given.
    """
    from railiance_ledger.adapters.registry import OciRegistry

    pool: dict[str, Any] = {}
    sized: dict[str, Any] = {}
    if max_workers is not None:
        pool["max_workers"] = max_workers
        sized["limits"] = httpx.Limits(
            max_connections=max_workers * 2, max_keepalive_connections=max_workers * 2
        )
    with httpx.Client(timeout=timeout, trust_env=False, **sized) as client:
        yield OciRegistry(
            client,
            url,
            username=username,
            password=password,
            token=None if username else token,
            **pool,
        )


@contextmanager
def open_metrics(url: str, *, timeout: float = 10.0) -> Iterator[PrometheusMetrics]:
    """Prometheus at ``url`` over its own ``httpx.Client`` (no proxies; closed afterwards)."""
    from railiance_ledger.adapters.metrics import PrometheusMetrics

    with httpx.Client(timeout=timeout, trust_env=False) as client:
        yield PrometheusMetrics(client, url)


@contextmanager
def open_attestations(
    url: str, *, username: str | None = None, password: str | None = None, timeout: float = 10.0
) -> Iterator[OciAttestations]:
    """Attestations (cosign's ``sha256-<hex>.att`` tags) in the registry at ``url`` (closed afterwards)."""
    from railiance_ledger.adapters.attestations import OciAttestations

    with httpx.Client(timeout=timeout, trust_env=False) as client:
        yield OciAttestations(client, url, username=username, password=password)


@contextmanager
def open_statehub_witness(url: str | None, *, timeout: float = 5.0) -> Iterator[StateHubWitnessPort | None]:
    """The State Hub at ``url`` for reading its notes back (``ledger verify --witness``), or ``None``."""
    url = (url or "").strip()
    if not url:
        yield None
        return
    from railiance_ledger.adapters.statehub import StateHub

    with httpx.Client(timeout=timeout, trust_env=True) as client:
        yield StateHub(client, url, timeout=timeout)


@contextmanager
def open_statehub(
    url: str | None, *, timeout: float = 5.0, trust_env: bool = False
) -> Iterator[StateHubPort | None]:
    """The State Hub at ``url`` (closed afterwards), or ``None`` when no URL is configured.

    ``None`` is an answer, not an error: the services record that no note was sent and warn when
    the spec expects one.
    """
    url = (url or "").strip()
    if not url:
        yield None
        return
    from railiance_ledger.adapters.statehub import StateHub

    with httpx.Client(timeout=timeout, trust_env=trust_env) as client:
        yield StateHub(client, url, timeout=timeout)
