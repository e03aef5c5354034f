"""The adapters Stage 1 uses (process, health, helm, git) and its secret scanner, against real things."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from railiance_ledger.adapters.git import GitRepo
from railiance_ledger.adapters.health import HttpProbe
from railiance_ledger.adapters.helm import Helm, HelmCommandFailed
from railiance_ledger.adapters.process import LocalProcess, run_command
from railiance_ledger.domain.manifest_scan import scan_manifest, scan_values
from railiance_ledger.errors import AdapterNotFound, AdapterUnavailable
from tests.fixtures.stage1 import EXAMPLE, STAGE1_APPS, git, helm_binary

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------- process


def test_stage1_run_command_keeps_a_bounded_redacted_tail(tmp_path: Path) -> None:
    """Output is cut to the tail and every secret in it is replaced by a marker."""
    code = "import sys\nfor i in range(5000): print('line', i)\nprint('DATABASE_PASSWORD=Sup3r-Secret-Pa55word!')\nsys.exit(2)"
    res = run_command(argv=[PY, "-c", code], cwd=tmp_path, timeout=30, tail_bytes=512)

    assert (2, False) == (res.exit_code, res.timed_out)
    assert len(res.output_tail) <= 512 + len("[...]\n")
    assert "line 4999" in res.output_tail and "line 0\n" not in res.output_tail
    assert "Sup3r-Secret-Pa55word!" not in res.output_tail
    assert "DATABASE_PASSWORD=[REDACTED:" in res.output_tail


def test_stage1_run_command_kills_the_group_on_timeout(tmp_path: Path) -> None:
    """A command that outlives its timeout is killed with its children; exit code is None."""
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    res = run_command(argv=[PY, str(STAGE1_APPS / "spawns_child.py"), str(pidfile)], cwd=tmp_path, timeout=1)

    assert (None, True) == (res.exit_code, res.timed_out)
    assert time.monotonic() - started < 8
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(child)


def test_stage1_run_command_missing_executable_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AdapterUnavailable) as err:
        run_command(argv=["definitely-not-a-command-xyz"], cwd=tmp_path, timeout=5)
    assert ("process", "start") == (err.value.system, err.value.operation)


def test_stage1_local_process_stops_group_even_when_block_raises(tmp_path: Path) -> None:
    """Leaving the block by an exception still stops the process and everything it spawned."""
    pidfile = tmp_path / "pids"
    with (
        pytest.raises(RuntimeError),
        LocalProcess(argv=[PY, str(STAGE1_APPS / "spawns_child.py"), str(pidfile)], cwd=tmp_path) as proc,
    ):
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        leader = proc.pid
        raise RuntimeError("boom")
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert leader is not None
    assert (False, False) == (_alive(leader), _alive(child))


def test_stage1_local_process_substitutes_port(tmp_path: Path) -> None:
    with LocalProcess(
        argv=[PY, str(STAGE1_APPS / "status_server.py"), "--port", "{port}"], cwd=tmp_path
    ) as proc:
        assert proc.wait_for_port(timeout=10)
        assert 200 == httpx.get(f"{proc.base_url}/x", trust_env=False).status_code


# ---------------------------------------------------------------------------------------------- health


@pytest.fixture
def server_500(tmp_path: Path):  # type: ignore[no-untyped-def]
    with LocalProcess(
        argv=[PY, str(STAGE1_APPS / "status_server.py"), "--port", "{port}", "--status", "500"], cwd=tmp_path
    ) as proc:
        assert proc.wait_for_port(timeout=10)
        yield proc


def test_stage1_probe_reports_5xx_without_raising(server_500: LocalProcess) -> None:
    with httpx.Client(trust_env=False) as client:
        res = HttpProbe(client).probe(
            url=f"{server_500.base_url}/healthz", expect_status=200, timeout=1, retries=2, backoff=0.01
        )
    assert (False, 500, 3, "HTTP 500, expected 200") == (res.ok, res.status_code, res.attempts, res.reason)


def test_stage1_probe_reports_refused_connection(tmp_path: Path) -> None:
    from railiance_ledger.adapters.process import free_loopback_port

    with httpx.Client(trust_env=False) as client:
        res = HttpProbe(client).probe(
            url=f"http://127.0.0.1:{free_loopback_port()}/", timeout=1, retries=1, backoff=0.01
        )
    assert (False, None, 2, "connection refused") == (res.ok, res.status_code, res.attempts, res.reason)


def test_stage1_probe_reports_timeout(tmp_path: Path) -> None:
    with (
        LocalProcess(
            argv=[PY, str(STAGE1_APPS / "status_server.py"), "--port", "{port}", "--delay", "2"], cwd=tmp_path
        ) as proc,
        httpx.Client(trust_env=False) as client,
    ):
        assert proc.wait_for_port(timeout=10)
        res = HttpProbe(client).probe(url=f"{proc.base_url}/", timeout=0.3, retries=0)
    assert (False, None, "timed out after 0.3s") == (res.ok, res.status_code, res.reason)


# ---------------------------------------------------------------------------------------------- helm


def test_stage1_helm_template_renders_with_set_values() -> None:
    out = Helm(helm_binary()).template(
        chart=EXAMPLE / "chart",
        release="hello-web",
        namespace="ns",
        values_files=[EXAMPLE / "chart" / "values-local.yaml"],
        set_values={"image.digest": "sha256:" + "d" * 64},
        kube_version="1.30",
        timeout=60,
    )
    assert "registry.local/railiance/hello-web@sha256:" + "d" * 64 in out


def test_stage1_helm_failure_is_translated(tmp_path: Path) -> None:
    with pytest.raises(HelmCommandFailed) as err:
        Helm(helm_binary()).template(chart=tmp_path / "missing", release="r", namespace="n", timeout=30)
    assert ("helm", "template", True) == (err.value.system, err.value.operation, err.value.exit_status != 0)


def test_stage1_helm_missing_binary_is_unavailable() -> None:
    with pytest.raises(AdapterUnavailable):
        Helm("/nonexistent/helm").template(chart="x", release="r", namespace="n", timeout=5)


# ---------------------------------------------------------------------------------------------- git


def test_stage1_git_reports_head_dirty_and_untracked(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a\n")
    (tmp_path / "other.txt").write_text("o\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "x")
    repo = GitRepo(tmp_path / "sub")
    assert (git(tmp_path, "rev-parse", "HEAD"), False, []) == (
        repo.head(),
        repo.is_dirty(),
        repo.untracked(),
    )
    (tmp_path / "other.txt").write_text("changed outside sub\n")
    assert not repo.is_dirty()  # scoped to the path it was opened at
    (tmp_path / "sub" / "a.txt").write_text("b\n")
    (tmp_path / "sub" / "new.txt").write_text("n\n")
    assert (True, ["sub/new.txt"]) == (repo.is_dirty(), repo.untracked())
    assert tmp_path.resolve() == repo.toplevel().resolve()


def test_stage1_git_outside_a_work_tree_is_not_found(tmp_path: Path) -> None:
    env_ceiling = {"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    os.environ.update(env_ceiling)
    try:
        with pytest.raises(AdapterNotFound):
            GitRepo(tmp_path).head()
    finally:
        os.environ.pop("GIT_CEILING_DIRECTORIES")


# ---------------------------------------------------------------------------------------------- secrets scan


def test_stage1_secret_references_by_name_are_fine() -> None:
    pod = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "x@sha256:" + "a" * 64,
                            "env": [
                                {
                                    "name": "DB_PASSWORD",
                                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                                },
                                {"name": "MODE", "value": "fast"},
                            ],
                            "envFrom": [{"secretRef": {"name": "api"}}],
                        }
                    ],
                    "volumes": [{"name": "certs", "secret": {"secretName": "tls-certs"}}],
                }
            }
        },
    }
    findings, refs = scan_manifest(pod)
    assert [] == findings
    assert {"db (secretKeyRef)", "api (secretRef)", "tls-certs (volume)"} == set(refs)


def test_stage1_configmap_with_secret_looking_data_is_found() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"DATABASE_URL": "postgres://app:Sup3rS3cret@db/app", "MODE": "fast"},
    }
    findings, _ = scan_manifest(cm)
    assert [("ConfigMap/cfg", "data.DATABASE_URL", "url-credentials")] == [
        (f.where, f.field, f.kind) for f in findings
    ]


def test_stage1_values_references_are_not_secrets() -> None:
    values = {
        "database": {"existingSecret": "db", "existingSecretKey": "DATABASE_URL", "password": "hunter2"},
        "ingress": {"tlsSecretName": "tls"},
    }
    assert [("v.yaml", "database.password")] == [(f.where, f.field) for f in scan_values(values, "v.yaml")]


def test_stage1_example_app_serves_health_metrics_and_hello(tmp_path: Path) -> None:
    """examples/hello-web/app/server.py: /healthz 200, / "hello", /metrics with both series and track."""
    env = {**os.environ, "TRACK": "canary"}
    with (
        LocalProcess(
            argv=[PY, str(EXAMPLE / "app" / "server.py"), "--port", "{port}"], cwd=tmp_path, env=env
        ) as proc,
        httpx.Client(trust_env=False) as client,
    ):
        assert proc.wait_for_port(timeout=10)
        assert 200 == client.get(f"{proc.base_url}/healthz").status_code
        assert "hello\n" == client.get(f"{proc.base_url}/").text
        metrics = client.get(f"{proc.base_url}/metrics").text
    assert 'http_requests_total{track="canary",code="200"} 2' in metrics
    assert 'http_request_duration_seconds_count{track="canary"} 2' in metrics
    assert (
        0
        == subprocess.run(
            [PY, "-m", "py_compile", str(EXAMPLE / "app" / "server.py")], check=False
        ).returncode
    )
