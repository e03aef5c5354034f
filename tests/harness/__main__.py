"""``python -m tests.harness NAME [--port N]``: run one test server on loopback until killed.

Prints one line ``NAME ready URL`` (then indented detail lines) once it serves, and stops every
child process on SIGTERM or SIGINT. Used by ``.ci/run``, the demo and by hand::

    python -m tests.harness registry --port 5000
    python -m tests.harness prometheus --port 9090

To add a server, write ``def _start_x(port: int, workdir: Path) -> Service`` and add one line to
``SERVERS``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType


@dataclass
class Service:
    """A running server: its URL, extra lines worth printing, and how to stop it."""

    url: str
    stop: Callable[[], None]
    details: list[str] = field(default_factory=list)


def _start_registry(port: int, workdir: Path) -> Service:
    from tests.harness.registry import start_registry

    server = start_registry(workdir, port=port)
    return Service(
        url=server.url, stop=server.stop, details=["auth: none", f"storage: {workdir / 'storage'}"]
    )


def _start_registry_token(port: int, workdir: Path) -> Service:
    from tests.fixtures.registry import TOKEN_REGISTRY_CREDENTIALS
    from tests.harness.registry import start_registry

    server = start_registry(workdir, port=port, token_auth=True)
    assert server.token_server is not None
    return Service(
        url=server.url,
        stop=server.stop,
        details=[
            f"auth: token, realm {server.token_server.realm}",
            f"user: {TOKEN_REGISTRY_CREDENTIALS[0]} (password in tests/fixtures/registry.py)",
        ],
    )


def _start_prometheus(port: int, workdir: Path) -> Service:
    from tests.fixtures.prometheus import CANARY_STATE, METRICS_JOB, STABLE_STATE
    from tests.harness.prometheus import start_metrics_stack

    stack = start_metrics_stack(workdir, port=port, job=METRICS_JOB, stable=STABLE_STATE, canary=CANARY_STATE)
    return Service(
        url=stack.prometheus.url,
        stop=stack.stop,
        details=[
            f"app {track}: {app.url} (POST {app.url}/control, selector {stack.selector(track)})"
            for track, app in stack.apps.items()
        ],
    )


#: NAME -> start function. One line per server.
SERVERS: dict[str, Callable[[int, Path], Service]] = {
    "registry": _start_registry,
    "registry-token": _start_registry_token,
    "prometheus": _start_prometheus,
    # the real control plane (etcd, kube-apiserver, controllers, scheduler, kwok); kube-real: old name
    "kube": lambda port, workdir: __import__("tests.harness.kube_real", fromlist=["start"]).start(
        port, workdir
    ),
    "kube-real": lambda port, workdir: __import__("tests.harness.kube_real", fromlist=["start"]).start(
        port, workdir
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Start the named server, print ``NAME ready URL``, serve until SIGTERM/SIGINT, then stop it."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness", description="Run one test server on loopback until killed."
    )
    parser.add_argument("name", choices=sorted(SERVERS), help="which server to run")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="state directory (default: a temporary one)"
    )
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"railiance-{args.name}-"))
    cleanup = args.workdir is None
    service: Service | None = None
    try:
        service = SERVERS[args.name](args.port, workdir)
        print(f"{args.name} ready {service.url}", flush=True)
        for line in service.details:
            print(f"  {line}", flush=True)
        while not stopping.wait(0.5):
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - report and exit non-zero; children are stopped below
        print(f"{args.name} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if service is not None:
            service.stop()
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
