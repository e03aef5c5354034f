"""Signing with the operator's own tool: ``ssh-keygen -Y sign`` with a key file or ssh-agent.

Verification never comes here (it is ``domain.signing``, on the ``sshsig`` library); this module
only produces signatures, the way an operator does by hand, for the CLI's helpers and the tests.
With ``ssh-agent``, pass the *public* key file: ``ssh-keygen`` asks the agent for the private half.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from railiance_ledger.domain.signing import NAMESPACE
from railiance_ledger.errors import AdapterError

__all__ = ["sign_bytes"]


def sign_bytes(data: bytes, key_file: Path, *, namespace: str = NAMESPACE, timeout: float = 30.0) -> str:
    """The armored SSHSIG of ``data`` by ``key_file`` (a private key, or a public key held by ssh-agent)."""
    binary = shutil.which("ssh-keygen")
    if binary is None:
        raise AdapterError(
            "ssh-keygen is not on PATH (Debian package openssh-client)", system="ssh-keygen", operation="sign"
        )
    try:
        done = subprocess.run(
            [binary, "-q", "-Y", "sign", "-n", namespace, "-f", str(key_file)],
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AdapterError(str(exc), system="ssh-keygen", operation="sign", address=str(key_file)) from exc
    if done.returncode != 0:
        raise AdapterError(
            f"exited {done.returncode}: " + done.stderr.decode("utf-8", "replace").strip()[:300],
            system="ssh-keygen",
            operation="sign",
            address=str(key_file),
        )
    return done.stdout.decode("ascii")
