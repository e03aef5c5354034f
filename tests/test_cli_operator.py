"""The operator's CLI (issue 15, item 3): unknown names, exit 4, broken pipes, --version, the status and
lineage text, ``rollback --to``, ``--dry-run``, ``deploy`` defaulting to Stage 2.

No server is needed: the ledgers are built with the event builders of ``tests.fixtures.ledger``; the
commands that would reach a cluster are pointed at a kubeconfig that names nothing (exit 4) or a port
nothing listens on. The dry runs against the real control plane (helm release list unchanged) are in
``tests/test_lifecycle_cli.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from railiance_ledger.cli import app
from railiance_ledger.declaration.loader import load_declaration
from railiance_ledger.errors import InvalidInput
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.plans import deploy_plan, promote_plan, rollback_plan
from railiance_ledger.lifecycle.rollback.plan import earlier_stables, plan_rollback
from tests.fixtures.ledger import approval, digest_of, full_lifecycle, image_of, registered, stage_result

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello-web"
RAILIANCE = str(ROOT / "bin" / "railiance")
W = "hello-web"
V1, V2, V3, V4 = (digest_of(f"v{i}") for i in range(1, 5))
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


@pytest.fixture()
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty SQLite ledger named by RAILIANCE_LEDGER_URL; RAILIANCE_OPERATOR is alice."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    EventStore.open(url).close()
    monkeypatch.setenv("RAILIANCE_LEDGER_URL", url)
    monkeypatch.setenv("RAILIANCE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAILIANCE_OPERATOR", "alice")
    return url


@pytest.fixture()
def three_stables(ledger: str) -> str:
    """v1 -> v2 -> v3 promoted (each approved by bob), v4 registered and failed Stage 1."""
    store = EventStore.open(ledger)
    try:
        for i, (digest, prev) in enumerate(((V1, None), (V2, V1), (V3, V2)), start=1):
            events = full_lifecycle(W, digest, prev, revision=i)
            store.append(events[:-1], now=T0 + timedelta(hours=i))
            store.append([approval(W, digest, 3, operator="bob")], now=T0 + timedelta(hours=i, minutes=1))
            store.append(events[-1:], now=T0 + timedelta(hours=i, minutes=2))
        store.append([registered(W, V4), stage_result(W, V4, 1, "fail")], now=T0 + timedelta(hours=5))
    finally:
        store.close()
    return ledger


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def head_seq(url: str) -> int:
    store = EventStore.open(url)
    try:
        return store.head()[0]
    finally:
        store.close()


# -- unknown names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "history", "lineage", "notes"])
def test_a_typo_in_a_workload_is_exit_2_naming_the_nearest(three_stables: str, command: str) -> None:
    code, out = invoke("--json", command, "hello-wbe")
    assert 2 == code, out
    doc = json.loads(out)
    assert ("UnknownName", ["hello-web"]) == (doc["error"], doc["nearest"])
    assert "did you mean hello-web" in doc["message"]


def test_an_unknown_workload_in_an_empty_ledger_says_the_ledger_is_empty(ledger: str) -> None:
    code, out = invoke("status", "hello-web")
    assert 2 == code
    assert "no workload" in out and "ledger is empty" in out


def test_a_malformed_bare_digest_gets_the_digest_message_not_the_tag_one(three_stables: str) -> None:
    code, out = invoke("--json", "approve", str(EXAMPLE), "--stage", "3", "--image", "sha256:abc123")
    assert (2, "InvalidDigest") == (code, json.loads(out)["error"]), out
    message = json.loads(out)["message"]
    assert "not a well-formed digest" in message and "tag" not in message


def test_an_unregistered_candidate_is_exit_2_naming_registered_ones(three_stables: str) -> None:
    unknown = digest_of("nobody")
    code, out = invoke("--json", "approve", str(EXAMPLE), "--stage", "3", "--image", unknown)
    doc = json.loads(out)
    assert (2, "UnknownName") == (code, doc["error"]), out
    assert doc["nearest"] and set(doc["nearest"]) <= {V1, V2, V3, V4}
    assert 0 < len(doc["nearest"]) <= 3


# -- environment: exit 4 --------------------------------------------------------------------------------


def _kubeconfig(path: Path, server: str) -> str:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", str(EXAMPLE)],
        ["observe", str(EXAMPLE)],
        ["promote", str(EXAMPLE)],
        ["rollback", str(EXAMPLE), "--reason", "errors"],
    ],
)
@pytest.mark.parametrize("kind", ["missing", "unreachable"])
def test_no_cluster_is_exit_4_and_records_nothing(
    three_stables: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], kind: str
) -> None:
    """No kubeconfig, or an API server that does not answer: exit 4 (not 1, a failed gate), before the
    lease is taken or anything is recorded."""
    if kind == "missing":
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    else:
        monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path / "kc", "https://127.0.0.1:9"))
    before = head_seq(three_stables)
    code, out = invoke("--json", *args)
    doc = json.loads(out)
    assert (4, "EnvironmentUnavailable") == (code, doc["error"]), out
    assert "cluster cannot be reached" in doc["message"]
    assert before == head_seq(three_stables)


def test_a_missing_helm_binary_is_exit_4(
    three_stables: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The API server answers (a stand-in for /version), but helm is not there: exit 4."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Version(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b'{"major": "1", "minor": "31", "gitVersion": "v1.31.0"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(
            "KUBECONFIG", _kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{server.server_port}")
        )
        monkeypatch.setenv("RAILIANCE_HELM", str(tmp_path / "no-helm-here"))
        before = head_seq(three_stables)
        code, out = invoke("--json", "promote", str(EXAMPLE))
    finally:
        server.shutdown()
        server.server_close()
    doc = json.loads(out)
    assert (4, "EnvironmentUnavailable") == (code, doc["error"]), out
    assert "helm" in doc["message"]
    assert before == head_seq(three_stables)


# -- broken pipes, --version ----------------------------------------------------------------------------


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAILIANCE_")}
    env.update({"RAILIANCE_LEDGER_URL": url, "RAILIANCE_HOME": str(tmp_path / "home")})
    return env


def test_history_into_a_closed_pipe_exits_0_without_a_traceback(three_stables: str, tmp_path: Path) -> None:
    """The reader went away before anything was written: exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [RAILIANCE, "history", W],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(three_stables, tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert 0 == proc.wait(timeout=120), err
    assert b"Traceback" not in err and b"error" not in err.lower()


def test_history_piped_into_head_exits_0(three_stables: str, tmp_path: Path) -> None:
    """``railiance history W | head -1`` in a real shell pipeline (the command's own status)."""
    proc = subprocess.run(
        ["bash", "-c", f'"{RAILIANCE}" history {W} | head -1; exit "${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        env=_env(three_stables, tmp_path),
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    assert 1 == len(proc.stdout.splitlines())
    assert "Traceback" not in proc.stderr


def test_version_is_the_package_metadata_version() -> None:
    code, out = invoke("--version")
    assert (0, f"railiance {importlib.metadata.version('railiance-ledger')}") == (code, out.strip())


# -- status and lineage text ----------------------------------------------------------------------------


def test_status_text_shows_stable_target_approvals_and_the_last_failure(three_stables: str) -> None:
    code, out = invoke("status", W)
    assert 0 == code, out
    assert f"stable: {image_of(V3)} since " in out
    stable = next(line for line in out.splitlines() if "stable: " in line)
    assert "promoted by alice; approved by alice at " in stable and "bob at 2026-02-01T12:01" in stable
    assert f"rollback target: {image_of(V2)}" in out
    assert "approval stage 3 by bob at 2026-02-01" in out
    assert f"last failure: stage 1 of {V4}" in out
    code, out = invoke("--json", "status", W)
    doc = json.loads(out)
    assert (V3, V2) == (doc["stable"]["digest"], doc["rollback_target"]["digest"])
    assert ["alice", "bob"] == [a["operator"] for a in doc["stable"]["approved_by"]]
    assert (V4, 1) == (doc["last_failure"]["digest"], doc["last_failure"]["stage"])
    assert doc["open_canary"] is None


def test_status_text_shows_an_open_canary_and_a_pending_retrospective(ledger: str) -> None:
    from tests.fixtures.ledger import emergency, stage_started

    store = EventStore.open(ledger)
    try:
        store.append([registered(W, V1), stage_result(W, V1, 1, "pass"), emergency(W, V1, 2)])
        started = stage_started(W, V1, 2)
        store.append([started.model_copy(update={"payload": {"observation_window_seconds": 600}})])
    finally:
        store.close()
    code, out = invoke("status", W)
    assert 0 == code, out
    assert f"open canary: {V1} since " in out and "window closes" in out
    assert "awaiting retrospective approval: skip stage 2" in out


def test_lineage_text_is_a_table_and_names_the_target_in_words(three_stables: str) -> None:
    code, out = invoke("lineage", W)
    assert 0 == code, out
    lines = out.splitlines()
    header = next(line for line in lines if "revision" in line and "digest" in line)
    for column in ("promoted at", "promoted by", "approved by", "state"):
        assert column in header
    states = [line.split()[-1] for line in lines if line.rstrip().endswith(("superseded", "current"))]
    assert ["superseded", "superseded", "current"] == states
    assert V3[:19] in out and "bob (2026-02-01" in out
    target = next(line for line in lines if "rollback target:" in line)
    assert image_of(V2) in target and "helm revision 2" in target and "{" not in target
    code, out = invoke("--json", "lineage", W)
    doc = json.loads(out)
    assert (V3, V2) == (doc["current_stable"]["digest"], doc["rollback_target"]["digest"])
    assert "restore" in doc["rollback_target"] and "evidence" in doc["stables"][0]


# -- rollback --to ---------------------------------------------------------------------------------------


def test_rollback_plan_to_an_earlier_stable_uses_its_own_restore_facts(three_stables: str) -> None:
    decl = load_declaration(EXAMPLE)
    store = EventStore.open(three_stables)
    try:
        assert [V2, V1] == [d for d, _ in earlier_stables(store, W)]
        plan = plan_rollback(store, decl, to=V1)
        assert (V3, V1, image_of(V1), 1) == (
            plan.leaving_digest,
            plan.target.digest,
            plan.target.image,
            plan.target.helm_revision,
        )
        assert V2 == plan_rollback(store, decl).target.digest
        for wrong in (V3, V4, digest_of("never")):
            with pytest.raises(InvalidInput) as err:
                plan_rollback(store, decl, to=wrong)
            assert f"allowed: {V2}, {V1}" in str(err.value)
    finally:
        store.close()


def test_rollback_to_a_digest_that_is_not_an_earlier_stable_is_exit_2_naming_the_allowed(
    three_stables: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused (bad input, exit 2) before the environment is asked: no kubeconfig here, yet not exit 4."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    before = head_seq(three_stables)
    for to in (V3, V4, f"registry.local/hello-web@{digest_of('never')}"):
        for args in (["--dry-run"], []):
            code, out = invoke("--json", "rollback", str(EXAMPLE), "--reason", "x", "--to", to, *args)
            doc = json.loads(out)
            assert (2, "InvalidInput") == (code, doc["error"]), out
            assert f"allowed: {V2}, {V1}" in doc["message"]
    assert before == head_seq(three_stables)


# -- dry runs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", str(EXAMPLE), "--image", V4],
        ["deploy", "--stage", "2", str(EXAMPLE), "--image", V4],
        ["promote", str(EXAMPLE), "--image", V4],
        ["rollback", str(EXAMPLE), "--reason", "errors"],
        ["rollback", str(EXAMPLE), "--reason", "errors", "--to", f"registry.local/hello-web@{V1}"],
    ],
)
def test_dry_runs_print_the_plan_and_change_nothing(
    three_stables: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """No cluster at all (the kubeconfig names nothing) and the ledger's head is unchanged: a dry run
    asks no server and records nothing, not even the lease."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    before = head_seq(three_stables)
    code, out = invoke(*args, "--dry-run")
    assert 0 == code, out
    assert out.startswith(f"plan: {args[0]} {W}")
    assert "rollback target: " in out and "routing: " in out and "nothing was changed" in out
    code, out = invoke("--json", *args, "--dry-run")
    doc = json.loads(out)
    assert (0, True, args[0]) == (code, doc["dry_run"], doc["command"]), out
    assert doc["objects"] and doc["routing"]
    assert before == head_seq(three_stables)


def test_plans_name_the_target_each_command_would_keep(three_stables: str) -> None:
    decl = load_declaration(EXAMPLE)
    store = EventStore.open(three_stables)
    try:
        assert V3 == (deploy_plan(store, decl, V4).rollback_target or {}).get("digest")
        promote = promote_plan(store, decl, V4)
        assert (V4, V3) == (
            (promote.candidate or {}).get("digest"),
            (promote.rollback_target or {})["digest"],
        )
        assert V2 == (rollback_plan(store, decl).rollback_target or {})["digest"]
        assert V1 == (rollback_plan(store, decl, to=V1).rollback_target or {})["digest"]
    finally:
        store.close()


def test_deploy_defaults_to_stage_2_and_refuses_other_stages(three_stables: str) -> None:
    code, out = invoke("deploy", str(EXAMPLE), "--image", V4, "--dry-run")
    assert 0 == code and out.startswith("plan: deploy"), out
    code, out = invoke("--json", "deploy", "--stage", "3", str(EXAMPLE), "--dry-run")
    assert (2, "InvalidInput") == (code, json.loads(out)["error"])
    assert "railiance promote" in json.loads(out)["message"]


def test_shell_completion_is_clicks(tmp_path: Path) -> None:
    """``_RAILIANCE_COMPLETE=bash_source railiance`` prints the bash completion script (README), and the
    completion itself offers the commands and their options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_RAILIANCE")}
    script = subprocess.run(
        [RAILIANCE],
        env={**env, "_RAILIANCE_COMPLETE": "bash_source"},
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == script.returncode and "_railiance_completion" in script.stdout, script.stderr
    words = {
        "COMP_WORDS": "railiance rollback --t",
        "COMP_CWORD": "2",
        "_RAILIANCE_COMPLETE": "bash_complete",
    }
    done = subprocess.run(
        [RAILIANCE], env={**env, **words}, capture_output=True, text=True, timeout=120, check=False
    )
    assert "plain,--to" in done.stdout.splitlines(), done.stdout


def test_rollback_resolve_is_never_a_dry_run(three_stables: str) -> None:
    """``--resolve`` records a manual clean-up: with --dry-run (or --to) it is refused, nothing recorded."""
    before = head_seq(three_stables)
    for extra in (["--dry-run"], ["--to", V1]):
        code, out = invoke(
            "--json", "rollback", str(EXAMPLE), "--reason", "done by hand", "--resolve", *extra
        )
        assert (2, "InvalidInput") == (code, json.loads(out)["error"]), out
    assert before == head_seq(three_stables)


def test_ledger_verify_with_a_witness_that_does_not_answer_is_exit_4(
    three_stables: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain verifies, but the State Hub witness cannot be read: the check could not start (4), not a
    ledger integrity error (3)."""
    monkeypatch.setenv("RAILIANCE_STATEHUB_URL", "http://127.0.0.1:9")
    code, out = invoke("--json", "ledger", "verify", "--witness", "statehub")
    assert (4, "EnvironmentUnavailable") == (code, json.loads(out)["error"]), out
    monkeypatch.delenv("RAILIANCE_STATEHUB_URL")
    code, out = invoke("--json", "ledger", "verify")
    assert (0, True) == (code, json.loads(out)["ok"]), out
