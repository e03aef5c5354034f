"""Git work trees: which commit, and whether the tree is exactly that commit.

A thin wrapper over the ``git`` binary. Every question is scoped to the path the repository was
opened at, so a workload living in a sub-directory of a monorepo is judged by its own files.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import AdapterError, AdapterNotFound, AdapterTimeout, AdapterUnavailable


class GitRepo:
    """The git work tree containing ``path`` (questions are scoped to ``path``)."""

    def __init__(self, path: Path | str, *, binary: str = "git", timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.binary = binary
        self.timeout = timeout

    def _run(self, args: list[str], *, operation: str) -> str:
        """Run ``git -C path ARGS`` and return stdout; translate every failure to ``AdapterError``."""
        address = str(self.path)
        if not self.path.is_dir():
            raise AdapterNotFound("no such directory", system="git", operation=operation, address=address)
        try:
            proc = subprocess.run(
                [self.binary, "-C", str(self.path), *args],
                capture_output=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError as exc:
            raise AdapterUnavailable(
                f"{self.binary!r} not found",
                system="git",
                operation=operation,
                address=address,
                hint="install git",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise AdapterTimeout(
                f"no answer after {self.timeout:g}s", system="git", operation=operation, address=address
            ) from exc
        if proc.returncode != 0:
            err = redact(proc.stderr.decode("utf-8", errors="replace").strip())[-500:]
            if "not a git repository" in err:
                raise AdapterNotFound(
                    "not a git work tree",
                    system="git",
                    operation=operation,
                    address=address,
                    hint="Stage 1 traces the artifact to a commit: run it on a git work tree",
                )
            raise AdapterError(
                f"exit {proc.returncode}: {err}", system="git", operation=operation, address=address
            )
        return proc.stdout.decode("utf-8", errors="replace")

    def toplevel(self) -> Path:
        """The root of the work tree."""
        return Path(self._run(["rev-parse", "--show-toplevel"], operation="toplevel").strip())

    def head(self) -> str:
        """The full commit id of ``HEAD`` (fails when the repository has no commit yet)."""
        out = self._run(["rev-parse", "--verify", "HEAD^{commit}"], operation="head").strip()
        if len(out) not in (40, 64):
            raise AdapterError(
                f"unexpected answer {out[:80]!r}", system="git", operation="head", address=str(self.path)
            )
        return out

    def changed(self) -> list[str]:
        """Tracked files under ``path`` that differ from ``HEAD`` (staged or not)."""
        out = self._run(["status", "--porcelain=v1", "--untracked-files=no", "--", "."], operation="status")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def is_dirty(self) -> bool:
        """True when a tracked file under ``path`` differs from ``HEAD``."""
        return bool(self.changed())

    def untracked(self) -> list[str]:
        """Untracked files under ``path`` that are not ignored (paths relative to the top level)."""
        out = self._run(
            ["ls-files", "--others", "--exclude-standard", "--full-name", "--", "."], operation="untracked"
        )
        return [line for line in out.splitlines() if line.strip()]
