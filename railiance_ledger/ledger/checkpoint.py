"""Integrity before action: verify the chain from a stored verified checkpoint, O(new events).

A full ``ledger verify`` recomputes every hash (about 150,000 events/s): seconds at a million events,
too slow to run before every action. The checkpoint is the ``(seq, hash)`` of the newest event a
previous check verified, kept in the table ``ledger_checkpoint`` of the ledger's own database (so
it is shared by every process and host using that ledger). :func:`check_integrity`:

1. checks that the append-only triggers are still installed; if they are not (what an attacker with
   database access does first), the checkpoint is not trusted and the whole chain is verified;
2. re-hashes the checkpoint row itself (it must still exist, carry the recorded hash and match its
   contents) and every event after it (seq continuity, ``prev_hash`` links, recomputed hashes);
3. on any mismatch runs the full :func:`~railiance_ledger.ledger.verify.verify`, which classifies
   the first bad seq (edited, missing, reordered), and raises :class:`IntegrityError` naming it;
4. otherwise moves the checkpoint to the head.

What it cannot see: an event before the checkpoint rewritten with the triggers put back afterwards
(the rows after the checkpoint still link up). ``railiance ledger verify`` (the full walk, with
``--expect-head`` or the State Hub witness) remains the periodic check for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from railiance_ledger.domain.events import GENESIS_HASH
from railiance_ledger.errors import IntegrityError, LedgerError
from railiance_ledger.ledger.chain import row_hash
from railiance_ledger.ledger.schema import EVENT_COLUMNS
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.ledger.verify import VerifyReport, check_anchor, verify

TABLE = "ledger_checkpoint"
"""The table holding the one verified checkpoint row (``id = 1``)."""

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash VARCHAR(64) NOT NULL, verified_at VARCHAR(40))"
)
_READ = sa.text(f"SELECT seq, hash FROM {TABLE} WHERE id = 1")
_UPSERT = sa.text(
    f"INSERT INTO {TABLE} (id, seq, hash) VALUES (1, :seq, :hash) "
    f"ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > {TABLE}.seq"
)
_RESET = sa.text(f"DELETE FROM {TABLE}")
_SQLITE_TRIGGERS = sa.text(
    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events' "
    "AND name IN ('events_no_update', 'events_no_delete')"
)
_PG_TRIGGERS = sa.text(
    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal "
    "AND tgname IN ('events_no_update_delete', 'events_no_truncate')"
)
_EXPECTED_TRIGGERS = 2


@dataclass(frozen=True)
class IntegrityCheck:
    """A passed check: the head it verified up to, how many events it hashed, and how it got there."""

    head_seq: int
    head_hash: str
    events_checked: int
    full: bool
    """True when the whole chain was walked (no checkpoint yet, or the triggers were missing)."""
    triggers_intact: bool = True

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "events_checked": self.events_checked,
            "full": self.full,
            "triggers_intact": self.triggers_intact,
        }


def _rows_sql(dialect: str) -> str:
    p = "%s" if dialect == "postgresql" else "?"
    return f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE seq >= {p} ORDER BY seq"


def read_checkpoint(store: EventStore) -> tuple[int, str] | None:
    """The stored checkpoint ``(seq, hash)``, or None when there is none yet."""
    with store.reading("checkpoint") as conn:
        try:
            row = conn.execute(_READ).first()
        except sa.exc.SQLAlchemyError:
            conn.rollback()
            return None
    return (int(row[0]), str(row[1])) if row is not None else None


def _store_checkpoint(store: EventStore, seq: int, hash_: str) -> None:
    """Move the checkpoint forward (never back). Best effort: the checkpoint only saves work, so a
    write that loses a lock race is dropped (the next check verifies a little more)."""
    if seq <= 0:
        return
    try:
        with store.reading("checkpoint") as conn:
            conn.execution_options(railiance_begin="IMMEDIATE")  # SQLite: take the write lock first
            conn.exec_driver_sql(_CREATE)
            conn.execute(_UPSERT, {"seq": seq, "hash": hash_})
            conn.commit()
    except LedgerError:
        return


def reset_checkpoint(store: EventStore) -> None:
    """Forget the checkpoint (the next check walks the whole chain)."""
    with store.reading("checkpoint") as conn:
        conn.exec_driver_sql(_CREATE)
        conn.execute(_RESET)
        conn.commit()


def triggers_intact(store: EventStore) -> bool:
    """True when both append-only triggers on ``events`` are installed."""
    query = _PG_TRIGGERS if store.dialect == "postgresql" else _SQLITE_TRIGGERS
    with store.reading("checkpoint") as conn:
        return int(conn.execute(query).scalar() or 0) == _EXPECTED_TRIGGERS


def _raise(report: VerifyReport) -> None:
    raise IntegrityError(
        f"ledger integrity check failed at seq {report.first_bad_seq} ({report.problem}): {report.detail}; "
        "nothing was done",
        seq=report.first_bad_seq,
        problem=report.problem or "",
    )


def _check_after(store: EventStore, seq: int, hash_: str) -> tuple[bool, int, str, int]:
    """Re-hash the checkpoint row and every row after it: ``(ok, head seq, head hash, rows checked)``."""
    with store.reading("checkpoint") as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(_rows_sql(store.dialect), (seq,))
            rows = cursor.fetchall()
        finally:
            cursor.close()
    if not rows or rows[0][0] != seq or rows[0][-1] != hash_:
        return False, seq, hash_, 0
    prev = GENESIS_HASH
    expected = seq
    for row in rows:
        (
            r_seq,
            event_id,
            stream,
            version,
            kind,
            candidate,
            stage,
            actor,
            recorded_at,
            payload,
            prev_hash,
            digest,
        ) = row
        if r_seq != expected or (r_seq != seq and prev_hash != prev):
            return False, seq, hash_, 0
        if (
            row_hash(
                r_seq,
                event_id,
                stream,
                version,
                kind,
                candidate,
                stage,
                actor,
                recorded_at,
                payload,
                prev_hash,
            )
            != digest
        ):
            return False, seq, hash_, 0
        prev = digest
        expected = r_seq + 1
    return True, expected - 1, prev, len(rows)


def check_integrity(store: EventStore) -> IntegrityCheck:
    """Verify the chain from the stored checkpoint (the whole chain when there is none or the
    append-only triggers are gone); raise :class:`IntegrityError` naming the first bad seq."""
    intact = triggers_intact(store)
    checkpoint = read_checkpoint(store)
    if checkpoint is not None and intact:
        ok, head_seq, head_hash, checked = _check_after(store, *checkpoint)
        if ok:
            if head_seq > checkpoint[0]:
                _store_checkpoint(store, head_seq, head_hash)
            return IntegrityCheck(head_seq, head_hash, checked, full=False)
    report = verify(store)
    if checkpoint is not None:
        # The whole chain links up, but does it still pass through the checkpoint? (A rewrite from an
        # earlier seq with recomputed hashes, or removed newest events, does not.)
        report = check_anchor(store, report, seq=checkpoint[0], hash=checkpoint[1])
    if not report.ok:
        _raise(report)
    if intact:
        _store_checkpoint(store, report.head_seq, report.head_hash)
    return IntegrityCheck(
        report.head_seq, report.head_hash, report.events_checked, full=True, triggers_intact=intact
    )
