"""Real processes behind kwok's pods: the "container runtime" of the test network.

Two halves:

- ``python -m tests.harness.podhost --listen IP:PORT`` runs *inside* the test network namespace
  (``ip netns exec railiance-<slot> ...``). It serves a small control API and, per pod, one
  ``MetricsApp`` bound to the pod's IP on each of its container ports:

      PUT    /pods/<pod-ip>   {"ports": [8080], "track": "canary", "name": "ns/pod",
                               "error_rate": 0, "latency_ms": 20, "saturation": 0.2, "rate": 0}
      DELETE /pods/<pod-ip>
      GET    /pods            {"<pod-ip>": {"name":..., "ports": [...], "track": ...}, ...}

- ``PodSync`` runs on the host next to the control plane: every ``interval`` it lists the pods,
  and makes the pod host serve exactly the pods whose first container is running (kwok set
  ``state.running``) and that declare a ``containerPort``, at their ``status.podIP``. So a pod
  that is Ready answers, a crash-looping pod answers only between crashes, a deleted pod stops.
  The app's settings come from pod annotations ``kwok.railiance.dev/track`` (else the pod label
  ``track``, else ``stable``), ``kwok.railiance.dev/error-rate``, ``.../latency-ms``,
  ``.../saturation`` and ``.../rate`` (synthetic requests per second, default 0: only real
  requests are counted). ``POST http://<pod-ip>:<port>/control`` changes a running app.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

ANN = "kwok.railiance.dev/"
SETTINGS = {
    "error-rate": "error_rate",
    "latency-ms": "latency_ms",
    "saturation": "saturation",
    "rate": "rate",
}


# --------------------------------------------------------------------------------------------------
# Inside the namespace


class _Host:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pods: dict[str, dict[str, Any]] = {}  # ip -> {"spec": ..., "apps": [MetricsApp]}

    def put(self, ip: str, spec: dict[str, Any]) -> None:
        from tests.harness.metrics_app import MetricsApp

        self.delete(ip)
        apps = []
        try:
            for port in spec.get("ports") or []:
                app = MetricsApp(
                    str(spec.get("track") or "stable"),
                    host=ip,
                    port=int(port),
                    error_rate=float(spec.get("error_rate", 0.0)),
                    latency_ms=float(spec.get("latency_ms", 5.0)),
                    saturation=float(spec.get("saturation", 0.2)),
                    rate=float(spec.get("rate", 0.0)),
                ).start()
                apps.append(app)
        except Exception:
            for app in apps:
                app.stop()
            raise
        with self.lock:
            self.pods[ip] = {"spec": spec, "apps": apps}

    def delete(self, ip: str) -> bool:
        with self.lock:
            entry = self.pods.pop(ip, None)
        for app in entry["apps"] if entry else []:
            app.stop()
        return entry is not None

    def listing(self) -> dict[str, Any]:
        with self.lock:
            return {ip: e["spec"] for ip, e in self.pods.items()}


def serve(listen: str) -> None:
    """Run the pod host's control API on ``listen`` (``IP:PORT``) until SIGTERM."""
    host = _Host()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, code: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/pods":
                self._reply(200, host.listing())
            elif self.path == "/healthz":
                self._reply(200, "ok")
            else:
                self._reply(404, {"error": "not found"})

        def do_PUT(self) -> None:
            if not self.path.startswith("/pods/"):
                self._reply(404, {"error": "not found"})
                return
            spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            try:
                host.put(self.path.rsplit("/", 1)[1], spec)
            except (OSError, ValueError, TypeError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, spec)

        def do_DELETE(self) -> None:
            if not self.path.startswith("/pods/"):
                self._reply(404, {"error": "not found"})
                return
            self._reply(200, {"removed": host.delete(self.path.rsplit("/", 1)[1])})

    ip, port = listen.rsplit(":", 1)
    server = ThreadingHTTPServer((ip, int(port)), Handler)
    server.daemon_threads = True
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"podhost ready http://{listen}", flush=True)
    server.serve_forever()
    for pod_ip in list(host.listing()):
        host.delete(pod_ip)


# --------------------------------------------------------------------------------------------------
# On the host


def desired(pod: dict[str, Any]) -> dict[str, Any] | None:
    """What the pod host should run for ``pod``, or None (not running, no ports, no IP)."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    statuses = status.get("containerStatuses") or []
    if not ip or status.get("phase") != "Running" or not statuses:
        return None
    if "running" not in (statuses[0].get("state") or {}):
        return None
    if pod["metadata"].get("deletionTimestamp"):
        return None
    ports = sorted(
        {
            int(p["containerPort"])
            for c in pod["spec"].get("containers", [])
            for p in c.get("ports") or []
            if p.get("protocol", "TCP") == "TCP"
        }
    )
    if not ports:
        return None
    meta = pod["metadata"]
    ann = meta.get("annotations") or {}
    spec: dict[str, Any] = {
        "ports": ports,
        "name": f"{meta['namespace']}/{meta['name']}",
        "uid": meta["uid"],
        "track": ann.get(ANN + "track") or (meta.get("labels") or {}).get("track") or "stable",
    }
    for key, field in SETTINGS.items():
        if ANN + key in ann:
            try:
                spec[field] = float(ann[ANN + key])
            except ValueError:
                pass
    return spec


class PodSync:
    """Keeps the pod host serving exactly the running pods (see the module docstring)."""

    def __init__(self, api: httpx.Client, podhost_url: str, *, interval: float = 0.25) -> None:
        self._api = api
        self._host = httpx.Client(base_url=podhost_url, timeout=5.0)
        self._interval = interval
        self._serving: dict[str, dict[str, Any]] = {}  # ip -> spec
        self._stop = threading.Event()
        self._synced = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="pod-sync", daemon=True)

    def start(self) -> PodSync:
        """Start the loop."""
        self._thread.start()
        return self

    def serving(self) -> dict[str, dict[str, Any]]:
        """Pod IP -> what is served there, as of the last pass."""
        return dict(self._serving)

    def sync_once(self) -> None:
        """One pass: list pods, start what is missing, stop what is gone."""
        items = self._api.get("/api/v1/pods").json().get("items", [])
        want: dict[str, dict[str, Any]] = {}
        for pod in items:
            spec = desired(pod)
            if spec is not None:
                want[pod["status"]["podIP"]] = spec
        for ip in list(self._serving):
            if ip not in want or want[ip] != self._serving[ip]:
                self._host.delete(f"/pods/{ip}")
                del self._serving[ip]
        for ip, spec in want.items():
            if ip not in self._serving:
                resp = self._host.put(f"/pods/{ip}", json=spec)
                if resp.status_code == 200:
                    self._serving[ip] = spec
                else:
                    self.errors.append(f"{spec['name']} at {ip}: {resp.text}")
                    del self.errors[:-50]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
                self._synced.set()
            except (httpx.HTTPError, ValueError) as exc:
                self.errors.append(repr(exc))
                del self.errors[:-50]
            self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stop the loop (the pod host process is stopped by its owner)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._host.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.podhost --listen IP:PORT``."""
    parser = argparse.ArgumentParser(prog="python -m tests.harness.podhost")
    parser.add_argument("--listen", required=True, help="IP:PORT for the control API")
    args = parser.parse_args(argv)
    serve(args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
