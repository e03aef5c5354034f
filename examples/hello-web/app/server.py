#!/usr/bin/env python3
"""hello-web: the smallest real workload of the Railiance examples (stdlib only).

Serves ``/`` ("hello"), ``/healthz`` (200 "ok") and ``/metrics`` in the Prometheus text format:
``http_requests_total{track,code}`` and ``http_request_duration_seconds{track}`` (a histogram).
``TRACK`` (stable | canary | local) labels every series so stable and canary can be told apart.

    python3 server.py --port 8080 [--host 0.0.0.0]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACK = os.environ.get("TRACK", "stable")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counters and a latency histogram, rendered in the Prometheus text format 0.0.4."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bucket_counts = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1
            self.count += 1
            self.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[i] += 1

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP http_requests_total HTTP requests served, by track and status code.",
                "# TYPE http_requests_total counter",
            ]
            for code in sorted(self.requests):
                lines.append(f'http_requests_total{{track="{TRACK}",code="{code}"}} {self.requests[code]}')
            lines += [
                "# HELP http_request_duration_seconds HTTP request latency, by track.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for bound, n in zip(BUCKETS, self.bucket_counts):
                lines.append(f'http_request_duration_seconds_bucket{{track="{TRACK}",le="{bound}"}} {n}')
            lines.append(f'http_request_duration_seconds_bucket{{track="{TRACK}",le="+Inf"}} {self.count}')
            lines.append(f'http_request_duration_seconds_sum{{track="{TRACK}"}} {self.total:.6f}')
            lines.append(f'http_request_duration_seconds_count{{track="{TRACK}"}} {self.count}')
            return "\n".join(lines) + "\n"


METRICS = Metrics()


class Handler(BaseHTTPRequestHandler):
    server_version = "hello-web/1"

    def do_GET(self) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            code, body, ctype = 200, b"ok\n", "text/plain; charset=utf-8"
        elif path == "/":
            code, body, ctype = 200, b"hello\n", "text/plain; charset=utf-8"
        elif path == "/metrics":
            code, body, ctype = 200, METRICS.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            code, body, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if path != "/metrics":
            METRICS.observe(code, time.perf_counter() - started)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(f"hello-web listening on {args.host}:{args.port} track={TRACK}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
