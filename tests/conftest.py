"""Loads every fixture module under tests/fixtures/ so each area owns its own file, and groups the
tests that share an expensive per-process server onto one pytest-xdist worker (docs/testing.md,
"Parallel runs")."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)

#: fixture -> xdist group: every test using the fixture runs on the same worker under
#: ``--dist loadgroup``, so the session server behind it starts once per run, not once per worker.
XDIST_GROUPS = {
    "dagster_dev_env": "dagster-dev",  # `dagster dev` with its sensors: ~30 s of CPU to start
}


#: fixtures behind the long tests (a control plane, helm releases, CLI subprocesses, Dagster runs)
HEAVY_FIXTURES = frozenset(
    {"real_kube", "kube_cluster", "canary_env", "cli_stage2", "cli_env", "dagster_dev_env", "dagster_env"}
)


def _weight(item: pytest.Item) -> int:
    """0 for a test marked ``slow``, 1 for one using a heavy fixture, 2 for the rest."""
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())) else 2


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, group in XDIST_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "numprocesses", None):
        # Under xdist the long tests go first (a stable sort: the order within each weight is the
        # collection order, the same on every worker), so the run does not end with one worker
        # still in a 60 s test while the others idle.
        items.sort(key=_weight)


# Fixture setup times: with RAILIANCE_FIXTURE_TIMES=FILE every pytest process (each xdist worker)
# appends one JSON line per fixture to FILE at the end of its session: name, scope, how many setups
# and their total seconds. docs/testing.md ("Where the time goes") is measured with it.
_FIXTURE_TIMES: dict[tuple[str, str], list[float]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None]:
    started = time.perf_counter()
    yield
    entry = _FIXTURE_TIMES.setdefault((fixturedef.argname, fixturedef.scope), [0, 0.0])
    entry[0] += 1
    entry[1] += time.perf_counter() - started


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("RAILIANCE_FIXTURE_TIMES")
    if not out or not _FIXTURE_TIMES:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(out, "a", encoding="utf-8") as fh:
        fh.writelines(
            json.dumps(
                {
                    "worker": worker,
                    "fixture": name,
                    "scope": scope,
                    "setups": count,
                    "seconds": round(total, 3),
                }
            )
            + "\n"
            for (name, scope), (count, total) in sorted(_FIXTURE_TIMES.items())
        )
