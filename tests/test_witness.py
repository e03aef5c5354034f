"""State Hub as the ledger's external witness (issue 14, item 6).

Every State Hub note names the ledger head (seq:hash) at the time it was posted. A ledger whose
newest events were cut off still verifies on its own (what remains links up), but
``ledger verify --witness statehub`` finds the heads State Hub recorded missing and exits 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from railiance_ledger.adapters.statehub import StateHub
from railiance_ledger.cli import app
from railiance_ledger.lifecycle import waivers
from railiance_ledger.lifecycle.notes import LEDGER_HEAD_REF, witnessed_heads
from tests.fixtures.statehub import StateHubServer
from tests.test_approvals import register, write_app


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from railiance_ledger.ledger.store import EventStore

    s = EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


@pytest.fixture
def hub(statehub: StateHubServer) -> Iterator[StateHub]:
    with httpx.Client(trust_env=False) as client:
        yield StateHub(client, statehub.url, backoff=0.01, max_backoff=0.02)


def noted_waivers(store: Any, tmp_path: Path, hub: StateHub, n: int) -> Any:
    decl = write_app(tmp_path, name="blog", category="internal-service")
    register(store, decl)
    for i in range(n):
        waivers.record_waiver(
            store=store, decl=decl, gate="local_health", operator="alice", reason=f"flaky {i}", statehub=hub
        )
    return decl


def copy_prefix(src: Any, dst_url: str, keep: int) -> None:
    """A copy of the first ``keep`` events, rows unchanged: the tail cut off."""
    from railiance_ledger.ledger.schema import events
    from railiance_ledger.ledger.store import EventStore

    with src.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(events).where(events.c.seq <= keep))]
    dst = EventStore.open(dst_url)
    with dst.engine.begin() as conn:
        conn.execute(sa.insert(events), rows)
    dst.close()


def test_every_note_carries_the_ledger_head(store: Any, tmp_path: Path, hub: StateHub, statehub: Any) -> None:
    noted_waivers(store, tmp_path, hub, 2)
    refs = [
        e["ref"] for note in statehub.notes for e in note["evidence"] if e["ref"].startswith(LEDGER_HEAD_REF)
    ]
    assert len(refs) == 2
    heads = witnessed_heads(hub)
    by_seq = {ev.seq: ev.hash for ev in store.read_all()}
    assert heads and all(by_seq[seq] == digest for seq, digest in heads)


def test_truncated_ledger_passes_plain_verify_and_fails_the_witness(
    store: Any, tmp_path: Path, hub: StateHub, statehub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    noted_waivers(store, tmp_path, hub, 3)
    monkeypatch.setenv("RAILIANCE_STATEHUB_URL", statehub.url)
    whole = CliRunner().invoke(
        app, ["--ledger", store.url, "ledger", "verify", "--witness", "statehub", "--json"]
    )
    assert whole.exit_code == 0, whole.output
    assert "3 witnessed heads match" in json.loads(whole.output)["detail"]

    head_seq = store.head()[0]
    cut_url = f"sqlite:///{tmp_path / 'cut.db'}"
    copy_prefix(store, cut_url, head_seq - 2)  # the last waiver and its note.posted are gone
    plain = CliRunner().invoke(app, ["--ledger", cut_url, "ledger", "verify", "--json"])
    assert plain.exit_code == 0, plain.output
    witnessed = CliRunner().invoke(
        app, ["--ledger", cut_url, "ledger", "verify", "--witness", "statehub", "--json"]
    )
    assert witnessed.exit_code == 3, witnessed.output
    report = json.loads(witnessed.output)
    assert report["problem"] == "missing" and report["detail"].startswith("witness:")
    assert f"ledger ends at seq {head_seq - 2}" in report["detail"]


def test_witness_without_a_state_hub_is_invalid_input(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAILIANCE_STATEHUB_URL", raising=False)
    result = CliRunner().invoke(app, ["--ledger", store.url, "ledger", "verify", "--witness", "statehub"])
    assert result.exit_code == 2 and "RAILIANCE_STATEHUB_URL" in result.output
