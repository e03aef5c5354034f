"""Races between real ``bin/railiance`` processes (issue 11), against the real Kubernetes control
plane with the real helm, the real registry, Prometheus and State Hub (the ``cli_stage2`` fixture),
on a SQLite and on a PostgreSQL ledger (``raced``).

Two ``promote`` started together, ``promote`` against ``rollback``, and ``deploy`` against
``observe``: exactly one acts, the other exits 3 naming the holder of the workload's lease; the
ledger verifies, holds one promotion, and lineage keeps the previous stable as the rollback target.
"""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.ledger.store import EventStore
from tests.fixtures.cli import RAILIANCE, CliStage2
from tests.fixtures.stage1 import git

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def raced(request: pytest.FixtureRequest, cli_stage2: CliStage2) -> CliStage2:
    """``cli_stage2`` on each ledger backend (the PostgreSQL one a fresh database of the test server)."""
    if request.param == "sqlite":
        return cli_stage2
    url = str(request.getfixturevalue("pg_database_url"))
    EventStore.open(url).close()  # an explicit ledger URL must name an existing ledger
    return dataclasses.replace(cli_stage2, env={**cli_stage2.env, "RAILIANCE_LEDGER_URL": url}, ledger=url)


def release(c: CliStage2, tag: str, registry_helper: Any, repository: str) -> str:
    (c.app / "RELEASE").write_text(tag + "\n")
    git(c.app, "add", "-A")
    git(c.app, "commit", "-q", "-m", f"release {tag}")
    digest = registry_helper.push_image(repository, tag)
    return f"{c.image.split('@', 1)[0]}@{digest}"


def ready_to_promote(c: CliStage2, image: str) -> None:
    for args in (
        ("run", str(c.app), "--image", image, "--json"),
        ("deploy", "--stage", "2", str(c.app), "--image", image, "--json"),
        ("observe", str(c.app), "--image", image, "--json"),
        ("approve", str(c.app), "--stage", "3", "--image", image, "--operator", "bob", "--json"),
    ):
        code, _doc, out = c.run(*args)
        assert code == 0, (args, out)


def together(c: CliStage2, *commands: tuple[str, ...]) -> list[tuple[int, str]]:
    procs = [
        subprocess.Popen(
            [RAILIANCE, *args],
            env=c.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=c.app.parent,
        )
        for args in commands
    ]
    return [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in procs]


@pytest.mark.timeout(900)  # two full lifecycles (v1 promoted, v2 accepted) before the race; slow under load
@pytest.mark.parametrize("rival", ["promote", "rollback"])
def test_two_actions_raced_from_two_processes_exactly_one_acts(
    raced: CliStage2, registry_helper: Any, registry_repository: str, rival: str
) -> None:
    c = raced
    v1 = release(c, "v1.0.0", registry_helper, registry_repository)
    ready_to_promote(c, v1)
    code, doc, out = c.run("promote", str(c.app), "--image", v1, "--json")
    assert (0, "pass") == (code, doc.get("status")), out
    v2 = release(c, "v2.0.0", registry_helper, registry_repository)
    ready_to_promote(c, v2)

    second = (
        ("promote", str(c.app), "--image", v2, "--json")
        if rival == "promote"
        else ("rollback", str(c.app), "--reason", "raced", "--json")
    )
    results = together(c, ("promote", str(c.app), "--image", v2, "--json"), second)
    codes = [code for code, _ in results]
    assert codes.count(3) == 1, results  # exactly one refused (the lease), the other acted
    if rival == "promote" or codes[0] == 0:
        assert sorted(codes) == [0, 3], results
    loser = next(out for code, out in results if code == 3)
    assert "is held by" in loser or "taken" in loser, loser

    store = EventStore.open(c.ledger)
    try:
        events = store.read_stream("hello-web")
        promotions = [e for e in events if e.kind == EventKind.PROMOTION_COMPLETED]
        lin = lineage(store, "hello-web")
    finally:
        store.close()
    code, doc, out = c.run("ledger", "verify", "--json")
    assert (0, True) == (code, doc.get("ok")), out
    d1, d2 = v1.split("@")[1], v2.split("@")[1]
    if rival == "promote" or codes[0] == 0:  # a promote of v2 won (either process): v2 stable, v1 the target
        assert [e.candidate for e in promotions] == [d1, d2]
        assert (d2, d1) == (lin.current_stable.digest, lin.rollback_target.digest)
    else:  # the rollback won (the promote refused before touching anything)
        assert [e.candidate for e in promotions] == [d1]
    assert all(e.kind != EventKind.LEASE_ACQUIRED or "holder" in e.payload for e in events)


def test_deploy_and_observe_raced_from_two_processes_exactly_one_acts(
    raced: CliStage2, registry_helper: Any, registry_repository: str
) -> None:
    """A canary of v1 is deployed; ``observe`` (the window takes seconds) and a second ``deploy``
    start together: one holds the lease and acts, the other exits 3 before touching anything."""
    c = raced
    v1 = release(c, "v1.0.0", registry_helper, registry_repository)
    for args in (
        ("run", str(c.app), "--image", v1, "--json"),
        ("deploy", "--stage", "2", str(c.app), "--image", v1, "--json"),
    ):
        code, _doc, out = c.run(*args)
        assert code == 0, (args, out)
    before = c.events()
    results = together(
        c,
        ("observe", str(c.app), "--image", v1, "--json"),
        ("deploy", "--stage", "2", str(c.app), "--image", v1, "--json"),
    )
    codes = [code for code, _ in results]
    assert codes.count(3) == 1, results  # exactly one refused (the lease) ...
    winner, loser = (results[0], results[1]) if codes[1] == 3 else (results[1], results[0])
    assert winner[0] in (0, 1), results  # ... the other acted (observed, or deployed / failed a precheck)
    assert "is held by" in loser[1], loser
    after = c.events()[len(before) :]
    leases = [e for e in after if e.kind == EventKind.LEASE_ACQUIRED]
    assert len(leases) == 1, [e.kind for e in after]  # the loser appended nothing, not even a lease
    assert after[-1].kind == EventKind.LEASE_RELEASED
    if codes[0] != 3:  # observe won: its samples and its result, no second canary
        assert any(e.kind == EventKind.CANARY_SAMPLE for e in after)
        assert not any(e.kind == EventKind.STAGE_STARTED for e in after)
    else:  # deploy won: no sample was taken
        assert not any(e.kind == EventKind.CANARY_SAMPLE for e in after)
    code, doc, out = c.run("ledger", "verify", "--json")
    assert (0, True) == (code, doc.get("ok")), out
