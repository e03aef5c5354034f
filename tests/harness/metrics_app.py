"""A metrics test app: synthetic traffic with controllable error rate, latency and saturation.

Exports the naming convention of ``railiance_ledger.adapters.metrics`` with ``prometheus_client``
(its own ``CollectorRegistry``, so several apps can live in one process):

- ``http_requests_total{track, code}`` counter,
- ``http_request_duration_seconds{track}`` histogram,
- ``app_saturation_ratio{track}`` gauge.

A background thread records ``rate`` synthetic requests per second (default 50). Errors are
spread deterministically (an error budget, not dice), so an error rate of 0.2 is exactly one 500
in five requests; latencies are ``latency_ms`` with +/-20 % jitter.

HTTP endpoints (a threaded ``http.server`` on loopback):

- ``GET /metrics``: Prometheus exposition; ``GET /healthz``: ``ok``;
- ``GET /control``: the current state as JSON; ``POST /control`` with a JSON object of any of
  ``error_rate`` (0..1), ``latency_ms`` (>= 0), ``saturation`` (0..1), ``rate`` (req/s >= 0);
- ``GET /`` (any other path): a real request served as the workload would, sleeping the latency
  (capped at 2 s), answering 500 per the error budget, and counted in the metrics like the rest.

In process, use ``MetricsApp.set(...)`` and ``MetricsApp.state()`` instead of the endpoint.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)
TICK_SECONDS = 0.05


@dataclass
class AppState:
    """What the app currently simulates."""

    error_rate: float = 0.0
    latency_ms: float = 20.0
    saturation: float = 0.2
    rate: float = 50.0
    dead_letters: float = 0.0
    """Messages in the app's dead-letter queue (a data-integrity signal, ``app_dead_letters``)."""

    def update(self, changes: dict[str, Any]) -> None:
        """Apply validated changes; raise ``ValueError``/``TypeError`` naming the bad field."""
        for name, value in changes.items():
            if name not in ("error_rate", "latency_ms", "saturation", "rate", "dead_letters"):
                raise ValueError(f"unknown field {name!r}")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number")
            number = float(value)
            if name in ("error_rate", "saturation") and not 0.0 <= number <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
            if number < 0:
                raise ValueError(f"{name} must not be negative")
        for name, value in changes.items():
            setattr(self, name, float(value))


class MetricsApp:
    """One track (``stable`` or ``canary``) of a fake workload, serving metrics on loopback."""

    def __init__(
        self,
        track: str,
        *,
        port: int = 0,
        error_rate: float = 0.0,
        latency_ms: float = 20.0,
        saturation: float = 0.2,
        rate: float = 50.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Prepare the app; nothing listens or runs until ``start()``. ``host`` is the address to
        bind (a pod IP inside the test network namespace; default loopback)."""
        self.track = track
        self.host = host
        self.job: str | None = None  # set by whoever registers it with Prometheus, for selectors
        self._port = port
        self._state = AppState()
        self._state.update(
            {"error_rate": error_rate, "latency_ms": latency_ms, "saturation": saturation, "rate": rate}
        )
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._error_budget = 0.0
        self._stop = threading.Event()
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "http_requests", "HTTP requests served", ["track", "code"], registry=self.registry
        )
        self._duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["track"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._saturation = Gauge(
            "app_saturation_ratio", "Busiest resource, 0..1", ["track"], registry=self.registry
        )
        self._dead_letters = Gauge(
            "app_dead_letters", "Messages in the dead-letter queue", ["track"], registry=self.registry
        )
        self._dead_letters.labels(track=track).set(0.0)
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- control -----------------------------------------------------------------------------------

    def set(self, **changes: float) -> None:
        """Change what the app simulates, e.g. ``set(error_rate=0.3, latency_ms=400)``."""
        with self._lock:
            self._state.update(changes)

    def state(self) -> dict[str, float]:
        """The current simulated state."""
        with self._lock:
            return asdict(self._state)

    @property
    def port(self) -> int:
        """The port it listens on (after ``start()``)."""
        return self._port

    @property
    def address(self) -> str:
        """``<host>:<port>``: the scrape target."""
        return f"{self.host}:{self._port}"

    @property
    def url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.address}"

    # -- traffic -----------------------------------------------------------------------------------

    def _next_request(self) -> tuple[str, float]:
        """The status code and latency (seconds) of the next request, per the current state."""
        with self._lock:
            state = self._state
            self._error_budget += state.error_rate
            if self._error_budget >= 1.0 - 1e-9:
                self._error_budget -= 1.0
                code = "500"
            else:
                code = "200"
            latency = state.latency_ms * (0.8 + 0.4 * self._random.random()) / 1000.0
        return code, latency

    def _record(self, code: str, latency: float) -> None:
        self._requests.labels(track=self.track, code=code).inc()
        self._duration.labels(track=self.track).observe(latency)

    def _traffic(self) -> None:
        owed = 0.0
        last = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            now = time.monotonic()
            with self._lock:
                rate, saturation = self._state.rate, self._state.saturation
                dead_letters = self._state.dead_letters
            self._saturation.labels(track=self.track).set(saturation)
            self._dead_letters.labels(track=self.track).set(dead_letters)
            owed += rate * (now - last)
            last = now
            while owed >= 1.0:
                owed -= 1.0
                self._record(*self._next_request())

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> MetricsApp:
        """Listen on loopback and start the traffic thread."""
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/control":
                    self._send(200, json.dumps(app.state()).encode())
                else:
                    code, latency = app._next_request()
                    time.sleep(min(latency, 2.0))
                    app._record(code, latency)
                    body = json.dumps({"track": app.track, "code": int(code)}).encode()
                    self._send(int(code), body)

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/control":
                    self._send(404, b'{"error": "not found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    changes = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(changes, dict):
                        raise TypeError("body must be a JSON object")
                    app.set(**changes)
                except (ValueError, TypeError) as exc:
                    self._send(400, json.dumps({"error": str(exc)}).encode())
                    return
                self._send(200, json.dumps(app.state()).encode())

        self._server = ThreadingHTTPServer((self.host, self._port), Handler)
        self._server.daemon_threads = True
        self._port = int(self._server.server_address[1])
        # Export every series from the start (zero-valued), as real apps should: "no traffic" then
        # reads as a rate of 0/0, not as a missing series.
        self._requests.labels(track=self.track, code="200")
        self._duration.labels(track=self.track)
        self._saturation.labels(track=self.track).set(self.state()["saturation"])
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, name=f"metrics-app-{self.track}", daemon=True
            ),
            threading.Thread(target=self._traffic, name=f"metrics-traffic-{self.track}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop traffic and the server; idempotent."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []
