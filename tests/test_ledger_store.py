"""The event-store contract, one suite subclassed per backend (SQLite file, PostgreSQL database).

Pins: append/read round trips, gap-free global seq, per-stream versions, optimistic concurrency,
atomic batches, order, the hash chain, the lifecycle rules at append time, the database refusing
UPDATE/DELETE to a plain client, tampering detected and classified by verify, concurrent writers from
several processes, and a writer killed with SIGKILL leaving a ledger that verifies.
"""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.domain.events import GENESIS_HASH, EventKind, NewEvent, RecordedEvent, compute_hash
from railiance_ledger.domain.rules import check_append
from railiance_ledger.errors import ConcurrencyConflict, LedgerError, RuleViolation
from railiance_ledger.ledger import schema
from railiance_ledger.ledger.chain import envelope_text, row_hash
from railiance_ledger.ledger.store import RULE_HISTORY_KINDS, EventStore
from railiance_ledger.ledger.verify import export_jsonl, verify
from tests.fixtures.ledger import (
    append_forever,
    append_worker,
    digest_of,
    emergency,
    note,
    registered,
    stage_result,
    stage_started,
)

W = "hello-web"
X = digest_of("x")
Y = digest_of("y")


class EventStoreContract:
    """Behaviour every backend must show. Subclasses provide ``url`` and a plain database client."""

    placeholder = "?"

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def store(self, url: str) -> Iterator[EventStore]:
        s = EventStore.open(url)
        try:
            yield s
        finally:
            s.close()

    # -- a plain client, outside our code -----------------------------------------------------------

    def raw_connect(self, url: str) -> Any:
        """A DB-API connection from the driver itself (not through the store)."""
        raise NotImplementedError

    def raw(self, url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.raw_connect(url)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def drop_triggers(self, url: str) -> None:
        """What an attacker with database access does first."""
        raise NotImplementedError

    def swap_contents(self, url: str, a: int, b: int) -> None:
        """Swap every column but seq between rows ``a`` and ``b`` (triggers already dropped)."""
        p = self.placeholder
        cols = [c for c in schema.EVENT_COLUMNS if c != "seq"]
        conn = self.raw_connect(url)
        try:
            cur = conn.cursor()
            cur.execute(
                f"SELECT seq, {', '.join(cols)} FROM events WHERE seq IN ({p}, {p}) ORDER BY seq", (a, b)
            )
            row_a, row_b = cur.fetchall()
            cur.execute(f"DELETE FROM events WHERE seq IN ({p}, {p})", (a, b))
            insert = (
                f"INSERT INTO events (seq, {', '.join(cols)}) VALUES ({', '.join([p] * (len(cols) + 1))})"
            )
            cur.execute(insert, (a, *row_b[1:]))
            cur.execute(insert, (b, *row_a[1:]))
            conn.commit()
        finally:
            conn.close()

    # -- append and read ----------------------------------------------------------------------------

    def test_append_returns_recorded_events_that_read_back_identically(self, store: EventStore) -> None:
        now = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        recorded = store.append([registered(W, X), stage_started(W, X, 1)], now=now)
        assert [1, 2] == [e.seq for e in recorded]
        assert [1, 2] == [e.version for e in recorded]
        assert "2026-03-01T12:00:00.123456+00:00" == recorded[0].recorded_at
        assert recorded == store.read_stream(W)
        assert recorded == list(store.read_all())
        assert recorded[1] == store.get(recorded[1].event_id)
        assert store.get("00000000-0000-0000-0000-000000000000") is None
        assert (2, recorded[1].hash) == store.head()
        assert [recorded[0]] == store.read_stream(W, after_version=0)[:1]
        assert [recorded[1]] == store.read_stream(W, after_version=1)

    def test_empty_ledger_has_genesis_head_and_no_streams(self, store: EventStore) -> None:
        assert (0, GENESIS_HASH) == store.head()
        assert [] == store.streams()
        assert 0 == store.stream_version("nope")
        assert [] == store.append([])
        assert verify(store).ok

    def test_seq_is_global_and_gap_free_while_versions_are_per_stream(self, store: EventStore) -> None:
        for i in range(5):
            store.append_one(note("a", i))
            store.append_one(note("b", i))
        store.append([note("c", 0), note("c", 1), note("c", 2)])
        events = list(store.read_all())
        assert list(range(1, 14)) == [e.seq for e in events]
        assert [1, 2, 3, 4, 5] == [e.version for e in events if e.stream == "a"]
        assert [1, 2, 3, 4, 5] == [e.version for e in events if e.stream == "b"]
        assert [1, 2, 3] == [e.version for e in events if e.stream == "c"]
        assert ["a", "b", "c"] == store.streams()
        assert 5 == store.stream_version("a")

    def test_read_all_pages_through_batches_after_seq_and_limit(self, store: EventStore) -> None:
        store.append([note("s", i) for i in range(25)])
        assert list(range(11, 26)) == [e.seq for e in store.read_all(after_seq=10)]
        assert [11, 12, 13] == [e.seq for e in store.read_all(after_seq=10, limit=3)]
        batches = list(store.iter_row_batches(batch=10))
        assert [10, 10, 5] == [len(b) for b in batches]

    def test_read_candidate_returns_only_that_digest(self, store: EventStore) -> None:
        store.append([registered(W, X), registered(W, Y), stage_started(W, X, 1)])
        assert [1, 3] == [e.seq for e in store.read_candidate(W, X)]

    def test_batch_order_is_preserved(self, store: EventStore) -> None:
        batch = [note(W, i) for i in range(20)]
        recorded = store.append(batch)
        assert list(range(20)) == [e.payload["i"] for e in store.read_stream(W)]
        assert list(range(1, 21)) == [e.version for e in recorded]
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(recorded))

    def test_append_refuses_events_of_several_streams(self, store: EventStore) -> None:
        with pytest.raises(LedgerError, match="one stream"):
            store.append([note("a", 1), note("b", 1)])
        assert 0 == store.count()

    def test_payload_that_is_not_plain_json_is_refused(self, store: EventStore) -> None:
        event = NewEvent(stream=W, kind=EventKind.NOTE_POSTED, actor="me", payload={"at": datetime.now()})
        with pytest.raises(LedgerError, match="not plain JSON"):
            store.append_one(event)

    # -- optimistic concurrency ---------------------------------------------------------------------

    def test_stale_expected_version_raises_conflict_naming_stream_expected_and_actual(
        self, store: EventStore
    ) -> None:
        store.append_one(note(W, 1), expected_version=0)
        store.append_one(note(W, 2), expected_version=1)
        with pytest.raises(ConcurrencyConflict) as info:
            store.append_one(note(W, 3), expected_version=1)
        assert "hello-web" in str(info.value) and "expected version 1" in str(info.value)
        assert "actual 2" in str(info.value)
        assert 3 == info.value.exit_code
        assert 2 == store.count()

    def test_two_writers_with_the_same_expected_version_second_conflicts(self, url: str) -> None:
        first, second = EventStore.open(url), EventStore.open(url)
        try:
            seen = first.stream_version(W)
            assert seen == second.stream_version(W)
            first.append_one(note(W, 1), expected_version=seen)
            with pytest.raises(ConcurrencyConflict):
                second.append_one(note(W, 2), expected_version=seen)
        finally:
            first.close()
            second.close()

    def test_unique_constraint_violation_becomes_concurrency_conflict(
        self, store: EventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer whose view of the head is stale collides on (stream, version)/seq in the database."""
        store.append_one(note(W, 1))
        monkeypatch.setattr(store, "_head", lambda row: (0, GENESIS_HASH, 0))
        with pytest.raises(ConcurrencyConflict, match="taken by another writer"):
            store.append_one(note(W, 2))
        assert 1 == store.count()

    def test_database_refuses_duplicate_stream_version_from_a_plain_client(
        self, url: str, store: EventStore
    ) -> None:
        first = store.append_one(note(W, 1))
        p = self.placeholder
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            self.raw(
                url,
                f"INSERT INTO events (seq, event_id, stream, version, kind, candidate, stage, actor, recorded_at, "
                f"payload, prev_hash, hash) VALUES ({', '.join([p] * 12)})",
                (
                    2,
                    "e2",
                    W,
                    1,
                    "note.posted",
                    None,
                    None,
                    "x",
                    first.recorded_at,
                    "{}",
                    first.hash,
                    "0" * 64,
                ),
            )

    # -- atomicity and rules ------------------------------------------------------------------------

    def test_batch_whose_second_event_breaks_a_rule_writes_nothing(self, store: EventStore) -> None:
        with pytest.raises(RuleViolation):
            store.append([registered(W, X), stage_started(W, X, 2)])
        assert 0 == store.count()
        assert (0, GENESIS_HASH) == store.head()

    def test_stage2_before_stage1_pass_is_refused(self, store: EventStore) -> None:
        store.append([registered(W, X), stage_started(W, X, 1), stage_result(W, X, 1, "fail")])
        with pytest.raises(RuleViolation, match="stage 1"):
            store.append_one(stage_started(W, X, 2))
        store.append_one(stage_result(W, X, 1, "pass"))
        store.append_one(stage_started(W, X, 2))

    def test_emergency_exception_skipping_stage1_allows_stage2(self, store: EventStore) -> None:
        store.append([registered(W, X), emergency(W, X, skip_stage=1), stage_started(W, X, 2)])
        assert 3 == store.stream_version(W)

    def test_stage_result_whose_document_names_another_digest_is_refused(self, store: EventStore) -> None:
        store.append([registered(W, X), stage_started(W, X, 1)])
        with pytest.raises(RuleViolation, match="never stands for another"):
            store.append_one(stage_result(W, X, 1, "pass", doc_digest=Y))

    def test_stage1_pass_for_x_does_not_allow_stage2_for_y(self, store: EventStore) -> None:
        store.append([registered(W, X), registered(W, Y), stage_result(W, X, 1, "pass")])
        with pytest.raises(RuleViolation, match="same digest"):
            store.append_one(stage_started(W, Y, 2))
        store.append_one(stage_started(W, X, 2))

    def test_unregistered_candidate_is_refused(self, store: EventStore) -> None:
        with pytest.raises(RuleViolation, match="not registered"):
            store.append_one(stage_started(W, X, 1))

    def test_rules_see_only_the_same_stream(self, store: EventStore) -> None:
        store.append([registered("other", X), stage_result("other", X, 1, "pass")])
        store.append_one(registered(W, X))
        with pytest.raises(RuleViolation):
            store.append_one(stage_started(W, X, 2))

    # -- the chain ----------------------------------------------------------------------------------

    def test_chain_verifies_and_matches_the_domain_hash(self, store: EventStore) -> None:
        store.append([registered(W, X), stage_started(W, X, 1), stage_result(W, X, 1, "pass")])
        store.append_one(
            NewEvent(
                stream="ü-stream",
                kind=EventKind.NOTE_POSTED,
                actor="Zoë",
                payload={"text": 'naïve "quoted" \\ \n\t ☃', "n": [1, 2.5, None, True]},
            )
        )
        events = list(store.read_all())
        assert all(e.hash == e.expected_hash() for e in events)
        assert GENESIS_HASH == events[0].prev_hash
        report = verify(store)
        assert (True, 4, None, None) == (
            report.ok,
            report.events_checked,
            report.first_bad_seq,
            report.problem,
        )
        assert store.head() == (report.head_seq, report.head_hash)

    def test_export_writes_one_canonical_envelope_per_line(self, store: EventStore) -> None:
        store.append([registered(W, X), stage_started(W, X, 1)])
        buf = io.StringIO()
        assert 2 == export_jsonl(store, buf)
        lines = buf.getvalue().splitlines()
        for line, event in zip(lines, store.read_all()):
            data = json.loads(line)
            assert event.model_dump() == data
            assert json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == line
            assert (
                compute_hash(data["prev_hash"], {k: v for k, v in data.items() if k != "hash"})
                == data["hash"]
            )

    # -- append-only in the database itself ---------------------------------------------------------

    def test_plain_client_update_is_refused_by_the_database(self, url: str, store: EventStore) -> None:
        store.append_one(note(W, 1))
        with pytest.raises(Exception, match="append-only"):
            self.raw(url, "UPDATE events SET actor = 'mallory'")
        assert "worker" == store.read_stream(W)[0].actor

    def test_plain_client_delete_is_refused_by_the_database(self, url: str, store: EventStore) -> None:
        store.append_one(note(W, 1))
        with pytest.raises(Exception, match="append-only"):
            self.raw(url, "DELETE FROM events")
        assert 1 == store.count()

    # -- tampering ----------------------------------------------------------------------------------

    def _ten(self, store: EventStore) -> list[RecordedEvent]:
        store.append([registered(W, X), stage_started(W, X, 1), stage_result(W, X, 1, "pass")])
        for i in range(7):
            store.append_one(note(W, i))
        return list(store.read_all())

    def test_edited_payload_is_detected_at_its_seq(self, url: str, store: EventStore) -> None:
        self._ten(store)
        self.drop_triggers(url)
        self.raw(
            url, f"UPDATE events SET payload = {self.placeholder} WHERE seq = 4", ('{"i":0,"text":"forged"}',)
        )
        report = verify(store)
        assert (False, 4, "edited") == (report.ok, report.first_bad_seq, report.problem)
        assert 3 == report.events_checked

    def test_edited_row_with_recomputed_hash_is_detected_at_its_seq(
        self, url: str, store: EventStore
    ) -> None:
        events = self._ten(store)
        target = events[5]
        forged_payload = '{"i":99,"text":"forged"}'
        forged_hash = row_hash(
            target.seq,
            target.event_id,
            target.stream,
            target.version,
            target.kind,
            target.candidate,
            target.stage,
            target.actor,
            target.recorded_at,
            forged_payload,
            target.prev_hash,
        )
        self.drop_triggers(url)
        p = self.placeholder
        self.raw(
            url,
            f"UPDATE events SET payload = {p}, hash = {p} WHERE seq = {p}",
            (forged_payload, forged_hash, 6),
        )
        report = verify(store)
        assert (False, 6, "edited") == (report.ok, report.first_bad_seq, report.problem)

    def test_deleted_row_is_detected_as_missing(self, url: str, store: EventStore) -> None:
        self._ten(store)
        self.drop_triggers(url)
        self.raw(url, "DELETE FROM events WHERE seq = 5")
        report = verify(store)
        assert (False, 5, "missing") == (report.ok, report.first_bad_seq, report.problem)

    def test_swapped_rows_are_detected_as_reordered(self, url: str, store: EventStore) -> None:
        self._ten(store)
        self.drop_triggers(url)
        self.swap_contents(url, 3, 7)
        report = verify(store)
        assert (False, 3, "reordered") == (report.ok, report.first_bad_seq, report.problem)

    def test_adjacent_swap_is_detected_as_reordered(self, url: str, store: EventStore) -> None:
        self._ten(store)
        self.drop_triggers(url)
        self.swap_contents(url, 8, 9)
        report = verify(store)
        assert (False, 8, "reordered") == (report.ok, report.first_bad_seq, report.problem)

    # -- schema -------------------------------------------------------------------------------------

    def test_schema_version_is_recorded_and_reopening_keeps_events(self, url: str, store: EventStore) -> None:
        store.append_one(note(W, 1))
        assert [(str(schema.SCHEMA_VERSION),)] == self.raw(
            url, "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
        )
        again = EventStore.open(url)
        try:
            assert 1 == again.count()
        finally:
            again.close()

    def test_an_older_schema_is_migrated_on_open(self, url: str, store: EventStore) -> None:
        store.append_one(note(W, 1))
        self.raw(url, "UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'")
        self.forget_version_2(url)
        again = EventStore.open(url)
        try:
            again.append_one(note(W, 2))
            assert [(str(schema.SCHEMA_VERSION),)] == self.raw(
                url, "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
            )
            assert verify(again).ok
        finally:
            again.close()

    def forget_version_2(self, url: str) -> None:
        """Undo what migration 1 -> 2 did: the old (stream, candidate, seq) index comes back."""
        self.raw(url, "DROP INDEX ix_events_stream_candidate_kind_seq")
        self.raw(url, "CREATE INDEX ix_events_stream_candidate_seq ON events (stream, candidate, seq)")

    def test_a_newer_schema_version_is_refused(self, url: str, store: EventStore) -> None:
        self.raw(url, "UPDATE ledger_meta SET value = '999' WHERE key = 'schema_version'")
        with pytest.raises(LedgerError, match="newer than this program"):
            EventStore.open(url)

    # -- many processes -----------------------------------------------------------------------------

    @pytest.mark.slow
    @pytest.mark.timeout(180)
    def test_eight_processes_appending_leave_a_gap_free_chain(self, url: str, store: EventStore) -> None:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=append_worker, args=(url, w, 1000)) for w in range(8)]
        started = time.monotonic()
        for p in procs:
            p.start()
        for p in procs:
            p.join(170)
        assert [0] * 8 == [p.exitcode for p in procs]
        assert time.monotonic() - started < 170
        assert 8000 == store.count()
        assert (8000, store.head()[1]) == store.head()
        seqs = [e.seq for e in store.read_all()]
        assert list(range(1, 8001)) == seqs
        for s in range(4):
            assert list(range(1, 2001)) == [e.version for e in store.read_stream(f"mp-{s}")]
        report = verify(store)
        assert (True, 8000) == (report.ok, report.events_checked)

    @pytest.mark.slow
    @pytest.mark.timeout(120)
    def test_writer_killed_with_sigkill_leaves_complete_events_and_a_valid_chain(
        self, url: str, store: EventStore
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=append_forever, args=(url,))
        proc.start()
        deadline = time.monotonic() + 60
        while store.count() < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()  # SIGKILL, mid-append
        proc.join(10)
        assert -9 == proc.exitcode
        events = list(store.read_all())
        assert len(events) >= 300
        assert 0 == len(events) % 3, "a batch of three was partly stored"
        for first, second, third in zip(events[0::3], events[1::3], events[2::3]):
            assert (first.candidate, first.candidate) == (second.candidate, third.candidate)
            assert "pass" == third.payload["status"]
        assert verify(store).ok
        store.append_one(note("after", 1))  # the ledger is usable after the crash
        assert verify(store).ok


class TestSQLiteEventStore(EventStoreContract):
    """The contract on a SQLite file."""

    placeholder = "?"

    @pytest.fixture
    def url(self, sqlite_url: str) -> str:
        return sqlite_url

    def raw_connect(self, url: str) -> Any:
        return sqlite3.connect(url.removeprefix("sqlite:///"))

    def drop_triggers(self, url: str) -> None:
        self.raw(url, "DROP TRIGGER events_no_update")
        self.raw(url, "DROP TRIGGER events_no_delete")

    def test_sqlite_runs_in_wal_mode(self, url: str, store: EventStore) -> None:
        assert [("wal",)] == self.raw(url, "PRAGMA journal_mode")

    def test_unopenable_file_raises_ledger_error_not_sqlite_error(self, tmp_path: Any) -> None:
        (tmp_path / "not-a-db").write_bytes(b"this is not a database file at all" * 100)
        with pytest.raises(LedgerError, match="open failed at sqlite") as info:
            EventStore.open(f"sqlite:///{tmp_path / 'not-a-db'}")
        assert not isinstance(info.value, sqlite3.Error)


@pytest.mark.postgres
class TestPostgresEventStore(EventStoreContract):
    """The contract on a fresh PostgreSQL database."""

    placeholder = "%s"

    @pytest.fixture
    def url(self, pg_database_url: str) -> str:
        return pg_database_url

    def raw_connect(self, url: str) -> Any:
        import psycopg

        return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def drop_triggers(self, url: str) -> None:
        self.raw(url, "DROP TRIGGER events_no_update_delete ON events")

    def test_planner_statistics_are_refreshed_when_the_ledger_doubles(
        self, url: str, store: EventStore
    ) -> None:
        """Without autovacuum, prepared plans chosen on a small table would scan the whole ledger."""
        store.append([note(W, i) for i in range(1000)])
        store.append([note(W, i) for i in range(100)])  # crosses 1,024: ANALYZE events
        [(tuples,)] = self.raw(url, "SELECT reltuples::float FROM pg_class WHERE relname = 'events'")
        assert 1100.0 == tuples

    def test_postgres_refuses_truncate(self, url: str, store: EventStore) -> None:
        store.append_one(note(W, 1))
        with pytest.raises(Exception, match="append-only"):
            self.raw(url, "TRUNCATE events")

    def test_plain_psql_update_is_refused(self, url: str, store: EventStore) -> None:
        import shutil
        import subprocess

        if shutil.which("psql") is None:
            pytest.skip("psql not installed")
        store.append_one(note(W, 1))
        done = subprocess.run(
            [
                "psql",
                url.replace("postgresql+psycopg://", "postgresql://"),
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "UPDATE events SET actor = 'mallory'",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert 0 != done.returncode
        assert "append-only" in done.stderr

    def test_unreachable_server_raises_ledger_error_with_password_hidden(self) -> None:
        with pytest.raises(LedgerError) as info:
            EventStore.open("postgresql://postgres:hunter2@127.0.0.1:1/nowhere")
        assert "hunter2" not in str(info.value)
        assert "postgres:***@127.0.0.1:1/nowhere" in str(info.value)
        assert "open failed" in str(info.value)


# -- backend-independent pins ------------------------------------------------------------------------


def test_envelope_text_is_byte_identical_to_domain_canonical_json() -> None:
    payload = {"b": [1, 2.5, None, {"z": 'ü\u2028"\\'}], "a": "\x00\x1f ☃", "n": -0.0, "big": 10**30}
    payload_text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    env = {
        "seq": 7,
        "event_id": "id-\u00e9",
        "stream": 's"t',
        "version": 3,
        "kind": "note.posted",
        "candidate": None,
        "stage": 2,
        "actor": "Zoë\n",
        "recorded_at": "2026-01-01T00:00:00.000000+00:00",
        "payload": payload,
        "prev_hash": "ab" * 32,
    }
    from railiance_ledger.domain.events import canonical_json

    args = (
        7,
        "id-\u00e9",
        's"t',
        3,
        "note.posted",
        None,
        2,
        "Zoë\n",
        env["recorded_at"],
        payload_text,
        "ab" * 32,
    )
    assert canonical_json(env) == envelope_text(*args)
    assert compute_hash("ab" * 32, env) == row_hash(*args)


def test_rule_history_kinds_cover_every_kind_the_rules_read() -> None:
    """The append loads only RULE_HISTORY_KINDS; the rules must decide the same on the full history."""
    d = digest_of("k")
    full = [
        registered(W, d),
        stage_started(W, d, 1),
        stage_result(W, d, 1, "pass"),
        NewEvent(stream=W, kind=EventKind.CANARY_SAMPLE, actor="x", candidate=d, payload={"status": "pass"}),
        NewEvent(stream=W, kind=EventKind.APPROVAL_GRANTED, actor="x", candidate=d, stage=2),
        NewEvent(stream=W, kind=EventKind.WAIVER_GRANTED, actor="x", candidate=d, payload={"skip_stage": 2}),
        emergency(W, d, 2),
    ]
    reduced = [e for e in full if e.kind.value in RULE_HISTORY_KINDS]
    for probe in (stage_started(W, d, 2), stage_started(W, d, 3), stage_result(W, d, 2, "pass")):
        outcomes = []
        for history in (full, reduced):
            try:
                check_append(history, probe)  # type: ignore[arg-type]
                outcomes.append("ok")
            except ValueError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(LedgerError, match="unsupported database"):
        EventStore.open("mysql://root:pw@localhost/x")


def test_ledger_redacts_every_payload_and_actor_whatever_the_caller_passes(tmp_path: Path) -> None:
    """The store is a sink of the one redaction path: a caller that forgets to redact stores no secret."""
    from railiance_ledger.domain.events import EventKind, NewEvent

    store = EventStore.open(f"sqlite:///{tmp_path / 'l.db'}")
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    digest = "sha256:" + "ab" * 32
    [ev] = store.append(
        [
            NewEvent(
                stream="w",
                kind=EventKind.CANDIDATE_REGISTERED,
                actor="alice",
                candidate=digest,
                payload={"image": f"r/w@{digest}", "note": f"token {secret}", "password": "hunter2hunter2"},
            )
        ]
    )
    raw = (tmp_path / "l.db").read_bytes()
    assert secret.encode() not in raw and b"hunter2hunter2" not in raw
    assert "[REDACTED:github-token]" in ev.payload["note"] and "hunter2" not in str(ev.payload)
    assert ev == store.get(ev.event_id)
    store.close()
