"""The durable spool of registry push notifications: what ``railiance webhook serve`` received.

A SQLite file (WAL) with one row per notification event, keyed by the event's ``id`` (the
Distribution registry retries a delivery until it is acknowledged, and a replayed request carries
the same ids): ``add`` stores new events and ignores known ids; ``since(seq)`` reads events after a
cursor (the push sensor keeps its own cursor, so the spool is never written by readers).

Stored per event: id, the registry host the client pushed to, repository, tag, digest, media type,
the action and when it was received. Never a header, a credential or the raw body.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from railiance_ledger.domain.registry_events import PushedManifest
from railiance_ledger.errors import AdapterUnavailable

__all__ = ["PushNotice", "PushSpool"]

SYSTEM = "push-spool"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    host TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class PushNotice:
    """One manifest push the registry notified."""

    id: str
    host: str
    """The registry host (and port) the client pushed to (the event's ``request.host``)."""
    repository: str
    tag: str | None
    digest: str
    media_type: str
    received_at: float = 0.0
    seq: int = 0


class PushSpool:
    """The spool file at ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise AdapterUnavailable(
                f"cannot open the push spool: {exc}", system=SYSTEM, operation="open", address=str(self.path)
            ) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
            yield conn
        except sqlite3.Error as exc:
            raise AdapterUnavailable(
                f"push spool: {exc}", system=SYSTEM, operation="query", address=str(self.path)
            ) from exc
        finally:
            conn.close()

    def add(self, notices: Iterable[PushedManifest]) -> int:
        """Store the notices whose id is new, durably (committed before returning); the count stored."""
        return len(self.add_new(notices))

    def add_new(self, notices: Iterable[PushedManifest]) -> list[PushNotice]:
        """Store the notices whose id is new, durably; those (with their spool seq), in order."""
        now = time.time()
        pending = list(notices)
        if not pending:
            return []
        stored: list[PushNotice] = []
        with self._lock, self._connect() as conn:
            for n in pending:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO notices (id, received_at, host, repository, tag, digest, "
                    "media_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (n.id, now, n.host, n.repository, n.tag, n.digest, n.media_type),
                )
                if cursor.rowcount == 1:
                    stored.append(
                        PushNotice(
                            id=n.id,
                            host=n.host,
                            repository=n.repository,
                            tag=n.tag,
                            digest=n.digest,
                            media_type=n.media_type,
                            received_at=now,
                            seq=int(cursor.lastrowid or 0),
                        )
                    )
            conn.commit()
        return stored

    def since(self, seq: int, *, limit: int = 1000) -> list[PushNotice]:
        """The notices stored after ``seq``, oldest first (at most ``limit``)."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT seq, id, received_at, host, repository, tag, digest, media_type FROM notices "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [
            PushNotice(
                seq=int(r[0]),
                id=str(r[1]),
                received_at=float(r[2]),
                host=str(r[3]),
                repository=str(r[4]),
                tag=r[5],
                digest=str(r[6]),
                media_type=str(r[7]),
            )
            for r in rows
        ]
