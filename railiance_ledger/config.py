"""Where the ledger lives and who is acting: flags, then environment, then defaults."""

from __future__ import annotations

import getpass
import os
from pathlib import Path


def railiance_home() -> Path:
    """``$RAILIANCE_HOME``, defaulting to ``~/.railiance``."""
    return Path(os.environ.get("RAILIANCE_HOME") or Path.home() / ".railiance").expanduser()


def ledger_url(flag: str | None = None) -> str:
    """``--ledger`` URL, else ``RAILIANCE_LEDGER_URL``, else ``sqlite:///$RAILIANCE_HOME/ledger.db``."""
    if flag:
        return flag
    env = os.environ.get("RAILIANCE_LEDGER_URL")
    if env:
        return env
    # No mkdir here: opening the ledger creates the directory, and only where a ledger may be created
    # (`ledger init`, the first `candidate add` on this default path).
    return f"sqlite:///{railiance_home() / 'ledger.db'}"


def default_ledger(flag: str | None = None) -> bool:
    """True when neither ``--ledger`` nor ``RAILIANCE_LEDGER_URL`` names the ledger (the default path)."""
    return not flag and not os.environ.get("RAILIANCE_LEDGER_URL")


def operator(flag: str | None = None) -> str:
    """``--operator``, else ``RAILIANCE_OPERATOR``, else the login name."""
    if flag:
        return flag
    env = os.environ.get("RAILIANCE_OPERATOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return f"uid:{os.getuid()}"


def explicit_operator(flag: str | None = None) -> str | None:
    """The operator named by ``--operator`` or ``RAILIANCE_OPERATOR`` only (approvals need one)."""
    return flag or os.environ.get("RAILIANCE_OPERATOR") or None
