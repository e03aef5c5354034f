"""``railiance webhook serve``: the HTTP endpoint the Distribution registry notifies of pushes.

Configure it in the registry's own config (``notifications.endpoints``) with a shared secret in a
header::

    notifications:
      endpoints:
        - name: railiance
          url: http://127.0.0.1:9400/registry/events
          headers:
            Authorization: [Bearer <the secret of RAILIANCE_WEBHOOK_SECRET>]
          timeout: 2s
          threshold: 3
          backoff: 1s

A POST to ``/registry/events`` with the right ``Authorization`` header is parsed
(``domain.registry_events``) and its manifest pushes are stored in the spool (``PushSpool``)
before the answer, so a 200 means "durably received" (the registry retries anything else). A
wrong or missing secret is 401, an oversized or malformed body 400/413; the secret, headers and
bodies are never logged. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import hmac
import logging
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from railiance_ledger.adapters.push_spool import PushNotice, PushSpool
from railiance_ledger.domain.registry_events import MAX_BODY, NotificationError, parse_envelope
from railiance_ledger.errors import InvalidInput, RailianceError

__all__ = ["EVENTS_PATH", "WebhookServer"]

EVENTS_PATH = "/registry/events"
MIN_SECRET = 16
log = logging.getLogger("railiance.webhook")


class WebhookServer:
    """The receiver on ``host:port`` (``port=0``: a free one), storing into ``spool``."""

    def __init__(
        self,
        spool: PushSpool,
        *,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        on_stored: Callable[[list[PushNotice]], None] | None = None,
    ) -> None:
        """``on_stored`` (the fast path) is called, in one worker thread and after the registry has its
        answer, with each request's newly stored notices; its failures are logged (the sensor has them)."""
        if len(secret) < MIN_SECRET:
            raise InvalidInput(
                f"the webhook secret must be at least {MIN_SECRET} characters",
                hint="set RAILIANCE_WEBHOOK_SECRET to a long random value (e.g. openssl rand -hex 32)",
            )
        self.spool = spool
        self._work: queue.Queue[list[PushNotice] | None] = queue.Queue()
        self._on_stored = on_stored
        self._worker: threading.Thread | None = None
        self._expected = {secret.encode(), f"Bearer {secret}".encode()}
        self.received = 0
        self.stored = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "railiance-webhook"

            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines carry nothing secret, but headers could: log nothing raw

            def _answer(self, status: int, text: str) -> None:
                body = (text + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._answer(200, "ok")
                else:
                    self._answer(404, "not found")

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != EVENTS_PATH:
                    self._answer(404, "not found")
                    return
                given = self.headers.get("Authorization", "").encode()
                if not any(hmac.compare_digest(given, want) for want in server._expected):
                    self._answer(401, "unauthorized")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    self._answer(413 if length > MAX_BODY else 400, "bad length")
                    return
                body = self.rfile.read(length)
                try:
                    pushed = parse_envelope(body)
                except NotificationError as exc:
                    self._answer(400, str(exc))
                    return
                try:
                    stored = server.spool.add_new(pushed)
                except RailianceError as exc:
                    log.error("push spool unavailable: %s", exc)
                    self._answer(503, "spool unavailable")  # the registry retries
                    return
                server.received += len(pushed)
                server.stored += len(stored)
                if stored:
                    log.info("stored %d manifest push(es) of %d received", len(stored), len(pushed))
                self._answer(200, f"stored {len(stored)}")
                if stored and server._on_stored is not None:
                    server._work.put(stored)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the registry should POST: ``http://host:port/registry/events``."""
        return f"http://{self.host}:{self.port}{EVENTS_PATH}"

    def _drain(self) -> None:
        while True:
            batch = self._work.get()
            if batch is None:
                return
            try:
                assert self._on_stored is not None
                self._on_stored(batch)
            except Exception as exc:  # noqa: BLE001 - the fast path is best effort; the sensor has the spool
                log.error("fast path failed (%s); the push sensor will pick the push up", type(exc).__name__)

    def _start_worker(self) -> None:
        if self._on_stored is not None and self._worker is None:
            self._worker = threading.Thread(target=self._drain, name="webhook-fast-path", daemon=True)
            self._worker.start()

    def start(self) -> WebhookServer:
        """Serve in a daemon thread."""
        self._start_worker()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="webhook", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._start_worker()
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        if self._worker is not None:
            self._work.put(None)
            self._worker.join(timeout=10)
            self._worker = None
