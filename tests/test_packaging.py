"""Packaging: the lock file bootstrap installs, the PEP 639 license field, and bootstrap waiting for
apt's locks instead of failing (scripts/apt-wait)."""

from __future__ import annotations

import os
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APT_WAIT = ROOT / "scripts" / "apt-wait"


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements-dev.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)$", line.strip())
        if m:
            pins[m[1].lower().replace("_", "-")] = m[2]
    return pins


def test_lock_pins_every_dependency_and_dev_extra_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]}
    pins = _locked()
    assert wanted - pins.keys() == set()
    assert "pytest-xdist" in pins
    header = (ROOT / "requirements-dev.lock").read_text().splitlines()[:3]
    assert any("uv pip compile pyproject.toml --extra dev" in line for line in header)


def test_bootstrap_installs_from_the_lock_with_a_pinned_uv() -> None:
    text = (ROOT / "scripts" / "bootstrap").read_text()
    assert "-r requirements-dev.lock" in text
    assert re.search(r"^UV_VERSION=\d+\.\d+\.\d+$", text, re.MULTILINE)
    assert "scripts/apt-wait" in text


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A lock file whose fcntl lock another process holds (as apt does) until it is killed."""
    lock = tmp_path / "lock-frontend"
    lock.touch()
    holder = subprocess.Popen(
        [
            "python3",
            "-c",
            (
                "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX);"
                " print('held', flush=True); time.sleep(300)"
            ),
            str(lock),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    yield lock, holder
    holder.kill()
    holder.wait()


def _env(*locks: Path) -> dict[str, str]:
    return {**os.environ, "RAILIANCE_APT_LOCKS": ":".join(str(p) for p in locks)}


def test_apt_wait_returns_at_once_when_nothing_holds_the_locks(tmp_path: Path) -> None:
    free = tmp_path / "lock"
    free.touch()
    done = subprocess.run(
        [str(APT_WAIT), "5"], env=_env(free, tmp_path / "missing"), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_apt_wait_times_out_naming_the_held_lock(held_lock: tuple[Path, subprocess.Popen[bytes]]) -> None:
    lock, _ = held_lock
    done = subprocess.run([str(APT_WAIT), "1"], env=_env(lock), capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert f"still locked after 1s: {lock}" in done.stderr


def test_apt_wait_waits_until_the_other_process_lets_go(
    held_lock: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    lock, holder = held_lock
    waiter = subprocess.Popen([str(APT_WAIT), "120"], env=_env(lock), stderr=subprocess.PIPE, text=True)
    assert waiter.stderr is not None
    assert "another apt/dpkg process holds" in waiter.stderr.readline()
    assert waiter.poll() is None  # still waiting while the lock is held
    time.sleep(1.5)
    assert waiter.poll() is None
    holder.kill()
    holder.wait()
    assert waiter.wait(timeout=60) == 0
