"""``python -m tests.harness kube --port N``: the Kubernetes API emulator as a standalone server."""

from __future__ import annotations

import time

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
