"""Local processes: run a command to completion, or keep a workload running for a while.

Both kinds run in their own process group so that everything they spawn is stopped with them.
Output never leaves this module unredacted: only a bounded tail, passed through the one redaction
path of ``railiance_ledger.domain.redaction``, is returned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from railiance_ledger.domain.redaction import find_secrets, redact_log
from railiance_ledger.errors import AdapterError, AdapterUnavailable

DEFAULT_TAIL_BYTES = 4096
"""How much of a command's output is kept (after redaction)."""

_WINDOW_BYTES = 64 * 1024
"""How much raw output is held for redaction before the tail is cut (so a secret straddling the
cut of the kept tail is still recognised whole)."""

_STOP_GRACE_S = 3.0


class _SpawnState:
    """Whether the main thread is inside ``Popen()`` and a SIGTERM that arrived meanwhile."""

    active = False
    pending: int | None = None


_SPAWN = _SpawnState()


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While a child process group of ours runs, SIGTERM to this process raises ``SystemExit(143)``
    (as SIGINT raises ``KeyboardInterrupt``), so every ``finally``/``__exit__`` on the way out stops
    the group instead of the process dying with its children left running.

    Only from the main thread and only when SIGTERM has its default disposition (a host such as
    Dagster that handles SIGTERM itself keeps its handler); nested uses are no-ops.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def _raise(signum: int, _frame: object) -> None:
        if _SPAWN.active:  # inside Popen(): raising now would lose the new group; _spawn raises after
            _SPAWN.pending = signum
            return
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: exit code (``None`` when it was killed on timeout), wall time, and a
    bounded, redacted tail of its combined stdout/stderr."""

    exit_code: int | None
    duration_s: float
    output_tail: str
    timed_out: bool = False
    secret_kinds: tuple[str, ...] = ()
    """The kinds of secret the command printed (found before redaction; the values are never kept):
    Stage 1 fails ``secrets_by_reference`` on any, because "secrets are not printed"."""

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.exit_code == 0 and not self.timed_out


def printed_secret_kinds(raw: bytes) -> tuple[str, ...]:
    """The sorted kinds of secret found in ``raw`` output (decoded leniently); never the values."""
    return tuple(sorted({f.kind for f in find_secrets(raw.decode("utf-8", errors="replace"))}))


def redacted_tail(raw: bytes, *, limit: int = DEFAULT_TAIL_BYTES, truncated: bool = False) -> str:
    """Redact ``raw`` (decoded leniently) and keep at most ``limit`` characters of its end.

    When ``raw`` is itself a cut window (``truncated``), its first partial line is dropped before
    redaction, so a secret cut in half at the window edge is never kept as an unrecognisable
    fragment. The tail is cut after redaction, at a line boundary when one is near.
    """
    text = raw.decode("utf-8", errors="replace")
    if truncated:
        nl = text.find("\n")
        text = text[nl + 1 :] if nl >= 0 else ""
    clean = redact_log(text)  # secrets, then end users' personal data (a log excerpt)
    if len(clean) <= limit:
        return clean
    tail = clean[-limit:]
    nl = tail.find("\n")
    if 0 <= nl < limit // 4:
        tail = tail[nl + 1 :]
    return "[...]\n" + tail


def _kill_group(proc: subprocess.Popen[bytes], *, grace_s: float = _STOP_GRACE_S) -> None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it. Never raises."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        elif proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure nothing else in its group survives
        if pgid is not None and sig == signal.SIGTERM:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return


def _spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None, stdout: int | IO[bytes]
) -> subprocess.Popen[bytes]:
    if not argv:
        raise AdapterError("empty command", system="process", operation="start", address=str(cwd))
    main = threading.current_thread() is threading.main_thread()
    try:
        if main:
            _SPAWN.active, _SPAWN.pending = True, None
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=str(cwd),
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if main:
                _SPAWN.active = False
        if main and _SPAWN.pending is not None:
            signum, _SPAWN.pending = _SPAWN.pending, None
            _kill_group(proc)
            raise SystemExit(128 + signum)
        return proc
    except FileNotFoundError as exc:
        raise AdapterUnavailable(
            f"executable {argv[0]!r} not found",
            system="process",
            operation="start",
            address=str(cwd),
            hint="install it or fix the command in railiance/app.toml",
        ) from exc
    except (PermissionError, NotADirectoryError, OSError) as exc:
        raise AdapterUnavailable(
            f"cannot start {argv[0]!r}: {exc.strerror or exc}",
            system="process",
            operation="start",
            address=str(cwd),
        ) from exc


def run_command(
    *,
    argv: Sequence[str],
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
) -> CommandResult:
    """Run ``argv`` to completion in its own process group and return a ``CommandResult``.

    The whole group is killed when ``timeout`` seconds pass (``timed_out=True``, ``exit_code=None``).
    Output is read continuously (so a chatty command never blocks on a full pipe), only the last
    64 KiB are held, and a redacted tail of at most ``tail_bytes`` characters is returned.
    Raises ``AdapterUnavailable`` only when the command cannot be started at all.
    """
    with sigterm_unwinds():
        return _run_command(argv=argv, cwd=cwd, timeout=timeout, env=env, tail_bytes=tail_bytes)


def _run_command(
    *, argv: Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str] | None, tail_bytes: int
) -> CommandResult:
    started = time.monotonic()
    proc = _spawn(argv, cwd=cwd, env=env, stdout=subprocess.PIPE)
    buf = bytearray()
    dropped = False

    def _reader() -> None:
        nonlocal dropped
        stream = proc.stdout
        assert stream is not None
        read1 = getattr(stream, "read1", stream.read)  # a BufferedReader: return what is available
        for chunk in iter(lambda: read1(8192), b""):
            buf.extend(chunk)
            if len(buf) > _WINDOW_BYTES:
                del buf[: len(buf) - _WINDOW_BYTES]
                dropped = True

    reader = threading.Thread(target=_reader, name="run_command-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Always stop the group: children that outlive the leader are ours to clean up too.
        _kill_group(proc)
        reader.join(timeout=2.0)
        if proc.stdout is not None:
            proc.stdout.close()
    duration = time.monotonic() - started
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        duration_s=round(duration, 3),
        output_tail=redacted_tail(bytes(buf), limit=tail_bytes, truncated=dropped),
        timed_out=timed_out,
        secret_kinds=printed_secret_kinds(bytes(buf)),
    )


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalProcess:
    """A workload started locally for the duration of a ``with`` block.

    ``{port}`` in the command (and in environment values) is replaced by a free loopback port
    (``self.port``). The process runs in its own process group, its output goes to a private
    temporary file, and on leaving the block the whole group is stopped (SIGTERM, then SIGKILL)
    whatever happened inside.
    """

    def __init__(
        self,
        *,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port if port is not None else free_loopback_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.cwd = cwd
        self.env = (
            {k: v.replace("{port}", str(self.port)) for k, v in env.items()} if env is not None else None
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._signals = ExitStack()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id of the group leader, once started."""
        return self._proc.pid if self._proc else None

    def __enter__(self) -> Self:
        self._log = tempfile.TemporaryFile(prefix="railiance-local-")
        self._signals.enter_context(sigterm_unwinds())
        try:
            self._proc = _spawn(self.argv, cwd=self.cwd, env=self.env, stdout=self._log)
        except BaseException:
            self._signals.close()
            self._log.close()
            self._log = None
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._signals.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the whole process group (idempotent, never raises); output stays readable."""
        if self._proc is not None:
            _kill_group(self._proc)

    def poll(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        return self._proc.poll() if self._proc else None

    def wait_for_port(self, *, timeout: float, interval: float = 0.05) -> bool:
        """Wait until something accepts TCP connections on the port; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(interval)
        return False

    def output_tail(self, *, limit: int = 1024) -> str:
        """A bounded, redacted tail of what the process printed so far."""
        if self._log is None:
            return ""
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        start = max(0, size - _WINDOW_BYTES)
        self._log.seek(start)
        raw = self._log.read()
        return redacted_tail(raw, limit=limit, truncated=start > 0)

    def printed_secret_kinds(self) -> tuple[str, ...]:
        """The kinds of secret the process printed so far (its last 64 KiB), never the values."""
        if self._log is None:
            return ()
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, size - _WINDOW_BYTES))
        return printed_secret_kinds(self._log.read())

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self._proc is not None and self._proc.poll() is None:
                _kill_group(self._proc, grace_s=0.5)
            if self._log is not None:
                self._log.close()
        except Exception:  # noqa: BLE001, S110 - never raise from a finalizer
            pass
