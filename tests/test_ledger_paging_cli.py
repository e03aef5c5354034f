"""``railiance history`` and ``lineage`` page by default (``--limit``, ``--before SEQ``, ``--all``), text
and ``--json``; ``railiance ledger rebuild-projections`` rebuilds the tables and refuses a tampered log."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from railiance_ledger.cli import app
from railiance_ledger.ledger.store import EventStore
from tests.fixtures.ledger import digest_of, full_lifecycle, note

W = "hello-web"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite ledger with 60 notes and 60 promotions (7 events each) of ``hello-web``."""
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    monkeypatch.setenv("RAILIANCE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAILIANCE_LEDGER_URL", url)
    monkeypatch.setenv("RAILIANCE_OPERATOR", "alice")
    store = EventStore.open(url)
    try:
        store.append([note(W, i) for i in range(60)])
        previous = None
        for i in range(60):
            d = digest_of(f"cli-{i}")
            store.append(full_lifecycle(W, d, previous, revision=i + 1))
            previous = d
    finally:
        store.close()
    return str(db)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_history_pages_by_default_and_walks_back_with_before(ledger: str) -> None:
    code, out, err = invoke("history", W, "--json")
    assert 0 == code, out
    page = json.loads(out)
    assert 50 == len(page) and 480 == page[-1]["seq"]
    code, out, _ = invoke("history", W, "--json", "--limit", "10", "--before", str(page[0]["seq"]))
    older = json.loads(out)
    assert [e["seq"] for e in older] == list(range(page[0]["seq"] - 10, page[0]["seq"]))
    code, out, _ = invoke("history", W, "--json", "--all")
    assert 480 == len(json.loads(out))
    code, out, err = invoke("history", W, "--limit", "5")
    assert 0 == code and 5 == len(out.strip().splitlines())
    assert "older events: --before 476" in err


def test_lineage_pages_stables_and_keeps_the_rollback_target(ledger: str) -> None:
    code, out, _ = invoke("lineage", W, "--json", "--limit", "5")
    assert 0 == code, out
    data = json.loads(out)
    assert [digest_of(f"cli-{i}") for i in range(55, 60)] == [s["digest"] for s in data["stables"]]
    assert digest_of("cli-58") == data["rollback_target"]["digest"]
    code, out, _ = invoke("lineage", W, "--json", "--limit", "5", "--before", str(data["stables"][0]["seq"]))
    assert [digest_of(f"cli-{i}") for i in range(50, 55)] == [s["digest"] for s in json.loads(out)["stables"]]
    code, out, _ = invoke("lineage", W, "--json")
    assert 50 == len(json.loads(out)["stables"])
    code, out, _ = invoke("lineage", W, "--json", "--all")
    assert 60 == len(json.loads(out)["stables"])
    code, out, err = invoke("lineage", W, "--limit", "3")
    assert 0 == code and "older stables: --before" in err


def test_rebuild_projections_rebuilds_and_refuses_a_tampered_log(ledger: str) -> None:
    code, out, _ = invoke("ledger", "rebuild-projections", "--json")
    assert 0 == code, out
    assert 480 == json.loads(out)["events_replayed"] + 60  # the notes are not projected
    code, out, _ = invoke("status", W, "--json")
    assert digest_of("cli-59") == json.loads(out)["current_stable"]
    with sqlite3.connect(ledger) as con:
        con.execute("DROP TRIGGER events_no_update")
        con.execute("UPDATE events SET actor = 'mallory' WHERE seq = 70")
    code, out, _ = invoke("ledger", "rebuild-projections")
    assert 3 == code, out
