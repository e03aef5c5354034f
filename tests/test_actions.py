"""Acting on a workload (issue 11): integrity from a verified checkpoint, the action lease, blockers.

Real databases (a SQLite file and a throwaway PostgreSQL server), real processes for the races, and
``bin/railiance`` subprocesses for the exit codes: a tampered ledger (triggers dropped, then a payload,
an actor or a middle event changed) makes every lifecycle command exit 3 naming the first bad seq,
before the declaration's cluster is asked anything (``KUBECONFIG`` names no file: touching the
environment would be exit 4) and without appending anything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.errors import IntegrityError, LeaseHeld, WorkloadBlocked
from railiance_ledger.ledger.checkpoint import check_integrity, read_checkpoint
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.actions import acting, action_state, resolve_incomplete
from tests.fixtures.ledger import digest_of, registered, stage_result, stage_started

ROOT = Path(__file__).resolve().parents[1]
RAILIANCE = str(ROOT / "bin" / "railiance")
EXAMPLE = ROOT / "examples" / "hello-web"
W = "hello-web"


def note(i: int) -> NewEvent:
    return NewEvent(stream=W, kind=EventKind.NOTE_POSTED, actor="hub", payload={"i": i})


def seed(store: EventStore) -> str:
    d = digest_of("v1")
    store.append([registered(W, d), stage_started(W, d, 1), stage_result(W, d, 1)])
    store.append([note(i) for i in range(4)])
    return d


def drop_triggers(store: EventStore) -> None:
    """What an attacker with database access does first (as tests/test_ledger_store.py does)."""
    statements = (
        ["DROP TRIGGER events_no_update_delete ON events", "DROP TRIGGER events_no_truncate ON events"]
        if store.dialect == "postgresql"
        else ["DROP TRIGGER events_no_update", "DROP TRIGGER events_no_delete"]
    )
    with store.engine.connect() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.commit()


def tamper(store: EventStore, sql: str, params: dict[str, Any]) -> None:
    drop_triggers(store)
    with store.engine.connect() as conn:
        conn.execute(sa.text(sql), params)
        conn.commit()


TAMPERINGS = {
    "payload": ("UPDATE events SET payload = :v WHERE seq = 3", {"v": '{"forged":true}'}, 3),
    "actor": ("UPDATE events SET actor = :v WHERE seq = 2", {"v": "mallory"}, 2),
    "deleted middle event": ("DELETE FROM events WHERE seq = 4", {}, 4),
}


# ---------------------------------------------------------------------------- integrity from the checkpoint


def test_the_check_walks_the_chain_once_then_only_new_events(store: EventStore) -> None:
    seed(store)
    first = check_integrity(store)
    assert first.full and first.head_seq == 7 and read_checkpoint(store) == (7, first.head_hash)
    store.append([note(10), note(11)])
    second = check_integrity(store)
    assert not second.full and second.head_seq == 9
    assert second.events_checked == 3  # the checkpoint row and the two new events
    assert read_checkpoint(store) == (9, second.head_hash)


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampering_before_or_after_the_checkpoint_names_the_first_bad_seq(
    store: EventStore, case: str
) -> None:
    seed(store)
    check_integrity(store)  # the checkpoint is now at seq 7: every tampering below is before it
    sql, params, seq = TAMPERINGS[case]
    tamper(store, sql, params)
    with pytest.raises(IntegrityError) as info:
        check_integrity(store)
    assert info.value.seq == seq and info.value.exit_code == 3
    assert f"seq {seq}" in str(info.value)


def test_an_edit_after_the_checkpoint_is_found_without_a_full_walk(store: EventStore) -> None:
    seed(store)
    check_integrity(store)
    store.append([note(20), note(21)])
    tamper(store, "UPDATE events SET payload = :v WHERE seq = 9", {"v": '{"i":99}'})
    with pytest.raises(IntegrityError, match="seq 9"):
        check_integrity(store)


def test_removed_newest_events_are_found_from_the_checkpoint(store: EventStore) -> None:
    seed(store)
    check_integrity(store)
    tamper(store, "DELETE FROM events WHERE seq >= 6", {})
    with pytest.raises(IntegrityError) as info:
        check_integrity(store)
    assert info.value.seq == 6 and info.value.problem == "missing"


# ---------------------------------------------------------------------------- the lease


def test_a_second_action_is_refused_naming_the_holder_and_the_lease_is_released(store: EventStore) -> None:
    seed(store)
    with acting(store, W, "promote", "alice") as act:
        assert act.lease.holder.startswith("alice@") and f":{os.getpid()}" in act.lease.holder
        with pytest.raises(LeaseHeld) as info, acting(store, W, "rollback", "bob"):
            pytest.fail("the second action must not run")
        assert info.value.holder == act.lease.holder and info.value.action == "promote"
        assert info.value.exit_code == 3 and "promote" in str(info.value)
        assert action_state(store, W).lease is not None
    assert action_state(store, W).lease is None
    kinds = [ev.kind for ev in store.read_stream(W)][-2:]
    assert kinds == [EventKind.LEASE_ACQUIRED, EventKind.LEASE_RELEASED]
    with acting(store, W, "rollback", "bob"):
        pass


def test_an_expired_lease_is_visible_and_taken_over_and_the_old_holder_stops(store: EventStore) -> None:
    seed(store)
    later = datetime.now(UTC) + timedelta(hours=2)
    outer = acting(store, W, "observe", "alice", duration=timedelta(minutes=1))
    crashed = outer.__enter__()  # the holder "crashes": it never releases
    with acting(store, W, "rollback", "bob", now=lambda: later) as act:
        assert act.taken_over is not None and act.taken_over.holder == crashed.lease.holder
        with pytest.raises(LeaseHeld, match="taken over"):
            crashed.store.append([note(30)])  # the old holder wakes up: its next append is refused
    acquired = [ev for ev in store.read_stream(W) if ev.kind == EventKind.LEASE_ACQUIRED]
    assert acquired[-1].payload["took_over"]["holder"] == crashed.lease.holder


def test_appends_of_the_action_follow_other_writers_that_do_not_take_the_lease(store: EventStore) -> None:
    seed(store)
    with acting(store, W, "observe", "alice") as act:
        store.append([note(40)])  # e.g. a sensor's note, appended outside the action
        recorded = act.store.append([note(41)])
        assert recorded[0].version == act.store.version


def test_an_incomplete_rollback_blocks_every_action_until_resolved(store: EventStore) -> None:
    seed(store)
    store.append(
        [
            NewEvent(
                stream=W,
                kind=EventKind.ROLLBACK_INCOMPLETE,
                actor="op",
                payload={
                    "reason": "helm rollback timed out",
                    "remaining_cleanup": ["routing weight 100 to hello-web-canary"],
                    "manual_command": "helm rollback hello-web 1 -n hello-web",
                },
            )
        ]
    )
    for action in ("deploy", "observe", "promote", "approve", "waive", "exception"):
        with (
            pytest.raises(WorkloadBlocked, match="helm rollback hello-web 1"),
            acting(store, W, action, "op"),
        ):
            pytest.fail("a blocked workload must not act")
    with acting(store, W, "resolve", "op") as act:
        resolve_incomplete(act, W, "op", "routing reset by hand")
    assert action_state(store, W).blocker is None
    with acting(store, W, "promote", "op"):
        pass


HOLDER = """
import sys, time
from pathlib import Path
from railiance_ledger.errors import LeaseHeld
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.actions import acting
url, go, hold = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
store = EventStore.open(url)
while not go.exists():
    time.sleep(0.005)
try:
    with acting(store, "hello-web", "promote", "racer") as act:
        if len(sys.argv) > 4:  # record an intent (a Stage 3 start) before "touching the cluster"
            from railiance_ledger.domain.events import EventKind, NewEvent
            act.store.append([NewEvent(stream="hello-web", kind=EventKind.STAGE_STARTED, actor="racer",
                candidate=sys.argv[4], stage=3, payload={"release": {"name": "hello-web", "namespace": "hello-web"}})])
        print("ACTED", flush=True)
        time.sleep(hold)
except LeaseHeld as exc:
    print("REFUSED", exc.holder, flush=True)
    sys.exit(3)
"""


def _spawn(url: str, go: Path, hold: float, *intent: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(go), str(hold), *intent],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_two_processes_racing_for_the_lease_exactly_one_acts(
    ledger_url: str, store: EventStore, tmp_path: Path
) -> None:
    seed(store)
    check_integrity(store)
    go = tmp_path / "go"
    procs = [_spawn(ledger_url, go, 3.0) for _ in range(2)]
    time.sleep(1.0)  # both processes imported and are waiting for the start signal
    go.touch()
    results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    refused = next(out for code, out in results if code == 3)
    assert "REFUSED racer@" in refused
    assert check_integrity(store).head_seq == len(store.read_stream(W))
    assert sum(ev.kind == EventKind.LEASE_ACQUIRED for ev in store.read_stream(W)) == 1


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[dict[str, str], Path]]:
    app = tmp_path / "hello-web"
    shutil.copytree(EXAMPLE, app)
    EventStore.open(sqlite_url).close()  # an explicit ledger URL must name an existing ledger (issue 13)
    env = {
        **os.environ,
        "RAILIANCE_LEDGER_URL": sqlite_url,
        "RAILIANCE_HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        "RAILIANCE_OPERATOR": "alice",
    }
    env.pop("RAILIANCE_STATEHUB_URL", None)
    yield env, app


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [RAILIANCE, *args], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    return proc.returncode, proc.stdout + proc.stderr


def lifecycle_commands(app: Path, digest: str) -> list[list[str]]:
    image = f"registry.local/hello-web@{digest}"
    a = str(app)
    return [
        ["deploy", "--stage", "2", a, "--image", image],
        ["observe", a, "--image", image],
        ["promote", a, "--image", image],
        ["rollback", a, "--reason", "latency"],
        ["approve", a, "--stage", "2", "--image", image, "--operator", "alice"],
        ["approve", a, "--revoke", "--image", image, "--operator", "alice", "--reason", "changed my mind"],
        ["waive", a, "--gate", "local_health", "--reason", "flaky", "--image", image, "--operator", "alice"],
        ["exception", a, "--skip-stage", "1", "--reason", "outage", "--image", image, "--operator", "alice"],
    ]


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_every_lifecycle_command_on_a_tampered_ledger_exits_3_and_does_nothing(
    cli_env: tuple[dict[str, str], Path], sqlite_url: str, case: str
) -> None:
    env, app = cli_env
    store = EventStore.open(sqlite_url)
    try:
        digest = seed(store)
        check_integrity(store)
        sql, params, seq = TAMPERINGS[case]
        tamper(store, sql, params)
        before = store.count()
        for args in lifecycle_commands(app, digest):
            code, out = _cli(env, *args)
            assert code == 3, (args, out)
            assert f"seq {seq}" in out, (args, out)
        assert store.count() == before  # nothing appended, not even a lease
        code, out = _cli(env, "status", W)
        assert code == 0 and "THE LEDGER DOES NOT VERIFY" in out
        for read in (["status", W], ["history", W], ["lineage", W]):
            code, out = _cli(env, read[0], "--strict", *read[1:])
            assert code == 3 and f"seq {seq}" in out, (read, out)
    finally:
        store.close()


def test_a_command_against_a_held_lease_exits_3_naming_the_holder_before_the_cluster(
    cli_env: tuple[dict[str, str], Path], sqlite_url: str
) -> None:
    env, app = cli_env
    store = EventStore.open(sqlite_url)
    try:
        digest = seed(store)
        with acting(store, W, "promote", "carol") as act:
            before = store.count()
            for args in lifecycle_commands(app, digest):
                code, out = _cli(env, *args)
                assert code == 3, (args, out)
                assert act.lease.holder in out, (args, out)
            assert store.count() == before
            code, out = _cli(env, "--json", "status", W)
            assert code == 0 and act.lease.holder in out
    finally:
        store.close()


def test_a_sigkilled_holder_leaves_a_visible_lease_that_expires_and_is_taken_over(
    cli_env: tuple[dict[str, str], Path], sqlite_url: str, tmp_path: Path
) -> None:
    env, _app = cli_env
    store = EventStore.open(sqlite_url)
    try:
        seed(store)
        go = tmp_path / "go"
        go.touch()
        holder = _spawn(sqlite_url, go, 600.0)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ACTED"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        code, out = _cli(env, "--json", "status", W)
        lease = json.loads(out)["lease"]
        assert code == 0 and lease["holder"].endswith(f":{holder.pid}") and lease["expired"] is False
        code, out = _cli(env, "waive", str(_app), "--gate", "g", "--reason", "r", "--operator", "alice")
        assert code == 3 and f":{holder.pid}" in out
        later = datetime.now(UTC) + timedelta(hours=3)
        with acting(store, W, "rollback", "bob", now=lambda: later) as act:
            assert act.taken_over is not None and act.taken_over.holder == lease["holder"]
        assert action_state(store, W).lease is None
    finally:
        store.close()


def test_an_action_that_fails_after_recording_its_intent_ends_with_a_blocking_incomplete_rollback(
    store: EventStore,
) -> None:
    from railiance_ledger.errors import AdapterUnavailable

    d = seed(store)
    with pytest.raises(AdapterUnavailable), acting(store, W, "deploy", "alice") as act:
        act.store.append(
            [
                NewEvent(
                    stream=W,
                    kind=EventKind.STAGE_STARTED,
                    actor="alice",
                    candidate=d,
                    stage=2,
                    payload={"release": {"name": "hello-web-canary", "namespace": "hello-web"}},
                ),
                NewEvent(
                    stream=W,
                    kind=EventKind.ROUTING_CHANGED,
                    actor="alice",
                    candidate=d,
                    stage=2,
                    payload={"action": "canary weight 10"},
                ),
            ]
        )
        raise AdapterUnavailable("connection reset", system="kubernetes", operation="read pods")
    blocker = action_state(store, W).blocker
    assert blocker is not None and "connection reset" in blocker.reason
    assert any("hello-web-canary" in item for item in blocker.remaining)
    assert any("canary weight 10" in item for item in blocker.remaining)
    assert "railiance rollback" in blocker.manual_command
    assert action_state(store, W).lease is None  # released all the same
    with pytest.raises(WorkloadBlocked), acting(store, W, "observe", "alice"):
        pytest.fail("blocked")
    with acting(store, W, "rollback", "bob") as act:  # a rollback that completes resolves it
        act.store.append(
            [NewEvent(stream=W, kind=EventKind.ROLLBACK_COMPLETED, actor="bob", candidate=d, payload={})]
        )
    assert action_state(store, W).blocker is None


def test_an_action_that_fails_before_any_intent_records_nothing_but_its_lease(store: EventStore) -> None:
    seed(store)
    with pytest.raises(RuntimeError), acting(store, W, "promote", "alice"):
        raise RuntimeError("precheck could not ask")
    kinds = [ev.kind for ev in store.read_stream(W)][-2:]
    assert kinds == [EventKind.LEASE_ACQUIRED, EventKind.LEASE_RELEASED]
    assert action_state(store, W).blocker is None


def test_a_holder_killed_after_its_intent_leaves_a_blocking_incomplete_rollback_once_expired(
    store: EventStore, ledger_url: str, tmp_path: Path
) -> None:
    d = seed(store)
    # Stage 3 needs Stage 2 passed, so that the holder's stage.started (its intent) is accepted.
    store.append(
        [
            stage_started(W, d, 2),
            stage_result(W, d, 2),
        ]
    )
    go = tmp_path / "go"
    go.touch()
    holder = _spawn(ledger_url, go, 600.0, d)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ACTED"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    later = datetime.now(UTC) + timedelta(hours=3)
    with (
        pytest.raises(WorkloadBlocked, match="stage 3"),
        acting(store, W, "promote", "bob", now=lambda: later),
    ):
        pytest.fail("blocked")
    state = action_state(store, W)
    assert state.blocker is not None and state.lease is None
    assert f":{holder.pid}" in state.blocker.reason
    with acting(store, W, "rollback", "bob", now=lambda: later):
        pass  # a rollback may act (and its completion resolves the block)
