"""The event store: serialized, hash-chained, rule-checked appends and plain reads.

Appends are serialized so the chain never forks. On SQLite pysqlite's own transaction handling is
switched off (``isolation_level = None``, WAL, ``busy_timeout``): every append transaction starts
with ``BEGIN IMMEDIATE``, and SQLAlchemy's ``begin`` hook issues ``BEGIN``/``BEGIN IMMEDIATE`` for
the engine's own transactions (schema creation, reads). On PostgreSQL the append transaction starts
with ``pg_advisory_xact_lock``. Inside the lock the store reads the head, checks
``expected_version``, checks the domain rules against the candidate's projection row (its fold
inputs, ``ledger/projector.py``: never the workload's history), assigns
``seq``/``version``/``event_id``/``recorded_at``/hashes, inserts the whole batch and updates the
projection rows it touched. Either every event of a call (and its projection update) is stored or
none is.

The append is the budgeted hot path ("at least half the rate of a raw Core single-row insert"), so
it runs a handful of fixed statements on the pooled driver connection (prepared automatically by
psycopg; pipelined on PostgreSQL so lock and reads cost one round trip). Reads use SQLAlchemy Core.

No driver exception escapes: everything is translated to a :class:`~railiance_ledger.errors.LedgerError`
naming the operation and the ledger URL with its password hidden.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from railiance_ledger.domain import payloads
from railiance_ledger.domain.events import (
    GENESIS_HASH,
    EventKind,
    NewEvent,
    RecordedEvent,
    canonical_json,
    format_timestamp,
)
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.domain.rules import RuleBroken, check_append
from railiance_ledger.errors import ConcurrencyConflict, LedgerError, LedgerNotFound, RuleViolation
from railiance_ledger.ledger import schema
from railiance_ledger.ledger.chain import row_hash
from railiance_ledger.ledger.projector import ProjectionSql, Projector, rebuild
from railiance_ledger.ledger.schema import ADVISORY_LOCK_KEY, SCHEMA_LOCK_KEY, SCHEMA_VERSION, events

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before giving up."""

ANALYZE_FROM = 1_024
"""On PostgreSQL, refresh the planner statistics whenever the ledger crosses a power of two from here on."""

PG_INSERT_CHUNK = 500
"""Rows per multi-row INSERT on PostgreSQL (12 parameters each; the protocol allows 65,535)."""

READ_BATCH = 2_000
"""Rows fetched per query by :meth:`EventStore.read_all`."""

RULE_HISTORY_KINDS: tuple[str, ...] = (
    EventKind.CANDIDATE_REGISTERED.value,
    EventKind.STAGE_COMPLETED.value,
    EventKind.EXCEPTION_EMERGENCY.value,
    EventKind.ROLLBACK_COMPLETED.value,
)
"""The kinds ``domain.rules.check_append`` looks at. The append reads them from the candidate's
projection row (``projector.STATUS_KINDS`` holds all of them, stage results reduced to their status).

Keep in step with ``domain/rules.py``: a rule that starts reading another kind must be added here
and to ``projector.STATUS_KINDS`` (``test_rule_history_kinds_cover_rules`` pins the current set).
"""

_DRIVER_MODULES = ("sqlite3", "psycopg", "psycopg2", "psycopg_pool", "sqlalchemy")

_COLS = tuple(events.c[name] for name in schema.EVENT_COLUMNS)
_SELECT_ROWS = sa.select(*_COLS)
_HEAD = sa.select(events.c.seq, events.c.hash).order_by(events.c.seq.desc()).limit(1)
_STREAM_VERSION = sa.select(sa.func.max(events.c.version)).where(events.c.stream == sa.bindparam("stream"))
_PG_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")


@dataclass(frozen=True)
class _AppendSql:
    """The append's statements in one dialect's DB-API paramstyle.

    The append runs on the driver connection directly: it is the hot path of the append budget, and
    on PostgreSQL it lets lock + reads travel in one pipelined round trip and insert + commit in another.
    """

    begin: str | None
    lock: str | None
    head: str
    insert: str

    @classmethod
    def for_dialect(cls, dialect: str) -> _AppendSql:
        p = "%s" if dialect == "postgresql" else "?"
        return cls(
            begin=None if dialect == "postgresql" else "BEGIN IMMEDIATE",
            lock=f"SELECT pg_advisory_xact_lock({p})" if dialect == "postgresql" else None,
            head=(
                "SELECT (SELECT seq FROM events ORDER BY seq DESC LIMIT 1), "
                "(SELECT hash FROM events ORDER BY seq DESC LIMIT 1), "
                f"(SELECT max(version) FROM events WHERE stream = {p})"
            ),
            insert=(
                f"INSERT INTO events ({', '.join(schema.EVENT_COLUMNS)}) "
                f"VALUES ({', '.join([p] * len(schema.EVENT_COLUMNS))})"
            ),
        )

    def insert_values(self, rows: int) -> str:
        """The insert with ``rows`` value tuples (PostgreSQL batches)."""
        head, values = self.insert.split(" VALUES ", 1)
        return f"{head} VALUES {', '.join([values] * rows)}"


def redact_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported without its userinfo
        text = str(url)
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return text


def normalize_url(url: str) -> URL:
    """Parse a ledger URL: ``sqlite:///path``, ``postgresql://`` (rewritten to psycopg) or
    ``postgresql+psycopg://``. Anything else is refused with a :class:`LedgerError`."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise LedgerError(
            f"ledger open failed: {redact_url(url)!r} is not a database URL",
            hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        ) from exc
    driver = parsed.drivername
    if driver in {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg3"}:
        return parsed.set(drivername="postgresql+psycopg")
    if driver in {"sqlite", "sqlite+pysqlite"}:
        return parsed.set(drivername="sqlite+pysqlite")
    raise LedgerError(
        f"ledger open failed: unsupported database {driver!r} in {redact_url(parsed)}",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )


def _driver_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, (sa_exc.SQLAlchemyError, sqlite3.Error)) or (
        type(exc).__module__.split(".", 1)[0] in _DRIVER_MODULES
    )


class EventStore:
    """The append-only, hash-chained event store on SQLite or PostgreSQL.

    Open it with :meth:`open`; one instance per process (it owns a connection pool).
    """

    def __init__(self, engine: Engine, *, url: str) -> None:
        self._engine = engine
        self._url = url
        self._is_pg = engine.dialect.name == "postgresql"
        self._sql = _AppendSql.for_dialect(engine.dialect.name)
        self._projection_sql = ProjectionSql(engine.dialect.name)
        dbapi = engine.dialect.dbapi
        self._driver_integrity_error: type[Exception] = getattr(
            dbapi, "IntegrityError", sa_exc.IntegrityError
        )

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> EventStore:
        """Open (and on first use create or migrate) the ledger at ``url``.

        ``sqlite:///PATH`` creates the parent directory; ``postgresql://`` is rewritten to psycopg.
        With ``create=False`` a URL naming no existing ledger (no SQLite file, no ledger tables) raises
        :class:`LedgerNotFound` and nothing is created.
        """
        parsed = normalize_url(url)
        shown = redact_url(parsed)
        database = parsed.database
        on_disk = parsed.drivername.startswith("sqlite") and database and database != ":memory:"
        if not create and on_disk and not Path(str(database)).expanduser().is_file():
            raise LedgerNotFound(
                f"no ledger at {shown}",
                hint="check --ledger / RAILIANCE_LEDGER_URL, or create it with `railiance ledger init`",
            )
        try:
            if parsed.drivername.startswith("sqlite"):
                engine = _sqlite_engine(parsed)
            else:
                engine = sa.create_engine(parsed, pool_pre_ping=False, pool_size=2, max_overflow=4)
        except Exception as exc:
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(f"ledger open failed at {shown}: {_driver_reason(exc)}") from exc
        store = cls(engine, url=shown)
        try:
            store._ensure_schema(create=create)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _ensure_schema(self, *, create: bool = True) -> None:
        with self._translated("open"):
            with self._engine.connect() as conn:
                version = schema.read_schema_version(conn)
                conn.rollback()
            if version == SCHEMA_VERSION:
                return
            if version == 0 and not create:
                raise LedgerNotFound(
                    f"no ledger at {self._url} (the database holds no ledger tables)",
                    hint="check --ledger / RAILIANCE_LEDGER_URL, or create it with `railiance ledger init`",
                )
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger at {self._url} has schema version {version}, newer than this program "
                    f"supports ({SCHEMA_VERSION})",
                    hint="upgrade railiance-ledger",
                )
            with self._write_transaction() as conn:
                if self._is_pg:
                    conn.execute(_PG_LOCK, {"key": SCHEMA_LOCK_KEY})
                found = schema.read_schema_version(conn)
                schema.migrate(conn, found)
                if 0 < found < 3:
                    # a ledger from before the projections: build them from its log, in this transaction
                    rebuild(conn.connection.driver_connection, self.dialect)

    def rebuild_projections(self, streams: Sequence[str] | None = None) -> int:
        """Delete and rebuild the projection tables from the log (every stream, or ``streams``).

        Runs under the append lock in one transaction, so appends wait and readers see the old or
        the new projections, never a half-built one. Returns the number of events replayed.
        """
        with self._translated("rebuild-projections"), self._write_transaction() as conn:
            if self._is_pg:
                conn.execute(_PG_LOCK, {"key": ADVISORY_LOCK_KEY})
            return rebuild(conn.connection.driver_connection, self.dialect, streams)

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ledger URL with its password hidden."""
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for the read-side projections of this package)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return str(self._engine.dialect.name)

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        """Translate any driver exception into a LedgerError naming ``operation`` and the URL."""
        try:
            yield
        except LedgerError:
            raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise LedgerError(
                f"ledger {operation} failed at {self._url}: {_driver_reason(exc)}",
                hint="check that the database is reachable and writable",
            ) from exc

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        """A transaction that holds the ledger's write lock from its first statement (SQLite)."""
        with self._engine.connect() as conn:
            conn.execution_options(railiance_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def reading(self, operation: str) -> Iterator[Connection]:
        """A read connection whose errors are translated; used by the read side of this package."""
        with self._translated(operation), self._engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self._url!r})"

    # -- writing -----------------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        now: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` (all of one stream) atomically and return them as recorded.

        ``expected_version`` is the stream's version the caller last saw (0 for a new stream); a
        different current version raises :class:`ConcurrencyConflict`. A broken lifecycle rule
        raises :class:`RuleViolation` and nothing is written.
        """
        # The ledger is a sink: whatever a caller passes, what is stored went through the one
        # redaction path (secrets in payloads or actor names never reach the database).
        batch = [_redacted(ev) for ev in events]
        if not batch:
            return []
        stream = batch[0].stream
        if any(ev.stream != stream for ev in batch):
            raise LedgerError(
                "ledger append refused: all events of one append must belong to one stream, got "
                + ", ".join(sorted({ev.stream for ev in batch}))
            )
        ts = now if now is not None else datetime.now(UTC)
        recorded_at = format_timestamp(ts)
        payload_texts = [self._payload_text(ev) for ev in batch]
        for ev in batch:
            try:
                payloads.validate(ev.kind, ev.payload)
            except payloads.InvalidPayload as exc:
                raise RuleViolation(f"ledger append refused for {ev.stream!r}: {exc}") from exc
        with self._translated("append"), self._engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            try:
                rows = self._append_locked(raw, stream, batch, payload_texts, recorded_at, expected_version)
            except BaseException:
                try:
                    raw.rollback()
                except Exception:  # noqa: BLE001 - the original error matters; the pool discards the connection
                    conn.invalidate()
                raise
            first_seq, last_seq = rows[0][0], rows[-1][0]
            if (
                self._is_pg
                and last_seq >= ANALYZE_FROM
                and (first_seq - 1).bit_length() != last_seq.bit_length()
            ):
                self._refresh_statistics(conn)
        return [_recorded(row, ev) for row, ev in zip(rows, batch)]

    @staticmethod
    def _refresh_statistics(conn: Connection) -> None:
        """``ANALYZE events`` each time the ledger doubles in size (PostgreSQL), best effort.

        Prepared statements keep the plan chosen when the table was small (a sequential scan) until
        the table's statistics change. Servers run autovacuum for that, but not all do (CI's does
        not); without it every append would scan the whole ledger. Doubling keeps the cost
        logarithmic: about twenty ANALYZEs for a million events.
        """
        try:
            conn.exec_driver_sql("ANALYZE events")
            conn.commit()
        except sa_exc.SQLAlchemyError:
            conn.rollback()  # e.g. not the table owner: the server's autovacuum is then in charge

    def _pipeline(self, raw: Any) -> AbstractContextManager[Any]:
        """psycopg pipeline mode (statements travel together, results are awaited once), else nothing."""
        if self._is_pg and getattr(raw, "pipeline", None) is not None:
            return raw.pipeline()  # type: ignore[no-any-return]
        return nullcontext()

    def _append_locked(
        self,
        raw: Any,
        stream: str,
        batch: list[NewEvent],
        payload_texts: list[str],
        recorded_at: str,
        expected_version: int | None,
    ) -> list[tuple[Any, ...]]:
        """Lock, read the head, check version and rules, insert and commit, on the driver connection."""
        sql = self._sql
        digests = list(dict.fromkeys(ev.candidate for ev in batch if ev.candidate is not None))
        with self._unique_violation_is_conflict(stream):
            with self._pipeline(raw):
                if sql.begin is not None:
                    raw.execute(sql.begin)  # SQLite: take the write lock now
                cur = raw.cursor()
                if sql.lock is not None:
                    cur.execute(sql.lock, (ADVISORY_LOCK_KEY,))  # PostgreSQL: serialize appends
                cur.execute(sql.head, (stream,))  # runs after the lock: a fresh READ COMMITTED snapshot
                seq, prev, current = self._head(cur.fetchone())
                if expected_version is not None and expected_version != current:
                    raise ConcurrencyConflict(
                        f"stream {stream!r}: expected version {expected_version}, actual {current}; "
                        "another writer appended first",
                        hint="re-read the stream and retry",
                    )
                # The rules read the candidate's own projection row (its fold inputs), never its
                # events: the append costs the same however long the workload's history is.
                projector = Projector(self._projection_sql, stream, raw.cursor())
                projector.prefetch(digests)
                rows: list[tuple[Any, ...]] = []
                for ev, payload_text in zip(batch, payload_texts):
                    history = projector.history(ev.candidate) if ev.candidate is not None else []
                    try:
                        check_append(list(history), ev)
                    except RuleBroken as exc:
                        raise RuleViolation(f"ledger append refused for {stream!r}: {exc}") from exc
                    seq += 1
                    current += 1
                    event_id = str(uuid.uuid4())
                    kind = ev.kind.value
                    event_hash = row_hash(
                        seq,
                        event_id,
                        stream,
                        current,
                        kind,
                        ev.candidate,
                        ev.stage,
                        ev.actor,
                        recorded_at,
                        payload_text,
                        prev,
                    )
                    rows.append(
                        (
                            seq,
                            event_id,
                            stream,
                            current,
                            kind,
                            ev.candidate,
                            ev.stage,
                            ev.actor,
                            recorded_at,
                            payload_text,
                            prev,
                            event_hash,
                        )
                    )
                    projector.apply(
                        seq, event_id, kind, ev.candidate, ev.stage, ev.actor, recorded_at, ev.payload
                    )
                    prev = event_hash
                self._insert(cur, rows)
                projector.flush(cur)
                if self._is_pg:
                    # Queued behind the insert: both travel with the pipeline's closing sync, so an append
                    # costs two round trips (raw insert: BEGIN, INSERT, COMMIT = three).
                    cur.execute("COMMIT")
            if not self._is_pg:
                raw.commit()
        return rows

    def _insert(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        """SQLite: executemany (a C loop). PostgreSQL: multi-row VALUES, one statement per chunk."""
        if not self._is_pg or len(rows) == 1:
            cur.executemany(self._sql.insert, rows)
            return
        for start in range(0, len(rows), PG_INSERT_CHUNK):
            chunk = rows[start : start + PG_INSERT_CHUNK]
            cur.execute(self._sql.insert_values(len(chunk)), [value for row in chunk for value in row])

    @staticmethod
    def _head(row: Sequence[Any]) -> tuple[int, str, int]:
        """``(head seq, head hash, stream version)`` from the head query's row."""
        head_seq, head_hash, version = row
        return (
            int(head_seq or 0),
            str(head_hash) if head_hash is not None else GENESIS_HASH,
            int(version or 0),
        )

    @contextmanager
    def _unique_violation_is_conflict(self, stream: str) -> Iterator[None]:
        """The one place a unique-constraint violation (seq, event_id, stream+version) becomes
        ConcurrencyConflict: another writer took the place this append computed."""
        try:
            yield
        except (sa_exc.IntegrityError, self._driver_integrity_error) as exc:
            raise ConcurrencyConflict(
                f"stream {stream!r}: the next seq or version was taken by another writer "
                f"({_driver_reason(exc)})",
                hint="re-read the stream and retry",
            ) from exc

    def append_one(self, event: NewEvent, *, expected_version: int | None = None) -> RecordedEvent:
        """Append a single event; see :meth:`append`."""
        return self.append([event], expected_version=expected_version)[0]

    @staticmethod
    def _payload_text(ev: NewEvent) -> str:
        try:
            text = canonical_json(ev.payload)
            text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"ledger append refused: the payload of {ev.kind.value} for {ev.stream!r} is not plain JSON: "
                f"{exc}"
            ) from exc
        return text

    # -- reading -----------------------------------------------------------------------------------

    def stream_version(self, stream: str) -> int:
        """The stream's current version: the number of events in it, 0 for an unknown stream."""
        with self.reading("stream_version") as conn:
            return int(conn.execute(_STREAM_VERSION, {"stream": stream}).scalar() or 0)

    def read_stream(self, stream: str, *, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events with version greater than ``after_version``, in order."""
        stmt = _SELECT_ROWS.where(events.c.stream == stream, events.c.version > after_version).order_by(
            events.c.version
        )
        with self.reading("read_stream") as conn:
            return [row_to_event(row) for row in conn.execute(stmt)]

    def read_candidate(self, stream: str, candidate: str) -> list[RecordedEvent]:
        """Every event of ``stream`` about ``candidate`` (a digest), in order."""
        stmt = _SELECT_ROWS.where(events.c.stream == stream, events.c.candidate == candidate).order_by(
            events.c.seq
        )
        with self.reading("read_candidate") as conn:
            return [row_to_event(row) for row in conn.execute(stmt)]

    def read_all(self, *, after_seq: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event with ``seq > after_seq`` in seq order, fetched in batches (at most ``limit``)."""
        for rows in self.iter_row_batches(after_seq=after_seq, limit=limit, operation="read_all"):
            for row in rows:
                yield row_to_event(row)

    def iter_row_batches(
        self,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        batch: int = READ_BATCH,
        operation: str = "read",
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Raw row tuples (columns in :data:`schema.EVENT_COLUMNS` order) in seq order, batch by batch.

        Keyset pagination: no connection is held between batches, so an abandoned iterator leaks
        nothing and concurrent appends are never blocked.
        """
        last = after_seq
        remaining = limit
        while remaining is None or remaining > 0:
            size = batch if remaining is None else min(batch, remaining)
            stmt = _SELECT_ROWS.where(events.c.seq > last).order_by(events.c.seq).limit(size)
            with self.reading(operation) as conn:
                rows = [tuple(r) for r in conn.execute(stmt)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < size:
                return

    def get(self, event_id: str) -> RecordedEvent | None:
        """The event with this id, or None."""
        with self.reading("get") as conn:
            row = conn.execute(_SELECT_ROWS.where(events.c.event_id == event_id)).first()
        return row_to_event(row) if row is not None else None

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last event, ``(0, GENESIS_HASH)`` for an empty ledger."""
        with self.reading("head") as conn:
            row = conn.execute(_HEAD).first()
        return (int(row[0]), str(row[1])) if row is not None else (0, GENESIS_HASH)

    def has_stream(self, stream: str) -> bool:
        """True when ``stream`` has at least one event (one index probe)."""
        with self.reading("has_stream") as conn:
            stmt = sa.select(events.c.seq).where(events.c.stream == stream).limit(1)
            return conn.execute(stmt).first() is not None

    def streams(self) -> list[str]:
        """Every stream (workload) that has events, sorted."""
        with self.reading("streams") as conn:
            return [
                str(s)
                for s in conn.execute(
                    sa.select(events.c.stream).distinct().order_by(events.c.stream)
                ).scalars()
            ]

    def count(self) -> int:
        """The number of stored events."""
        with self.reading("count") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() or 0)


def _recorded(row: tuple[Any, ...], ev: NewEvent) -> RecordedEvent:
    (
        seq,
        event_id,
        stream,
        version,
        kind,
        candidate,
        stage,
        actor,
        recorded_at,
        _payload,
        prev_hash,
        digest,
    ) = row
    return RecordedEvent.model_construct(
        seq=seq,
        event_id=event_id,
        stream=stream,
        version=version,
        kind=kind,
        candidate=candidate,
        stage=stage,
        actor=actor,
        recorded_at=recorded_at,
        payload=ev.payload,
        prev_hash=prev_hash,
        hash=digest,
    )


def _redacted(ev: NewEvent) -> NewEvent:
    """``ev`` with its payload and actor passed through the redaction path (a copy only if changed).

    The last line before the database: identifying columns (stream, candidate) are never rewritten,
    so one that holds a secret is refused rather than stored."""
    for column, value in (("stream", ev.stream), ("candidate", ev.candidate or "")):
        if redact(value) != value:
            raise LedgerError(
                f"ledger append refused: the {column} of a {ev.kind.value} event holds what looks like a "
                f"secret ({redact(value)[:200]})"
            )
    payload = redact_value(ev.payload)
    actor = redact(ev.actor)
    if payload == ev.payload and actor == ev.actor:
        return ev
    return ev.model_copy(update={"payload": payload, "actor": actor})


def row_to_event(row: Sequence[Any]) -> RecordedEvent:
    """A stored row (columns in :data:`schema.EVENT_COLUMNS` order) as a RecordedEvent."""
    seq, event_id, stream, version, kind, candidate, stage, actor, recorded_at, payload, prev_hash, digest = (
        row
    )
    return RecordedEvent.model_construct(
        seq=int(seq),
        event_id=event_id,
        stream=stream,
        version=int(version),
        kind=kind,
        candidate=candidate,
        stage=None if stage is None else int(stage),
        actor=actor,
        recorded_at=recorded_at,
        payload=json.loads(payload),
        prev_hash=prev_hash,
        hash=digest,
    )


def _sqlite_engine(url: URL) -> Engine:
    """A SQLite engine in WAL mode whose transactions we begin ourselves (BEGIN / BEGIN IMMEDIATE)."""
    database = url.database
    kwargs: dict[str, Any] = {}
    if not database or database == ":memory:":
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **kwargs)

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("railiance_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
