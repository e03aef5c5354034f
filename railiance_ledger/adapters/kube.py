"""Kubernetes access for the lifecycle, through an injected official ``kubernetes.client.ApiClient``.

Every method is keyword-only and returns plain dicts or dataclasses; the rest of the package never sees
client models or ``ApiException``. Requests go through ``ApiClient.call_api`` on resource paths found by
discovery (cached per instance), with ``_request_timeout`` on every call. Failures are translated here:

    401/403                     AdapterAuthError
    404                         AdapterNotFound (or None/False where a method documents it)
    409                         KubeConflict (AlreadyExists, resourceVersion or apply field conflicts)
    422                         KubeInvalid, carrying the server's causes
    5xx, refused, reset         AdapterUnavailable
    timeouts                    AdapterTimeout
    undecodable answers         AdapterProtocolError

Messages name the system ``kubernetes``, the operation and the server address. ``urllib3`` is imported
only to recognise the transport errors of the kubernetes client, which is built on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import kubernetes  # type: ignore[import-untyped,unused-ignore]  # typed from kubernetes 37 on
import urllib3
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped,unused-ignore]

from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
)
from railiance_ledger.ports import KubePort, PodState, PodSummary

SYSTEM = "kubernetes"
Obj = dict[str, Any]
Objs = list[Obj]
T = TypeVar("T")


class KubeConflict(AdapterError):
    """409: the object already exists, changed since it was read, or an apply hit another field manager."""


class KubeInvalid(AdapterError):
    """422: the server refused the object; ``causes`` lists ``{field, reason, message}`` as it said."""

    def __init__(self, message: str, *, causes: list[dict[str, str]], **context: str) -> None:
        super().__init__(message, **context)
        self.causes = causes


@dataclass(frozen=True)
class _Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if sub is not None:
            base += f"/{sub}"
        return base


def _message(exc: ApiException) -> tuple[str, list[dict[str, str]]]:
    """The server's Status message and causes, or a short description of the raw answer."""
    try:
        doc = json.loads(exc.body or "")
    except (TypeError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        causes = list((doc.get("details") or {}).get("causes") or [])
        return str(doc.get("message") or doc.get("reason") or exc.reason), causes
    return f"HTTP {exc.status} {exc.reason or ''}".strip(), []


class Kube:
    """What the lifecycle needs from a Kubernetes cluster, over an injected ``ApiClient``."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api_client
        self.timeout = timeout
        self.address = str(api_client.configuration.host)
        self._resources: dict[str, list[_Resource] | None] = {}

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, *, timeout: float = 10.0
    ) -> Kube:
        """A ``Kube`` from a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
        try:
            client = kubernetes.config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call,unused-ignore]
        except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
            raise AdapterError(
                str(exc),
                system=SYSTEM,
                operation="load kubeconfig",
                address=path or "",
                hint="check KUBECONFIG and the context name",
            ) from exc
        return cls(client, timeout=timeout)

    @classmethod
    def in_cluster(cls, *, timeout: float = 10.0) -> Kube:
        """A ``Kube`` from the pod's service account (inside a cluster)."""
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call,unused-ignore]
        except kubernetes.config.ConfigException as exc:
            raise AdapterError(
                str(exc),
                system=SYSTEM,
                operation="load in-cluster config",
                hint="run inside a pod with a service account, or use from_kubeconfig",
            ) from exc
        return cls(kubernetes.client.ApiClient(config), timeout=timeout)

    # --- transport -------------------------------------------------------------------------------

    def _fail(self, operation: str, exc: BaseException) -> AdapterError:
        ctx = {"system": SYSTEM, "operation": operation, "address": self.address}
        if isinstance(exc, ApiException):
            status = int(exc.status or 0)
            message, causes = _message(exc)
            if status in (401, 403):
                return AdapterAuthError(
                    f"HTTP {status}: {message}",
                    **ctx,
                    hint="check the kubeconfig credentials and RBAC for this verb",
                )
            if status == 404:
                return AdapterNotFound(message, **ctx)
            if status == 409:
                return KubeConflict(message, **ctx, hint="re-read the object and retry, or apply with force")
            if status == 422:
                return KubeInvalid(message, causes=causes, **ctx)
            if status == 0:
                return AdapterUnavailable(f"no HTTP answer: {exc.reason}", **ctx)
            if status in (408, 504):
                return AdapterTimeout(f"HTTP {status}: {message}", **ctx)
            if status >= 500 or status == 429:
                return AdapterUnavailable(
                    f"HTTP {status}: {message}", **ctx, hint="the API server is unhealthy"
                )
            return AdapterError(f"HTTP {status}: {message}", **ctx)
        reason = getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return AdapterUnavailable(f"cannot connect: {reason}", **ctx, hint="is the API server running?")
        if isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return AdapterTimeout(f"no answer within {self.timeout:g}s", **ctx)
        if isinstance(reason, (urllib3.exceptions.HTTPError, OSError)):
            return AdapterUnavailable(f"connection failed: {reason}", **ctx)
        return AdapterProtocolError(f"undecodable answer: {exc}", **ctx)

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> tuple[int, str, bytes]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        url = self.api.configuration.host + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        for setting in self.api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        # The client's urllib3 pool (TLS and client certificates configured from the kubeconfig) is
        # used directly: ApiClient.call_api changed signature between kubernetes 36 and 37 (and
        # dagster-k8s pins kubernetes<37), the pool manager's request did not.
        encoded = None if body is None else json.dumps(body).encode("utf-8")
        try:
            response = self.api.rest_client.pool_manager.request(
                method,
                url,
                body=encoded,
                headers={**self.api.default_headers, **headers},
                timeout=urllib3.Timeout(total=timeout or self.timeout),
                preload_content=False,
            )
            data = response.read()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(operation, exc) from exc
        return int(response.status), str(response.reason or ""), bytes(data)

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> bytes:
        status, reason, data = self._send(operation, method, path, **kwargs)
        if not 200 <= status <= 299:
            exc = ApiException(status=status, reason=reason)
            exc.body = data.decode("utf-8", "replace")
            raise self._fail(operation, exc) from exc
        return data

    def _json(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        data = self._call(operation, method, path, **kwargs)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise AdapterProtocolError(
                f"answer is not JSON: {data[:80]!r}", system=SYSTEM, operation=operation, address=self.address
            ) from exc

    def _none_if_missing(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except AdapterNotFound:
            return None

    # --- discovery -------------------------------------------------------------------------------

    def _served(self, api_version: str) -> list[_Resource] | None:
        if api_version not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            doc = self._none_if_missing(lambda: self._json(f"discover {api_version}", "GET", path))
            self._resources[api_version] = (
                None
                if doc is None
                else [
                    _Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                    for r in doc.get("resources") or []
                    if "/" not in r.get("name", "")
                ]
            )
        return self._resources[api_version]

    def _resource(self, api_version: str, kind: str, operation: str) -> _Resource:
        for r in self._served(api_version) or []:
            if r.kind == kind:
                return r
        raise AdapterNotFound(
            f"the server does not serve {kind} in {api_version}",
            system=SYSTEM,
            operation=operation,
            address=self.address,
            hint="install the API (CRD) or use a kind the cluster serves",
        )

    def has_api(self, *, group: str, version: str, kind: str) -> bool:
        """True when discovery lists ``kind`` in ``group/version`` (e.g. Gateway API HTTPRoute);
        False means weighted routing through that API is unavailable. Other failures raise."""
        self._resources.pop(f"{group}/{version}" if group else version, None)
        api_version = f"{group}/{version}" if group else version
        return any(r.kind == kind for r in self._served(api_version) or [])

    def server_version(self) -> dict[str, str]:
        """The ``/version`` document (``gitVersion``, ``major``, ``minor``, ...)."""
        return {str(k): str(v) for k, v in self._json("read server version", "GET", "/version").items()}

    # --- generic objects -------------------------------------------------------------------------

    def _object_path(self, manifest: Obj, operation: str) -> str:
        api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
        meta = manifest.get("metadata") or {}
        if not api_version or not kind or not meta.get("name"):
            raise AdapterError(
                "manifest needs apiVersion, kind and metadata.name",
                system=SYSTEM,
                operation=operation,
                address=self.address,
            )
        res = self._resource(str(api_version), str(kind), operation)
        return res.path(meta.get("namespace") or "default", str(meta["name"]))

    def _apply_one(self, manifest: Obj, field_manager: str, force: bool, dry_run: bool) -> Obj:
        meta = manifest.get("metadata") or {}
        operation = f"{'dry-run ' if dry_run else ''}apply {manifest.get('kind')}/{meta.get('name')}"
        query = {
            "fieldManager": field_manager,
            "force": "true" if force else "false",
            "dryRun": "All" if dry_run else None,
        }
        return dict(
            self._json(
                operation,
                "PATCH",
                self._object_path(manifest, operation),
                query=query,
                body=manifest,
                content_type="application/apply-patch+yaml",
            )
        )

    def dry_run_apply(self, *, manifests: Objs, field_manager: str) -> Objs:
        """Server-side apply every manifest with ``dryRun=All``: validated and defaulted, nothing persisted.
        The first refusal raises (``KubeInvalid`` carries the causes)."""
        return [self._apply_one(m, field_manager, True, True) for m in manifests]

    def apply(self, *, manifests: Objs, field_manager: str, force: bool = True) -> Objs:
        """Server-side apply every manifest (create or update) as ``field_manager``; returns the stored objects."""
        return [self._apply_one(m, field_manager, force, False) for m in manifests]

    def get(self, *, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        operation = f"get {kind}/{name}"
        path = self._resource(api_version, kind, operation).path(namespace, name)
        return self._none_if_missing(lambda: dict(self._json(operation, "GET", path)))

    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> Objs:
        """Objects of a kind in a namespace (all namespaces when None), optionally by label selector."""
        operation = f"list {kind}"
        path = self._resource(api_version, kind, operation).path(namespace)
        doc = self._json(operation, "GET", path, query={"labelSelector": label_selector})
        return [dict(i) for i in doc.get("items") or []]

    def delete(self, *, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete an object (background cascade); False when it did not exist."""
        operation = f"delete {kind}/{name}"
        path = self._resource(api_version, kind, operation).path(namespace, name)
        done = self._none_if_missing(
            lambda: self._call(operation, "DELETE", path, body={"propagationPolicy": "Background"})
        )
        return done is not None

    # --- namespaces, secrets, classes ------------------------------------------------------------

    def namespace_ready(self, *, namespace: str) -> bool:
        """True when the namespace exists and is Active (False when missing or Terminating)."""
        ns = self.get(api_version="v1", kind="Namespace", namespace=None, name=namespace)
        return ns is not None and (ns.get("status") or {}).get("phase") == "Active"

    def secret_exists(self, *, namespace: str, name: str) -> bool:
        """True when the Secret exists. Its data is read by the API call but never kept or returned."""
        return self.get(api_version="v1", kind="Secret", namespace=namespace, name=name) is not None

    def ingress_class_exists(self, *, name: str) -> bool:
        """True when the IngressClass exists."""
        return (
            self.get(api_version="networking.k8s.io/v1", kind="IngressClass", namespace=None, name=name)
            is not None
        )

    # --- pods ------------------------------------------------------------------------------------

    def pod_summary(self, *, namespace: str, selector: str) -> PodSummary:
        """Counts and per-pod states of the pods matching a label selector."""
        states = []
        for pod in self.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=selector):
            status = pod.get("status") or {}
            containers = status.get("containerStatuses") or []
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            waiting = next(
                (
                    str((c.get("state") or {}).get("waiting", {}).get("reason", ""))
                    for c in containers
                    if (c.get("state") or {}).get("waiting")
                ),
                "",
            )
            if not waiting and status.get("phase") == "Pending":
                waiting = next(
                    (
                        str(c.get("reason", ""))
                        for c in status.get("conditions") or []
                        if c.get("status") == "False" and c.get("reason")
                    ),
                    "",
                )
            states.append(
                PodState(
                    str(pod["metadata"]["name"]),
                    str(status.get("phase", "Unknown")),
                    ready,
                    sum(int(c.get("restartCount", 0)) for c in containers),
                    waiting,
                )
            )
        return PodSummary(
            total=len(states),
            ready=sum(s.ready for s in states),
            pending=sum(s.phase == "Pending" for s in states),
            crashlooping=sum(s.waiting_reason == "CrashLoopBackOff" for s in states),
            restarts_max=max((s.restarts for s in states), default=0),
            restarts_total=sum(s.restarts for s in states),
            pods=tuple(states),
        )

    def pod_logs(
        self,
        *,
        namespace: str,
        selector: str,
        tail_lines: int = 200,
        limit_bytes: int = 65536,
        max_pods: int = 20,
    ) -> dict[str, str]:
        """The last ``tail_lines`` lines (at most ``limit_bytes`` per pod) of up to ``max_pods`` pods;
        pods with several containers get one ``==> container <==`` section each, within the same bound."""
        out: dict[str, str] = {}
        pods = self.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=selector)[
            :max_pods
        ]
        for pod in pods:
            name = str(pod["metadata"]["name"])
            containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
            parts = []
            for container in containers:
                path = _Resource("v1", "Pod", "pods", True).path(namespace, name, "log")
                data = self._call(
                    f"read logs of pod {name}",
                    "GET",
                    path,
                    query={"container": container, "tailLines": tail_lines, "limitBytes": limit_bytes},
                )
                text = data.decode("utf-8", "replace")
                parts.append(text if len(containers) == 1 else f"==> {container} <==\n{text}")
            out[name] = "".join(parts).encode()[:limit_bytes].decode("utf-8", "ignore")
        return out

    def events(self, *, namespace: str, involved_name: str | None = None) -> Objs:
        """Events in a namespace (about one object when ``involved_name`` is given), oldest first, as
        ``{type, reason, message, count, object, last_seen}``."""
        selector = f"involvedObject.name={involved_name}" if involved_name else None
        path = _Resource("v1", "Event", "events", True).path(namespace)
        doc = self._json("list events", "GET", path, query={"fieldSelector": selector})
        items = [
            {
                "type": e.get("type", ""),
                "reason": e.get("reason", ""),
                "message": e.get("message", ""),
                "count": int(e.get("count") or 1),
                "object": f"{(e.get('involvedObject') or {}).get('kind')}/{(e.get('involvedObject') or {}).get('name')}",
                "last_seen": str(e.get("lastTimestamp") or e.get("eventTime") or ""),
            }
            for e in doc.get("items") or []
        ]
        return sorted(items, key=lambda e: e["last_seen"])

    # --- routing ---------------------------------------------------------------------------------

    def read_ingress(self, *, namespace: str, name: str) -> Obj | None:
        """The Ingress, or None when it does not exist."""
        return self.get(api_version="networking.k8s.io/v1", kind="Ingress", namespace=namespace, name=name)

    def write_ingress(self, *, ingress: Obj, field_manager: str, force: bool = True) -> Obj:
        """Server-side apply an Ingress; returns the stored object."""
        return self.apply(
            manifests=[{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", **ingress}],
            field_manager=field_manager,
            force=force,
        )[0]

    def read_httproute(self, *, namespace: str, name: str) -> Obj | None:
        """The Gateway API HTTPRoute, or None when it does not exist. Raises ``AdapterNotFound`` when
        the cluster has no Gateway API (see :meth:`has_api`)."""
        return self.get(
            api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute", namespace=namespace, name=name
        )

    def write_httproute(self, *, route: Obj, field_manager: str, force: bool = True) -> Obj:
        """Server-side apply an HTTPRoute; returns the stored object."""
        return self.apply(
            manifests=[{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", **route}],
            field_manager=field_manager,
            force=force,
        )[0]

    # --- service proxy ---------------------------------------------------------------------------

    def service_proxy_get(
        self, *, namespace: str, service: str, port: int | str, path: str, timeout: float = 5.0
    ) -> tuple[int, str]:
        """GET ``path`` on a Service through the API server's proxy ("health from inside the cluster").
        Any HTTP answer of the backend comes back as (status, body text); only failures to ask raise,
        and a 401/403 Status from the API server itself raises ``AdapterAuthError``."""
        operation = f"proxy GET {service}:{port}/{path.lstrip('/')}"
        svc = _Resource("v1", "Service", "services", True)
        url = svc.path(namespace, f"{service}:{port}", "proxy") + "/" + path.lstrip("/")
        status, reason, data = self._send(operation, "GET", url, timeout=timeout)
        text = data.decode("utf-8", "replace")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        from_api_server = (
            isinstance(doc, dict) and doc.get("kind") == "Status" and doc.get("apiVersion") == "v1"
        )
        missing_service = from_api_server and (doc.get("details") or {}).get("kind") == "services"
        if from_api_server and (status in (401, 403) or status == 404 and missing_service):
            exc = ApiException(status=status, reason=reason)
            exc.body = text
            raise self._fail(operation, exc) from exc
        return status, text


if TYPE_CHECKING:
    _kube_port: type[KubePort] = Kube  # mypy: Kube implements the kube port
