"""The emulator process: a threaded HTTP server on loopback with bearer-token auth, fault injection,
a service proxy to test-registered backends, a request log, and a kubeconfig pointing at it."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.kube_emulator.behaviour import BehaviourRegistry
from tests.kube_emulator.controller import Controller
from tests.kube_emulator.discovery import GATEWAY_GROUP, Discovery, ResourceType
from tests.kube_emulator.handlers import Api, Request, Response, status_body
from tests.kube_emulator.store import Store

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Fault:
    """One injected fault: requests whose path matches ``pattern`` (and method, if given) are delayed by
    ``latency`` seconds, then answered ``status`` with a Status body, or have their connection dropped."""

    pattern: re.Pattern[str]
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    methods: frozenset[str] | None = None
    times: int | None = None
    hits: int = 0


class Faults:
    """The active faults, first match wins; ``times`` limits how often a fault fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        pattern: str,
        *,
        status: int | None = None,
        latency: float = 0.0,
        drop: bool = False,
        methods: list[str] | None = None,
        times: int | None = None,
    ) -> Fault:
        """Inject a fault for paths matching the regex ``pattern`` (``re.search`` on the path)."""
        fault = Fault(
            re.compile(pattern),
            status,
            latency,
            drop,
            frozenset(m.upper() for m in methods) if methods else None,
            times,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def match(self, method: str, path: str) -> Fault | None:
        """The fault that applies to a request, counting the hit.

        The pattern is tried on the path as sent and percent-decoded, so ``services/web:80/proxy``
        matches the ``services/web%3A80/proxy`` that clients send (the API server decodes it too).
        """
        decoded = unquote(path)
        with self._lock:
            for f in self._faults:
                if (f.pattern.search(path) or f.pattern.search(decoded)) and (
                    f.methods is None or method in f.methods
                ):
                    if f.times is not None and f.hits >= f.times:
                        continue
                    f.hits += 1
                    return f
        return None


def gateway_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object of HTTPRoute (present while the Gateway API is enabled)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"httproutes.{GATEWAY_GROUP}"},
        "spec": {
            "group": GATEWAY_GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": "httproutes",
                "singular": "httproute",
                "kind": "HTTPRoute",
                "listKind": "HTTPRouteList",
                "categories": ["gateway-api"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
        "status": {
            "acceptedNames": {"plural": "httproutes", "kind": "HTTPRoute"},
            "storedVersions": ["v1"],
            "conditions": [
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: headers and body are separate small writes on a kept-alive connection; with Nagle
    # on, the body waits for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        em = self.server.emulator
        url = urlsplit(self.path)
        req = Request(
            self.command,
            url.path,
            dict(parse_qsl(url.query, keep_blank_values=True)),
            {k.lower(): v for k, v in self.headers.items()},
            self._body(),
            url.query,
        )
        fault = em.faults.match(req.method, req.path)
        resp: Response | None = None
        if fault is not None:
            time.sleep(fault.latency)
            if fault.drop:
                em.log(req, 0)
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.status:
                reason = FAULT_REASONS.get(
                    fault.status, "InternalError" if fault.status >= 500 else "BadRequest"
                )
                msg = (
                    "Internal error occurred: injected fault"
                    if fault.status == 500
                    else f"injected fault: {reason}"
                )
                resp = Response.of(
                    fault.status,
                    status_body(
                        fault.status,
                        reason,
                        msg,
                        {"causes": [{"message": "injected fault"}]} if fault.status == 500 else None,
                    ),
                )
        if (
            resp is None
            and em.token
            and req.headers.get("authorization") != f"Bearer {em.token}"
            and req.path not in ("/healthz", "/livez", "/readyz")
        ):
            resp = Response.of(401, status_body(401, "Unauthorized", "Unauthorized"))
        if resp is None:
            resp = em.api.handle(req)
        em.log(req, resp.code)
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.stream is None:
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in resp.stream:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away (closed watch, TLS EOF)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: KubeEmulator
    tls: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are normal (watches, dropped-connection faults); report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread, so a slow client never blocks accept()."""
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1/localhost (openssl CLI), as (cert, key) paths."""
    cert, key = workdir / "server.crt", workdir / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=kube-emulator",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class KubeEmulator:
    """A stateful Kubernetes API server emulator on ``http://127.0.0.1:<port>``.

    Start it with :meth:`start` (or as a context manager); point clients at :attr:`kubeconfig_path`.
    Served over HTTPS with a throw-away certificate by default, because client-go (kubectl, helm) never
    sends a bearer token over plain http; ``tls=False`` serves http (then use ``token=None`` for Go tools).
    """

    def __init__(
        self,
        *,
        token: str | None = "emulator-token",
        host: str = "127.0.0.1",
        port: int = 0,
        workdir: Path | None = None,
        tick: float = 0.05,
        tls: bool = True,
    ) -> None:
        self.token = token
        self.store = Store()
        self.discovery = Discovery()
        self.behaviours = BehaviourRegistry()
        self.faults = Faults()
        self.backends: dict[tuple[str, str, str], str] = {}
        self.request_log: deque[tuple[str, str, int]] = deque(maxlen=5000)
        self.stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self.host, self.port = host, self._server.server_address[1]
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kube-emulator-"))
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.ca_path: Path | None = None
        if tls:
            self.ca_path, key = self_signed_cert(self.workdir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.ca_path, key)
            self._server.tls = ctx
        self.api = Api(
            self.store, self.discovery, self.behaviours, f"{host}:{self.port}", self._proxy, self.stopping
        )
        self.controller = Controller(self.api, self.behaviours, self.stopping, tick)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kube-emulator-http",
            daemon=True,
        )
        self._seed()

    @property
    def url(self) -> str:
        """The server URL, ``http://127.0.0.1:<port>``."""
        return f"{'https' if self.ca_path else 'http'}://{self.host}:{self.port}"

    def start(self) -> Self:
        """Serve and reconcile in background threads; writes the kubeconfig."""
        self.write_kubeconfig(self.kubeconfig_path)
        self._thread.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop serving (open watches end) and the controller."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig with cluster, user and context ``emulator``."""
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_path is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_path.read_bytes()).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "preferences": {},
            "clusters": [{"name": "emulator", "cluster": cluster}],
            "users": [{"name": "emulator", "user": user}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
        }
        path.write_text(json.dumps(doc, indent=2))
        return path

    def log(self, req: Request, code: int) -> None:
        """Record a request (method, path with query, status; 0 for a dropped connection)."""
        self.request_log.append((req.method, req.path + (f"?{req.raw_query}" if req.raw_query else ""), code))

    # --- test controls ---------------------------------------------------------------------------

    def _seed(self) -> None:
        ns = self.resource("namespaces")
        for name in DEFAULT_NAMESPACES:
            self.api.create_internal(
                ns, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        if self.discovery.gateway_api:
            self.api.create_internal(self.resource("customresourcedefinitions"), gateway_crd())

    def reset(self) -> None:
        """Back to a fresh cluster: default namespaces only, no behaviours, faults or backends,
        Gateway API enabled, empty request log."""
        with self.store.lock:
            self.store.clear()
            self.discovery.gateway_api = True
            self._seed()
        self.behaviours.clear()
        self.faults.clear()
        self.backends.clear()
        self.request_log.clear()
        self.controller.forget()

    def set_gateway_api(self, enabled: bool) -> None:
        """Install or remove the Gateway API (HTTPRoute CRD and its group in discovery)."""
        crds = self.resource("customresourcedefinitions")
        with self.store.lock:
            if not enabled:
                routes = self.resource("httproutes")
                for item in self.store.list(routes)[0]:
                    self.store.remove(routes, item["metadata"]["namespace"], item["metadata"]["name"])
                self.store.remove(crds, "", f"httproutes.{GATEWAY_GROUP}")
            self.discovery.gateway_api = enabled
            if enabled and self.store.get(crds, "", f"httproutes.{GATEWAY_GROUP}") is None:
                self.api.create_internal(crds, gateway_crd())

    def register_service_backend(self, namespace: str, name: str, port: int | str, url: str) -> None:
        """Route ``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/...`` to ``url``."""
        self.backends[(namespace, name, str(port))] = url

    def resource(self, plural: str, group: str | None = None) -> ResourceType:
        """The served resource type with this plural (and group, when ambiguous)."""
        for t in self.discovery.types():
            if t.plural == plural and (group is None or t.group == group):
                return t
        raise KeyError(plural)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A stored object (for assertions), or None."""
        return self.store.get(self.resource(plural), namespace, name)

    def list(
        self, plural: str, namespace: str | None = None, labels: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored objects of a type (for assertions)."""
        return self.store.list(self.resource(plural), namespace, labels)[0]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object directly (defaults and validation apply, no request)."""
        rt = self.discovery.by_kind(obj["apiVersion"], obj["kind"])
        if rt is None:
            raise KeyError(f"{obj['apiVersion']} {obj['kind']}")
        return self.api.create_internal(rt, obj)

    def paths(self) -> list[str]:
        """Request paths seen so far, with query strings (to find out what a tool asks for)."""
        return [f"{m} {p} {c}" for m, p, c in self.request_log]

    def _proxy(self, req: Request, namespace: str, name: str, port: str, rest: str) -> Response:
        url = self.backends.get((namespace, name, port))
        if url is None and not port:
            url = next((u for (ns, n, _), u in self.backends.items() if (ns, n) == (namespace, name)), None)
        if url is None:
            return Response.of(
                503, status_body(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
            )
        target = url.rstrip("/") + "/" + rest + (f"?{req.raw_query}" if req.raw_query else "")
        headers = {"Content-Type": req.headers["content-type"]} if "content-type" in req.headers else {}
        outgoing = urllib.request.Request(target, data=req.body or None, method=req.method, headers=headers)
        try:
            with urllib.request.urlopen(outgoing, timeout=30) as r:
                return Response(r.status, r.read(), r.headers.get("Content-Type", "text/plain"))
        except urllib.error.HTTPError as err:
            return Response(err.code, err.read(), err.headers.get("Content-Type", "text/plain"))
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            return Response.of(
                503, status_body(503, "ServiceUnavailable", f"error trying to reach service: {reason}")
            )
