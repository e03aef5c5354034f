"""The content-addressed store of rendered manifests (``$RAILIANCE_HOME/manifests/<sha256>.yaml``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from railiance_ledger import config
from railiance_ledger.errors import InvalidInput


def canonical_manifests(text: str) -> str:
    """The canonical rendered text: trailing whitespace stripped per line, one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def store_manifests(text: str, home: Path | None = None) -> tuple[str, Path]:
    """Write ``text`` to ``$RAILIANCE_HOME/manifests/<sha256>.yaml`` (idempotent); return (sha256, path)."""

    canonical = canonical_manifests(text)
    sha = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    base = (home or config.railiance_home()) / "manifests"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{sha}.yaml"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(canonical, encoding="utf-8")
        tmp.replace(path)
    return sha, path


def load_manifests(sha: str, home: Path | None = None) -> str:
    """The stored rendered text of ``sha``, verified against its hash (``InvalidInput`` if altered)."""

    path = (home or config.railiance_home()) / "manifests" / f"{sha}.yaml"
    text = path.read_text(encoding="utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
        raise InvalidInput(f"stored manifests {path} do not match their sha256 {sha}")
    return text
