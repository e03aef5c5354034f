"""The test gateway: real HTTP routed by the Ingress and HTTPRoute objects in the API server.

``TestGateway(api)`` listens on 127.0.0.1 and, every ``refresh`` seconds, reads every HTTPRoute
(``gateway.networking.k8s.io/v1``), Ingress (``networking.k8s.io/v1``), Service and EndpointSlice
from the API server. A request is routed by its ``Host`` header and path:

- HTTPRoute: ``hostnames``; ``rules[].matches`` on path (``Exact``, ``PathPrefix``,
  ``RegularExpression``), headers (``Exact``, ``RegularExpression``), ``method`` and
  ``queryParams`` (``Exact``); the most specific match wins (exact path, then the longest path, then
  the most header matches, then the oldest route), as the Gateway API orders them;
  ``backendRefs`` by ``weight`` (default 1, 0 never) in a smooth weighted round-robin, so a weight
  of 10 in 100 is exactly every tenth request; ``RequestMirror`` filters send a copy (the answer
  is dropped). ``parentRefs`` are not checked: this gateway serves every route.
- Ingress: ``rules[].host`` and ``http.paths`` (``Exact``, ``Prefix``, ``ImplementationSpecific``
  as prefix; longest wins), ``defaultBackend``; ingress-nginx canary annotations on a second
  Ingress for the same host and path (``nginx.ingress.kubernetes.io/canary: "true"``):
  ``canary-by-header`` (``always``/``never`` or ``canary-by-header-value``), ``canary-by-cookie``,
  ``canary-weight`` (of ``canary-weight-total``, default 100), in that order of precedence.
- A backend ``Service`` port resolves to its ``targetPort`` on the *ready* endpoints of the
  Service's EndpointSlices, round-robin; no ready endpoint answers 503, no route 404.

Every answer carries ``X-Test-Gateway-Backend: <namespace>/<service> <ip>:<port>``, and
``stats()`` counts requests per backend Service, so a test measures the traffic split.
Connections go only to pod IPs, which live in the run's test network namespace.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

NGINX = "nginx.ingress.kubernetes.io/"
BACKEND_HEADER = "X-Test-Gateway-Backend"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class Backend:
    """A Service port a route sends to, with its weight."""

    namespace: str
    service: str
    port: int | str
    weight: int = 1

    @property
    def key(self) -> str:
        """``namespace/service``."""
        return f"{self.namespace}/{self.service}"


@dataclass
class Route:
    """One candidate for a request: where it came from, how specific it is, where it sends."""

    source: str
    specificity: tuple[int, int, int, str]
    backends: list[Backend]
    mirrors: list[Backend] = field(default_factory=list)


class _WRR:
    """Smooth weighted round-robin (nginx's): exact proportions over every sum-of-weights requests."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}
        self.lock = threading.Lock()

    def pick(self, route_key: str, backends: list[Backend]) -> Backend | None:
        live = [b for b in backends if b.weight > 0]
        if not live:
            return None
        with self.lock:
            total = sum(b.weight for b in live)
            best: Backend | None = None
            best_value = 0
            for b in live:
                k = f"{route_key}|{b.key}:{b.port}"
                self.current[k] = self.current.get(k, 0) + b.weight
                if best is None or self.current[k] > best_value:
                    best, best_value = b, self.current[k]
            assert best is not None
            self.current[f"{route_key}|{best.key}:{best.port}"] -= total
            return best


def _path_match(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return re.fullmatch(value, path) is not None
    value = value.rstrip("/") or "/"
    return value == "/" or path == value or path.startswith(value + "/")


class TestGateway:
    """See the module docstring. ``url`` is ``http://127.0.0.1:<port>``; ``stop()`` ends it."""

    __test__ = False

    def __init__(
        self, api: httpx.Client, *, port: int = 0, refresh: float = 0.5, namespace: str | None = None
    ):
        self._api = api
        self._refresh = refresh
        self._namespace = namespace
        self._lock = threading.Lock()
        self._routes: list[dict[str, Any]] = []
        self._ingresses: list[dict[str, Any]] = []
        self._services: dict[str, dict[str, Any]] = {}
        self._slices: dict[str, list[dict[str, Any]]] = {}
        self._wrr = _WRR()
        self._rr = itertools.count()
        self._stats: Counter[str] = Counter()
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._upstream = httpx.Client(timeout=10.0)
        self.errors: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                gateway._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="test-gateway", daemon=True),
            threading.Thread(target=self._poll, name="test-gateway-poll", daemon=True),
        ]

    @property
    def url(self) -> str:
        """Where to send requests (set the ``Host`` header to pick a route's host)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TestGateway:
        """Load the objects once, then serve and keep refreshing."""
        self.reload()
        for t in self._threads:
            t.start()
        return self

    def stats(self) -> dict[str, int]:
        """Requests answered per backend ``namespace/service`` since the last ``reset_stats()``."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        """Forget the counts."""
        with self._lock:
            self._stats.clear()

    # -- objects -------------------------------------------------------------------------------------

    def _list(self, path: str) -> list[dict[str, Any]]:
        resp = self._api.get(path)
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        items: list[dict[str, Any]] = resp.json().get("items", [])
        if self._namespace:
            items = [i for i in items if i["metadata"].get("namespace") == self._namespace]
        return items

    def reload(self) -> None:
        """Read routes, ingresses, services and endpoint slices now."""
        routes = self._list("/apis/gateway.networking.k8s.io/v1/httproutes")
        ingresses = self._list("/apis/networking.k8s.io/v1/ingresses")
        services = {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in self._list("/api/v1/services")
        }
        slices: dict[str, list[dict[str, Any]]] = {}
        for sl in self._list("/apis/discovery.k8s.io/v1/endpointslices"):
            svc = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            if svc:
                slices.setdefault(f"{sl['metadata']['namespace']}/{svc}", []).append(sl)
        with self._lock:
            self._routes, self._ingresses, self._services, self._slices = routes, ingresses, services, slices
        self._loaded.set()

    def _poll(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self.reload()
            except (httpx.HTTPError, ValueError) as exc:
                self.errors.append(repr(exc))
                del self.errors[:-20]

    # -- routing -------------------------------------------------------------------------------------

    def _httproute_candidates(
        self, host: str, method: str, path: str, headers: Any, query: dict[str, list[str]]
    ) -> list[Route]:
        out: list[Route] = []
        for route in self._routes:
            meta, spec = route["metadata"], route.get("spec") or {}
            hostnames = spec.get("hostnames") or []
            if hostnames and not any(
                host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in hostnames
            ):
                continue
            for r_index, rule in enumerate(spec.get("rules") or []):
                matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
                for match in matches:
                    pm = match.get("path") or {"type": "PathPrefix", "value": "/"}
                    if not _path_match(pm.get("type", "PathPrefix"), pm.get("value", "/"), path):
                        continue
                    if match.get("method") and match["method"] != method:
                        continue
                    ok = True
                    for hm in match.get("headers") or []:
                        got = headers.get(hm["name"])
                        if got is None:
                            ok = False
                        elif hm.get("type", "Exact") == "RegularExpression":
                            ok = ok and re.fullmatch(hm["value"], got) is not None
                        else:
                            ok = ok and got == hm["value"]
                    for qm in match.get("queryParams") or []:
                        ok = ok and qm["value"] in query.get(qm["name"], [])
                    if not ok:
                        continue
                    ns = meta["namespace"]
                    backends = [
                        Backend(b.get("namespace", ns), b["name"], b.get("port", 80), int(b.get("weight", 1)))
                        for b in rule.get("backendRefs") or []
                        if b.get("kind", "Service") == "Service"
                    ]
                    mirrors = [
                        Backend(
                            f["requestMirror"]["backendRef"].get("namespace", ns),
                            f["requestMirror"]["backendRef"]["name"],
                            f["requestMirror"]["backendRef"].get("port", 80),
                        )
                        for f in rule.get("filters") or []
                        if f.get("type") == "RequestMirror"
                    ]
                    specificity = (
                        1 if pm.get("type") == "Exact" else 0,
                        len(pm.get("value", "/")),
                        len(match.get("headers") or []) + (1 if match.get("method") else 0),
                        meta.get("creationTimestamp", ""),
                    )
                    out.append(
                        Route(f"httproute/{ns}/{meta['name']}#{r_index}", specificity, backends, mirrors)
                    )
        return out

    def _ingress_candidates(self, host: str, path: str, headers: Any) -> list[Route]:
        main: dict[tuple[str, str, str], tuple[Route, str]] = {}
        canaries: dict[tuple[str, str, str], list[tuple[dict[str, str], Backend]]] = {}
        for ing in self._ingresses:
            meta, spec = ing["metadata"], ing.get("spec") or {}
            ns = meta["namespace"]
            ann = meta.get("annotations") or {}
            is_canary = ann.get(NGINX + "canary") == "true"
            entries: list[tuple[str, str, str, dict[str, Any]]] = []
            for rule in spec.get("rules") or []:
                if rule.get("host") and rule["host"] != host:
                    continue
                for p in (rule.get("http") or {}).get("paths") or []:
                    entries.append(
                        (rule.get("host", ""), p.get("path", "/"), p.get("pathType", "Prefix"), p["backend"])
                    )
            if spec.get("defaultBackend"):
                entries.append(("", "/", "Prefix", spec["defaultBackend"]))
            for rule_host, p_path, p_type, backend in entries:
                if not _path_match("Exact" if p_type == "Exact" else "PathPrefix", p_path, path):
                    continue
                svc = backend.get("service") or {}
                port = (svc.get("port") or {}).get("number") or (svc.get("port") or {}).get("name") or 80
                b = Backend(ns, svc.get("name", ""), port)
                key = (rule_host, p_path, p_type)
                if is_canary:
                    canaries.setdefault(key, []).append((ann, b))
                else:
                    spec_t = (
                        1 if p_type == "Exact" else 0,
                        len(p_path),
                        0,
                        meta.get("creationTimestamp", ""),
                    )
                    main[key] = (Route(f"ingress/{ns}/{meta['name']}", spec_t, [b]), ns)
        out: list[Route] = []
        cookies = SimpleCookie(headers.get("Cookie") or "")
        for key, (route, _ns) in main.items():
            for ann, canary in canaries.get(key, []):
                header = ann.get(NGINX + "canary-by-header")
                if header and headers.get(header) is not None:
                    value = headers.get(header)
                    wanted = ann.get(NGINX + "canary-by-header-value")
                    if (wanted and value == wanted) or (not wanted and value == "always"):
                        route = Route(route.source + "+canary-header", route.specificity, [canary])
                        break
                    if not wanted and value == "never":
                        break
                cookie = ann.get(NGINX + "canary-by-cookie")
                if cookie and cookie in cookies:
                    if cookies[cookie].value == "always":
                        route = Route(route.source + "+canary-cookie", route.specificity, [canary])
                        break
                    if cookies[cookie].value == "never":
                        break
                weight = int(ann.get(NGINX + "canary-weight") or 0)
                if weight:
                    total = int(ann.get(NGINX + "canary-weight-total") or 100)
                    stable = route.backends[0]
                    route = Route(
                        route.source + "+canary-weight",
                        route.specificity,
                        [
                            Backend(stable.namespace, stable.service, stable.port, max(total - weight, 0)),
                            Backend(canary.namespace, canary.service, canary.port, weight),
                        ],
                    )
                    break
            out.append(route)
        return out

    def route(
        self, host: str, method: str, path: str, headers: Any, query: dict[str, list[str]]
    ) -> Route | None:
        """The route a request takes (HTTPRoutes before Ingresses), or None."""
        with self._lock:
            candidates = self._httproute_candidates(host, method, path, headers, query)
            if not candidates:
                candidates = self._ingress_candidates(host, path, headers)
        if not candidates:
            return None
        # most specific first; among equals the oldest (smallest timestamp) wins
        candidates.sort(
            key=lambda r: (-r.specificity[0], -r.specificity[1], -r.specificity[2], r.specificity[3])
        )
        return candidates[0]

    def endpoints(self, backend: Backend) -> list[str]:
        """``ip:port`` of the ready endpoints behind ``backend`` (its Service port's target)."""
        with self._lock:
            svc = self._services.get(backend.key)
            slices = self._slices.get(backend.key, [])
        if svc is None:
            return []
        port_name: str | None = None
        for p in svc["spec"].get("ports") or []:
            if p.get("port") == backend.port or p.get("name") == backend.port:
                port_name = p.get("name", "")
                break
        if port_name is None:
            return []
        out: list[str] = []
        for sl in slices:
            ports = [p for p in sl.get("ports") or [] if (p.get("name") or "") == port_name]
            if not ports:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready"):
                    out.extend(f"{addr}:{ports[0]['port']}" for addr in ep.get("addresses") or [])
        return sorted(out)

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        host = (handler.headers.get("Host") or "").split(":")[0]
        body = (
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            if handler.headers.get("Content-Length")
            else b""
        )
        route = self.route(host, handler.command, parts.path or "/", handler.headers, parse_qs(parts.query))
        if route is None:
            self._reply(handler, 404, b"no route\n", "")
            return
        backend = self._wrr.pick(route.source, route.backends)
        if backend is None:
            self._reply(handler, 503, b"no backend with weight\n", "")
            return
        eps = self.endpoints(backend)
        if not eps:
            self._reply(handler, 503, f"no ready endpoints for {backend.key}\n".encode(), backend.key)
            return
        target = eps[next(self._rr) % len(eps)]
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = handler.headers.get("Host") or host
        for mirror in route.mirrors:
            mirror_eps = self.endpoints(mirror)
            if mirror_eps:
                threading.Thread(
                    target=self._mirror,
                    args=(handler.command, f"http://{mirror_eps[0]}{handler.path}", headers, body),
                    daemon=True,
                ).start()
        try:
            resp = self._upstream.request(
                handler.command, f"http://{target}{handler.path}", headers=headers, content=body
            )
        except httpx.HTTPError as exc:
            self._reply(handler, 502, f"backend {target} failed: {exc}\n".encode(), f"{backend.key} {target}")
            return
        with self._lock:
            self._stats[backend.key] += 1
        handler.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding":
                handler.send_header(k, v)
        handler.send_header(BACKEND_HEADER, f"{backend.key} {target}")
        handler.send_header("Content-Length", str(len(resp.content)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(resp.content)

    def _mirror(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        try:
            self._upstream.request(method, url, headers=headers, content=body)
        except httpx.HTTPError:
            pass

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, body: bytes, backend: str) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        if backend:
            handler.send_header(BACKEND_HEADER, backend)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def stop(self) -> None:
        """Stop serving and polling."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)
        self._upstream.close()
