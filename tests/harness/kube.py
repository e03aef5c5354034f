"""``python -m tests.harness kube --port N``: the Kubernetes API emulator as a standalone server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.kube_emulator import KubeEmulator


def serve(port: int) -> None:
    """Serve the emulator on ``port`` until killed; prints ``ready <url> kubeconfig=<path>`` once listening."""
    emulator = KubeEmulator(port=port).start()
    print(f"kube ready {emulator.url} kubeconfig={emulator.kubeconfig_path}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


@dataclass
class KubeService:
    """What ``python -m tests.harness kube`` prints and stops (same shape as the harness ``Service``)."""

    url: str
    stop: Callable[[], None]
    details: list[str] = field(default_factory=list)


def start(port: int, workdir: Path) -> KubeService:
    """Start the emulator on ``port`` with its kubeconfig in ``workdir`` (for ``tests/harness/__main__.py``)."""
    emulator = KubeEmulator(port=port, workdir=workdir).start()
    return KubeService(
        url=emulator.url,
        stop=emulator.stop,
        details=[
            f"kubeconfig: {emulator.kubeconfig_path} (context emulator, bearer token, self-signed CA inline)",
            "try: KUBECONFIG=<that file> kubectl get ns",
        ],
    )
