"""The ledger's tables, indexes and append-only triggers (SQLAlchemy Core), created and migrated by version.

One ``events`` table holds the whole ledger. ``payload`` is the canonical JSON *text* that was hashed,
and ``recorded_at`` the exact ISO string that was hashed, so re-hashing a stored row is exact and
needs no parsing. ``ledger_meta`` records the schema version; :func:`ensure_schema` creates the schema
on first use and applies migrations in order, under the same lock appends take, so concurrent
openers never race.

The database refuses ``UPDATE`` and ``DELETE`` on ``events`` (and ``TRUNCATE`` on PostgreSQL) with
triggers, so append-only does not depend on this package being the only writer.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 3
"""The schema version this code writes and expects."""

APPEND_ONLY_MESSAGE = "railiance ledger is append-only"
"""The text every refused UPDATE/DELETE carries, on both backends."""

ADVISORY_LOCK_KEY = 0x5241494C4C454447  # "RAILLEDG": serializes appends on PostgreSQL
SCHEMA_LOCK_KEY = 0x5241494C4C534348  # "RAILLSCH": serializes schema creation/migration

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
    ),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("stream", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("candidate", sa.String(200), nullable=True),
    sa.Column("stage", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    sa.UniqueConstraint("stream", "version", name="uq_events_stream_version"),
    sa.Index("ix_events_stream_kind_seq", "stream", "kind", "seq"),
    # (stream, candidate, kind): the append's rule history asks for three kinds of one candidate,
    # which may have thousands of canary samples; read_candidate still uses the (stream, candidate) prefix.
    sa.Index("ix_events_stream_candidate_kind_seq", "stream", "candidate", "kind", "seq"),
    sa.Index("ix_events_kind_seq", "kind", "seq"),
)
"""The ledger: one row per event, ``seq`` global and gap-free, ``(stream, version)`` unique."""

ledger_meta = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
"""Key/value facts about the ledger itself; ``schema_version`` drives migrations."""

# -- projections (schema 3): derived from the events, updated in the append's transaction, rebuildable --

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

proj_candidates = sa.Table(
    "proj_candidates",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(200), primary_key=True),
    sa.Column("reg_seq", _SEQ, nullable=True),
    sa.Column("last_seq", _SEQ, nullable=False),
    sa.Column("fold_events", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("pending_stage", sa.Integer, nullable=True),
    sa.Column("awaiting", sa.Integer, nullable=False),
    sa.Column("open_stage", sa.Integer, nullable=True),
    sa.Column("promoted", sa.Integer, nullable=False),
    sa.Column("rolled_back", sa.Integer, nullable=False),
    # ``reg_seq`` when the candidate waits for an approval / has an unreviewed emergency exception /
    # has a stage open, else NULL: each list is one backward range scan of its index (newest first).
    sa.Column("pending_key", _SEQ, nullable=True),
    sa.Column("awaiting_key", _SEQ, nullable=True),
    sa.Column("open_key", _SEQ, nullable=True),
    sa.Index("ix_proj_candidates_reg", "stream", "reg_seq"),
    sa.Index("ix_proj_candidates_pending", "stream", "pending_key"),
    sa.Index("ix_proj_candidates_awaiting", "stream", "awaiting_key"),
    sa.Index("ix_proj_candidates_open", "stream", "open_key"),
)
"""One row per candidate: its fold inputs (the status kinds, stage results reduced to their status),
the status summary the fold gives, and the columns the workload queries filter on."""

proj_workloads = sa.Table(
    "proj_workloads",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("last_seq", _SEQ, nullable=False),
    sa.Column("top_seq", _SEQ, nullable=True),
    sa.Column("candidates", sa.Integer, nullable=False),
)
"""One row per workload: the last status-relevant seq, the current stable (``top_seq`` into
``proj_stables``) and the number of registered candidates."""

proj_stables = sa.Table(
    "proj_stables",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("seq", _SEQ, primary_key=True),
    sa.Column("digest", sa.String(200), nullable=False),
    sa.Column("image", sa.Text, nullable=True),
    sa.Column("promoted_at", sa.String(40), nullable=False),
    sa.Column("promoted_by", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=True),
    sa.Column("previous_stable", sa.String(200), nullable=True),
    sa.Column("restore", sa.Text, nullable=False),
    sa.Column("below_seq", _SEQ, nullable=True),
    sa.Column("popped_seq", _SEQ, nullable=True),
)
"""The stable stack as a linked list: each promotion (or a rollback to a stable the ledger did not
know) is a row; ``below_seq`` never changes after the push, ``popped_seq`` is the rollback that
popped it. The stack at any instant is the chain from that instant's top."""

proj_lineage = sa.Table(
    "proj_lineage",
    metadata,
    sa.Column("stream", sa.String(200), primary_key=True),
    sa.Column("seq", _SEQ, primary_key=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("top_seq", _SEQ, nullable=True),
    sa.Column("rollback", sa.Text, nullable=True),
    sa.Index("ix_proj_lineage_at", "stream", "recorded_at", "seq"),
    sa.Index("ix_proj_lineage_kind", "stream", "kind", "seq"),
)
"""The stable history: one row per promotion or rollback with the top of the stack after it
(``lineage --at T`` reads the last row at or before T through ``ix_proj_lineage_at``)."""

PROJECTION_TABLES = (proj_candidates, proj_workloads, proj_stables, proj_lineage)

EVENT_COLUMNS = (
    "seq",
    "event_id",
    "stream",
    "version",
    "kind",
    "candidate",
    "stage",
    "actor",
    "recorded_at",
    "payload",
    "prev_hash",
    "hash",
)
"""Column order used by every raw row tuple in this package."""

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END""",
)

_POSTGRES_TRIGGERS = (
    f"""CREATE OR REPLACE FUNCTION railiance_events_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}: % refused on events', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$""",
    "DROP TRIGGER IF EXISTS events_no_update_delete ON events",
    """CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION railiance_events_append_only()""",
    "DROP TRIGGER IF EXISTS events_no_truncate ON events",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION railiance_events_append_only()""",
)


def install_triggers(conn: Connection) -> None:
    """Create the triggers that make the database refuse UPDATE and DELETE on ``events``."""
    statements = _POSTGRES_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_TRIGGERS
    for statement in statements:
        conn.execute(sa.text(statement))


def _migrate_0_to_1(conn: Connection) -> None:
    metadata.create_all(conn)
    install_triggers(conn)


def _migrate_1_to_2(conn: Connection) -> None:
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_events_stream_candidate_seq"))
    for index in events.indexes:
        index.create(conn, checkfirst=True)


def _migrate_2_to_3(conn: Connection) -> None:
    """Create the projection tables; the store builds their rows right after (``rebuild``)."""
    for table in PROJECTION_TABLES:
        table.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}
"""``MIGRATIONS[v]`` takes a schema at version ``v`` to ``v + 1``; add one entry per new version."""


def read_schema_version(conn: Connection) -> int:
    """The schema version recorded in ``ledger_meta``, 0 when the ledger has never been created."""
    if not sa.inspect(conn).has_table("ledger_meta"):
        return 0
    value = conn.execute(
        sa.select(ledger_meta.c.value).where(ledger_meta.c.key == "schema_version")
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


def migrate(conn: Connection, current: int) -> int:
    """Apply every migration from ``current`` to :data:`SCHEMA_VERSION` inside ``conn``'s transaction.

    The caller holds the schema lock. Returns the version reached.
    """
    version = current
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
    if version != current:
        if current == 0:
            conn.execute(sa.insert(ledger_meta).values(key="schema_version", value=str(version)))
        else:
            conn.execute(
                sa.update(ledger_meta).where(ledger_meta.c.key == "schema_version").values(value=str(version))
            )
    return version
