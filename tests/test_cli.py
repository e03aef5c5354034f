"""The `railiance` command: exit-code contract, --json, and nothing written on bad input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from railiance_ledger.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello-web"
DIGEST = "sha256:" + "c" * 64
IMAGE = f"registry.local/railiance/hello-web@{DIGEST}"


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    home = tmp_path / "home"
    monkeypatch.setenv("RAILIANCE_HOME", str(home))
    monkeypatch.setenv("RAILIANCE_OPERATOR", "alice")
    monkeypatch.delenv("RAILIANCE_LEDGER_URL", raising=False)
    return {"home": str(home), "db": str(home / "ledger.db")}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def count_events(db: str) -> int:
    if not os.path.exists(db):
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("select count(*) from events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_validate_example_passes_with_exit_0(env: dict[str, str]) -> None:
    code, out = invoke("validate", str(EXAMPLE))
    assert 0 == code, out
    assert "hello-web" in out


def test_validate_bad_declaration_lists_each_error_with_its_path_and_exits_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    app_dir = tmp_path / "bad"
    (app_dir / "railiance").mkdir(parents=True)
    text = (EXAMPLE / "railiance" / "app.toml").read_text()
    text = text.replace("weight = 10 ", 'weight = "ten" ').replace(
        'sample_interval = "30s"', 'sample_interval = "thirty"'
    )
    text = text.replace("[workload]\n", '[workload]\ncolour = "blue"\n', 1)
    (app_dir / "railiance" / "app.toml").write_text(text)
    code, out = invoke("--json", "validate", str(app_dir))
    assert 2 == code
    paths = {i["path"] for i in json.loads(out)["issues"]}
    assert {"workload.colour", "canary.weight", "canary.sample_interval"} <= paths


def test_validate_writes_runbook_naming_missing_fields(env: dict[str, str], tmp_path: Path) -> None:
    app_dir = tmp_path / "norunbook"
    app_dir.mkdir()
    runbook = tmp_path / "runbook.md"
    code, _ = invoke("validate", str(app_dir), "--runbook", str(runbook))
    assert 2 == code
    text = runbook.read_text()
    assert "workload.name" in text and "rollback" in text


@pytest.mark.parametrize(
    "image",
    [
        "registry.local/railiance/hello-web:v1.0.0",
        "registry.local/railiance/hello-web@sha256:1234",
        "registry.local/railiance/hello-web@sha256:" + "Z" * 64,
    ],
)
def test_candidate_add_refuses_tags_and_bad_digests_and_writes_nothing(
    env: dict[str, str], image: str
) -> None:
    code, out = invoke("candidate", "add", str(EXAMPLE), "--image", image)
    assert 2 == code, out
    assert 0 == count_events(env["db"])


def test_candidate_add_refuses_bad_declaration_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, _ = invoke("candidate", "add", str(tmp_path), "--image", IMAGE)
    assert 2 == code
    assert 0 == count_events(env["db"])


def test_candidate_add_then_status_history_lineage(env: dict[str, str]) -> None:
    code, out = invoke("--json", "candidate", "add", str(EXAMPLE), "--image", IMAGE, "--revision", "a" * 40)
    assert 0 == code, out
    event = json.loads(out)["event"]
    assert ("candidate.registered", "alice", DIGEST) == (event["kind"], event["actor"], event["candidate"])
    code, out = invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE, "--revision", "a" * 40)
    assert 0 == code and "already registered" in out
    assert 1 == count_events(env["db"])

    code, out = invoke("status", "hello-web", "--json")
    assert 0 == code
    status = json.loads(out)
    assert [DIGEST] == [c["digest"] for c in status["candidates"]]

    code, out = invoke("history", "hello-web", "--json")
    assert ["candidate.registered"] == [e["kind"] for e in json.loads(out)]

    code, out = invoke("lineage", "hello-web", "--json")
    assert 0 == code
    assert json.loads(out)["rollback_target"] is None


def test_operator_flag_overrides_environment(env: dict[str, str]) -> None:
    code, out = invoke("--json", "candidate", "add", str(EXAMPLE), "--image", IMAGE, "--operator", "bob")
    assert 0 == code, out
    assert "bob" == json.loads(out)["event"]["actor"]


def test_global_options_hold_for_one_invocation_only(env: dict[str, str]) -> None:
    """--json and --operator before the command live in click's context object, not in module state: the
    next invocation in the same process prints text and acts as RAILIANCE_OPERATOR again."""
    code, out = invoke("--json", "--operator", "bob", "candidate", "add", str(EXAMPLE), "--image", IMAGE)
    assert (0, "bob") == (code, json.loads(out)["event"]["actor"]), out
    other = IMAGE.replace("c" * 64, "d" * 64)
    code, out = invoke("candidate", "add", str(EXAMPLE), "--image", other, "--revision", "a" * 40)
    assert 0 == code and out.startswith("registered: "), out
    code, out = invoke("history", "hello-web", "--json")
    assert ["bob", "alice"] == [e["actor"] for e in json.loads(out)]


def test_waiver_records_the_operator_and_that_it_was_given_explicitly(env: dict[str, str]) -> None:
    """RAILIANCE_OPERATOR (and --operator, global or per command) is an explicit identity: the record says so."""
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE, "--revision", "a" * 40)
    code, out = invoke("--json", "waive", str(EXAMPLE), "--gate", "local_health", "--reason", "probe flaky")
    assert 0 == code, out
    payload = json.loads(out)["event"]["payload"]
    assert ("alice", True) == (payload["operator"], payload["operator_explicit"])
    code, out = invoke(
        "--operator", "bob", "--json", "waive", str(EXAMPLE), "--gate", "local_health", "--reason", "x"
    )
    assert 0 == code, out
    assert ("bob", "bob") == (
        json.loads(out)["event"]["actor"],
        json.loads(out)["event"]["payload"]["operator"],
    )


@pytest.mark.parametrize(
    "args",
    [
        ["waive", str(EXAMPLE), "--gate", "local_health", "--reason", "flaky"],
        ["approve", str(EXAMPLE), "--stage", "2", "--rollback-target", "manual: restore the backup"],
        ["exception", str(EXAMPLE), "--skip-stage", "1", "--reason", "outage"],
    ],
)
def test_human_decisions_refuse_the_login_name_as_operator_and_write_nothing(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Without --operator or RAILIANCE_OPERATOR the identity is only defaulted: exit 2, nothing recorded."""
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE, "--revision", "a" * 40)
    monkeypatch.delenv("RAILIANCE_OPERATOR")
    code, out = invoke("--json", *args)
    assert (2, "InvalidInput") == (code, json.loads(out)["error"]), out
    assert "operator identity" in json.loads(out)["message"]
    assert 1 == count_events(env["db"])


def test_ledger_verify_ok_then_exit_3_naming_seq_after_tampering(env: dict[str, str]) -> None:
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE)
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE.replace("c" * 64, "d" * 64))
    code, out = invoke("ledger", "verify")
    assert 0 == code, out
    with sqlite3.connect(env["db"]) as conn:
        for (name,) in conn.execute("select name from sqlite_master where type='trigger'").fetchall():
            conn.execute(f"drop trigger {name}")
        conn.execute("update events set actor = 'mallory' where seq = 2")
    code, out = invoke("--json", "ledger", "verify")
    assert 3 == code
    report = json.loads(out)
    assert (2, "edited") == (report["first_bad_seq"], report["problem"])


def test_ledger_export_writes_one_event_per_line(env: dict[str, str], tmp_path: Path) -> None:
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE)
    out_file = tmp_path / "export.jsonl"
    code, _ = invoke("ledger", "export", "-o", str(out_file))
    assert 0 == code
    lines = out_file.read_text().splitlines()
    assert [1] == [json.loads(line)["seq"] for line in lines]


def test_explicit_ledger_url_is_used(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    code, out = invoke("--ledger", f"sqlite:///{db}", "candidate", "add", str(EXAMPLE), "--image", IMAGE)
    assert 3 == code, out  # a URL naming no ledger is never created on the fly
    assert not db.exists()
    assert 0 == invoke("--ledger", f"sqlite:///{db}", "ledger", "init")[0]
    code, out = invoke("--ledger", f"sqlite:///{db}", "candidate", "add", str(EXAMPLE), "--image", IMAGE)
    assert 0 == code, out
    assert (1, 0) == (count_events(str(db)), count_events(env["db"]))


def test_cli_status_never_imports_dagster(env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from railiance_ledger.cli import main\n"
        "sys.argv = ['railiance', 'status', 'nothing-here', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')], 'dagster imported'\n"
        "print('no-dagster')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=False
    )
    assert "no-dagster" in proc.stdout, proc.stderr


def test_bin_railiance_is_the_same_program(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(ROOT / "bin" / "railiance"), "--help"], capture_output=True, text=True, check=False
    )
    assert 0 == proc.returncode
    for command in ("validate", "candidate", "run", "status", "lineage", "ledger"):
        assert command in proc.stdout


def test_secret_in_cli_output_is_redacted(env: dict[str, str], tmp_path: Path) -> None:
    app_dir = tmp_path / "leaky"
    shutil.copytree(EXAMPLE / "railiance", app_dir / "railiance")
    toml = app_dir / "railiance" / "app.toml"
    toml.write_text(
        toml.read_text().replace(
            'repo = "railiance-apps/hello-web"', 'repo = "https://deploy:hunter2hunter2@forge.local/x"'
        )
    )
    code, out = invoke("validate", str(app_dir))
    assert (2, True) == (code, "workload.repo" in out)
    assert "hunter2hunter2" not in out


def test_ledger_verify_with_anchor_detects_deleted_newest_events(env: dict[str, str]) -> None:
    """The chain alone cannot see its newest events deleted; an anchor recorded earlier can."""
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE)
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE.replace("c" * 64, "d" * 64))
    code, out = invoke("--json", "ledger", "verify")
    head = json.loads(out)
    anchor = f"{head['head_seq']}:{head['head_hash']}"
    assert (0, 0) == (code, invoke("ledger", "verify", "--expect-head", anchor)[0])
    with sqlite3.connect(env["db"]) as conn:
        for (name,) in conn.execute("select name from sqlite_master where type='trigger'").fetchall():
            conn.execute(f"drop trigger {name}")
        conn.execute("delete from events where seq = 2")
    assert 0 == invoke("ledger", "verify")[0]  # what remains still links up
    code, out = invoke("--json", "ledger", "verify", "--expect-head", anchor)
    assert (3, 2, "missing") == (code, json.loads(out)["first_bad_seq"], json.loads(out)["problem"])
    assert 2 == invoke("ledger", "verify", "--expect-head", "nonsense")[0]


def test_notes_lists_undelivered_state_hub_notes_and_repost_delivers_them(
    env: dict[str, str], statehub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note State Hub refused is listed (exit 1) until `notes --repost` delivers it (exit 0), and the
    re-posted note carries no secret."""
    monkeypatch.setenv("RAILIANCE_STATEHUB_URL", statehub.url)
    invoke("candidate", "add", str(EXAMPLE), "--image", IMAGE, "--operator", "alice")
    statehub.fail_always(503)
    code, out = invoke(
        "exception",
        str(EXAMPLE),
        "--skip-stage",
        "1",
        "--operator",
        "dave",
        "--reason",
        "outage; token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 leaked in a log",
    )
    assert 0 == code, out
    code, out = invoke("--json", "notes", "hello-web")
    assert (1, ["exception.emergency"]) == (code, [p["ref_kind"] for p in json.loads(out)["undelivered"]])
    statehub.heal()
    code, out = invoke("notes", "hello-web", "--repost")
    assert 0 == code, out
    assert "every State Hub note of hello-web is delivered" in out
    assert 1 == len(statehub.notes)
    assert "ghp_A1b2" not in json.dumps(statehub.notes)


def test_notes_repost_without_a_state_hub_is_invalid_input(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAILIANCE_STATEHUB_URL", raising=False)
    assert 0 == invoke("ledger", "init")[0]
    assert 2 == invoke("notes", "hello-web", "--repost")[0]
