"""Real test servers for the adapters, started on loopback by fixtures or by ``python -m tests.harness``.

Each server module (``registry``, ``prometheus``, ``metrics_app``) owns one boundary from the
"Real components and how they start" table of ARCHITECTURE.md. This package holds the little they
share: free loopback ports, waiting for readiness, and running a child in its own process group so
teardown stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

__all__ = ["HarnessError", "ManagedProcess", "SilentServer", "free_port", "wait_until"]


class HarnessError(RuntimeError):
    """A test server did not start or stop as expected; the message carries the log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = ""
) -> None:
    """Poll ``predicate`` until it returns true; raise ``HarnessError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except HarnessError:
            raise  # the predicate knows it will never hold (e.g. the child exited)
        except Exception:  # noqa: BLE001, S110 - a server still starting refuses or resets: "not yet"
            pass
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what or 'condition'}")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen[Any], *, first: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``first`` to ``proc``'s process group, wait ``timeout``, then SIGKILL the group; idempotent."""
    if proc.poll() is not None:
        return
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _term_when_parent_dies() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux prctl
    PR_SET_PDEATHSIG), so a killed test run leaves no server behind in its own session."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


class ManagedProcess:
    """A child process in its own session (process group), its output in a log file.

    ``stop()`` signals the whole group, so helpers the child spawns die with it; it escalates to
    SIGKILL when the group ignores SIGTERM.
    """

    def __init__(
        self, argv: Sequence[str], *, log_path: Path, cwd: Path | None = None, die_with_parent: bool = False
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_term_when_parent_dies if die_with_parent else None,  # noqa: PLW1509
        )

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group id."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the child has not exited."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the child's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, what: str) -> None:
        """Raise ``HarnessError`` with the log tail when the child already exited."""
        if not self.alive():
            raise HarnessError(f"{what} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL it; idempotent."""
        stop_group(self.proc, first=signal.SIGTERM, timeout=timeout)
        if not self._log.closed:
            self._log.close()


class SilentServer:
    """A TCP server on loopback that accepts connections and never answers (for timeout tests).

    Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the silent server."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._held.append(conn)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()
