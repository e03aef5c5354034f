"""Loads every fixture module under tests/fixtures/ so each area owns its own file, and groups the
tests that share an expensive per-process server onto one pytest-xdist worker (docs/testing.md,
"Parallel runs")."""

from __future__ import annotations

from pathlib import Path

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
