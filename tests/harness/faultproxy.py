"""A fault-injecting HTTPS proxy in front of the kube-apiserver, with a small HTTP control endpoint.

``FaultProxy(upstream, ca_path=, cert_path=, key_path=)`` listens with TLS on 127.0.0.1 (the
apiserver's serving certificate, so the same CA verifies it) and forwards every request to the
apiserver, headers and body as they came: bearer tokens pass through (client certificates cannot
pass a TLS-terminating proxy, so point token kubeconfigs at it). Responses stream back as they
arrive, so watches work. Requests that ask to upgrade the connection (exec, attach, port-forward)
are answered 501.

Faults are rules matched in order against the request path (``re.search`` on the path without the
query string) and method; the first matching rule applies:

- ``latency`` seconds of delay before anything else happens;
- ``status``: answer with that code and a Kubernetes ``Status`` body instead of forwarding;
- ``drop``: close the connection without answering (the client sees EOF);
- ``times``: apply to that many matching requests, then the rule retires (default: forever);
- ``query``: a regex the raw query string must match as well (e.g. ``fieldManager=helm``);
- ``hold`` (with ``latency``): hold the request that long, then drop it, never forwarding it: a
  deterministic pause point (the rule's ``hits`` shows the request arrived; a test SIGKILLs the
  client then).

Control endpoint (plain HTTP on loopback, ``control_url``), JSON in and out:

    GET    /faults            the rules
    POST   /faults            {"path": REGEX, "methods": ["GET"], "status": 500, "latency": 0.5,
                               "drop": false, "times": 3, "message": "...", "query": REGEX,
                               "hold": false} -> 201 the rule with "id"
    DELETE /faults            remove all rules;  DELETE /faults/<id>  remove one
    GET    /requests          the last 2000 requests: {"method","path","status","fault","time"}
    DELETE /requests          forget them
    GET    /healthz           "ok"

``FaultControl(control_url)`` is the same API as Python calls for out-of-process users.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

__all__ = ["Fault", "FaultControl", "FaultProxy"]

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Fault:
    """One rule. ``methods`` empty means every method; ``times`` None means forever."""

    path: str
    methods: list[str] = field(default_factory=list)
    status: int | None = None
    latency: float = 0.0
    drop: bool = False
    times: int | None = None
    message: str = ""
    query: str = ""
    """A regex the raw query string must match too (empty: any query)."""
    hold: bool = False
    """With ``latency``: the request is held that long and then dropped, never forwarded (a
    deterministic pause point: ``hits`` tells the test the request arrived)."""
    id: int = 0
    hits: int = 0

    def matches(self, method: str, path: str, query: str = "") -> bool:
        """True when this rule applies to ``method`` ``path`` (and ``query``)."""
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        if self.query and re.search(self.query, query) is None:
            return False
        return re.search(self.path, path) is not None


def status_body(code: int, message: str) -> bytes:
    """A ``Status`` object as the apiserver shapes it."""
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message or f"injected fault: HTTP {code}",
            "reason": REASONS.get(code, "InternalError" if code >= 500 else "BadRequest"),
            "code": code,
        }
    ).encode()


class _Dropped(Exception):
    """The fault says: close without answering."""


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext):
        self.ssl_context = ctx
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the worker thread, so a slow client never blocks accept().
        try:
            request.settimeout(30)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer
    _upstream: http.client.HTTPSConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        if self._upstream is not None:
            self._upstream.close()

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return None

    def _send_simple(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        proxy = self.server.proxy
        parts = urlsplit(self.path)
        path = parts.path
        body = self._read_body()
        fault = proxy._match(self.command, path, parts.query)
        record: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "fault": fault.id if fault else None,
            "time": time.time(),
        }
        try:
            if fault is not None:
                if fault.latency:
                    time.sleep(fault.latency)
                if fault.drop or fault.hold:
                    record["status"] = "dropped"
                    raise _Dropped
                if fault.status is not None:
                    record["status"] = fault.status
                    self._send_simple(fault.status, status_body(fault.status, fault.message))
                    return
            if "upgrade" in self.headers.get("Connection", "").lower():
                record["status"] = 501
                self._send_simple(501, status_body(501, "the fault proxy does not tunnel upgrades"))
                return
            record["status"] = self._forward(body)
        except _Dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        finally:
            proxy._record(record)

    def _connect(self) -> http.client.HTTPSConnection:
        proxy = self.server.proxy
        if self._upstream is None:
            self._upstream = http.client.HTTPSConnection(
                proxy.upstream_host, proxy.upstream_port, context=proxy.upstream_context, timeout=None
            )
        return self._upstream

    def _forward(self, body: bytes | None) -> int:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
            headers.pop("Transfer-Encoding", None)
        for attempt in (0, 1):
            conn = self._connect()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._upstream = None
                if attempt:
                    self._send_simple(502, status_body(502, "the fault proxy cannot reach the apiserver"))
                    return 502
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                continue
            self.send_header(key, value)
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            resp.read()
            return resp.status
        if length is not None and not resp.chunked:
            self.send_header("Content-Length", length)
            self.end_headers()
            remaining = int(length)
            while remaining > 0:
                data = resp.read(min(remaining, 65536))
                if not data:
                    break
                remaining -= len(data)
                self.wfile.write(data)
            return resp.status
        # Stream (watch, or a body of unknown length) as chunks, flushing each.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
            conn.close()
            self._upstream = None
        return resp.status

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy


class _ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, payload: Any) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        proxy: FaultProxy = self.server.proxy
        if self.path == "/faults":
            self._reply(200, [asdict(f) for f in proxy.faults()])
        elif self.path == "/requests":
            self._reply(200, proxy.requests())
        elif self.path == "/healthz":
            self._reply(200, "ok")
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        proxy: FaultProxy = self.server.proxy
        if self.path != "/faults":
            self._reply(404, {"error": "not found"})
            return
        try:
            spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            fault = proxy.add(
                str(spec["path"]),
                methods=list(spec.get("methods") or []),
                status=spec.get("status"),
                latency=float(spec.get("latency") or 0.0),
                drop=bool(spec.get("drop", False)),
                times=spec.get("times"),
                message=str(spec.get("message") or ""),
                query=str(spec.get("query") or ""),
                hold=bool(spec.get("hold", False)),
            )
        except (KeyError, TypeError, ValueError, re.error) as exc:
            self._reply(400, {"error": f"bad fault: {exc}"})
            return
        self._reply(201, asdict(fault))

    def do_DELETE(self) -> None:
        proxy: FaultProxy = self.server.proxy
        if self.path == "/faults":
            proxy.clear()
            self._reply(200, [])
        elif self.path.startswith("/faults/"):
            try:
                found = proxy.remove(int(self.path.rsplit("/", 1)[1]))
            except ValueError:
                found = False
            self._reply(200 if found else 404, {"removed": found})
        elif self.path == "/requests":
            proxy.clear_requests()
            self._reply(200, [])
        else:
            self._reply(404, {"error": "not found"})


class FaultProxy:
    """The proxy and its control endpoint, each on a loopback port; ``stop()`` closes both."""

    def __init__(
        self,
        upstream: str,
        *,
        ca_path: Path,
        cert_path: Path,
        key_path: Path,
        port: int = 0,
        control_port: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 443
        self.upstream_context = ssl.create_default_context(cafile=str(ca_path))
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._requests: deque[dict[str, Any]] = deque(maxlen=2000)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_path), str(key_path))
        ctx.set_alpn_protocols(["http/1.1"])
        self._server = _TLSServer(("127.0.0.1", port), _ProxyHandler, ctx)
        self._server.proxy = self
        self._control = ThreadingHTTPServer(("127.0.0.1", control_port), _ControlHandler)
        self._control.daemon_threads = True
        self._control.proxy = self  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self.control_port = int(self._control.server_address[1])
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True),
            threading.Thread(target=self._control.serve_forever, name="fault-proxy-control", daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def url(self) -> str:
        """The proxied apiserver URL (https)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        """The control endpoint (http)."""
        return f"http://127.0.0.1:{self.control_port}"

    def add(
        self,
        path: str,
        *,
        methods: list[str] | None = None,
        status: int | None = None,
        latency: float = 0.0,
        drop: bool = False,
        times: int | None = None,
        message: str = "",
        query: str = "",
        hold: bool = False,
    ) -> Fault:
        """Add a rule (see the module docstring) and return it with its ``id``."""
        re.compile(path)
        re.compile(query)
        if status is None and not drop and not latency:
            raise ValueError("a fault needs a status, latency or drop")
        fault = Fault(
            path=path,
            methods=[m.upper() for m in (methods or [])],
            status=int(status) if status is not None else None,
            latency=latency,
            drop=drop,
            times=int(times) if times is not None else None,
            message=message,
            query=query,
            hold=hold,
        )
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        """Remove one rule; False when there was none with that id."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[Fault]:
        """A copy of the rules in force."""
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def requests(self) -> list[dict[str, Any]]:
        """The recent requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def _match(self, method: str, path: str, query: str = "") -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, query):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self._faults.remove(fault)
                    return Fault(**asdict(fault))
        return None

    def _record(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(record)

    def stop(self) -> None:
        """Stop both servers."""
        for server in (self._server, self._control):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultControl:
    """The control endpoint over HTTP, for a test in another process."""

    def __init__(self, control_url: str, *, timeout: float = 5.0) -> None:
        self._http = httpx.Client(base_url=control_url, timeout=timeout)

    def add(self, path: str, **spec: Any) -> dict[str, Any]:
        """POST /faults; returns the rule with its id."""
        resp = self._http.post("/faults", json={"path": path, **spec})
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def clear(self) -> None:
        """DELETE /faults."""
        self._http.delete("/faults").raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        """GET /faults."""
        result: list[dict[str, Any]] = self._http.get("/faults").json()
        return result

    def requests(self) -> list[dict[str, Any]]:
        """GET /requests."""
        result: list[dict[str, Any]] = self._http.get("/requests").json()
        return result

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()
