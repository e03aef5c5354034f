"""Bounded everything (issue 13): retries capped with an overall deadline, child process groups
stopped when the CLI process gets SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from railiance_ledger.adapters.health import MAX_RETRIES, HttpProbe
from railiance_ledger.adapters.process import free_loopback_port

ROOT = Path(__file__).resolve().parents[1]


def test_retries_are_capped_and_the_deadline_ends_the_check() -> None:
    port = free_loopback_port()  # nothing listens: every attempt is refused at once
    with httpx.Client() as client:
        result = HttpProbe(client).probe(
            url=f"http://127.0.0.1:{port}/healthz", retries=10**18, timeout=1.0, backoff=0.0
        )
        assert not result.ok and result.attempts == 1 + MAX_RETRIES
        bounded = HttpProbe(client).probe(
            url=f"http://127.0.0.1:{port}/healthz", retries=10**18, timeout=1.0, backoff=0.2, deadline_s=0.5
        )
    assert not bounded.ok and bounded.attempts < 1 + MAX_RETRIES
    assert "overall deadline" in bounded.reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (init) parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


DEFAULT_SIGNALS = (
    "import signal\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("kind", ["local-process", "run-command"])
def test_a_signal_to_the_cli_stops_the_child_process_group(tmp_path: Path, sig: int, kind: str) -> None:
    pidfile = tmp_path / "child.pid"
    body = {
        "local-process": "with LocalProcess(argv=CHILD, cwd=Path(TMP)):\n    time.sleep(300)\n",
        "run-command": "run_command(argv=CHILD, cwd=Path(TMP), timeout=300)\n",
    }[kind]
    script = (
        textwrap.dedent(
            f"""
        import sys, time
        from pathlib import Path
        from railiance_ledger.adapters.process import LocalProcess, run_command
        TMP = {str(tmp_path)!r}
        CHILD = ["sh", "-c", "echo $$ > {pidfile}; sleep 300 & wait"]
        """
        )
        + body
    )
    # The CLI as a shell starts it: default dispositions (Python's KeyboardInterrupt for SIGINT).
    # Another test of the session (Dagster) may leave SIGINT/SIGTERM ignored in this process, and
    # ignored signals are inherited across exec.
    script = DEFAULT_SIGNALS + script
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        # Let the CLI return from Popen() first: SIGTERM inside Popen() is handled (the new group is
        # killed), SIGINT there is a known gap (see docs/secrets.md), not what this test measures.
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the workload outlived the CLI"
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
