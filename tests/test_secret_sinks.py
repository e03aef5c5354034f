"""Every kind of input reaches no sink unredacted (issue 13).

Inputs: CLI arguments (waive --reason, --operator), declaration fields, workload output and health
answers (log excerpts, with end users' personal data), payloads handed to the store directly.
Sinks: the raw bytes of the ledger database, ``ledger export``, CLI output (text and --json),
State Hub note documents, the manifest scan's evidence. Every shape of the measured corpus
(tests/secret_corpus.py) goes through each.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from railiance_ledger.adapters.process import redacted_tail
from railiance_ledger.cli import app
from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.redaction import find_pii, redact_log, redact_value
from railiance_ledger.errors import LedgerError
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.ledger.verify import export_jsonl
from tests.secret_corpus import SHAPES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello-web"
ONE_LINE = [s for s in SHAPES if "\n" not in s.text and len(s.text) <= 2000]


def _no_secret(blob: str | bytes, where: str) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    leaked = [s.name for s in SHAPES if s.secret and s.secret in text]
    assert not leaked, f"{where}: {leaked}"


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAILIANCE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAILIANCE_OPERATOR", "alice")
    monkeypatch.delenv("RAILIANCE_LEDGER_URL", raising=False)
    monkeypatch.delenv("RAILIANCE_STATEHUB_URL", raising=False)
    app_dir = tmp_path / "hello-web"
    shutil.copytree(EXAMPLE, app_dir)
    return app_dir


def test_cli_arguments_reach_no_sink_unredacted(cli_home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    image = "registry.local/railiance/hello-web@sha256:" + "ab" * 32
    assert 0 == runner.invoke(app, ["candidate", "add", str(cli_home), "--image", image]).exit_code
    outputs: list[str] = []
    for shape in ONE_LINE:
        for json_flag in ([], ["--json"]):
            result = runner.invoke(
                app,
                [*json_flag, "waive", str(cli_home), "--gate", "local_health", "--reason", shape.text],
            )
            assert result.exit_code in (0, 1, 2, 3), result.output
            outputs.append(result.output)
    for command in (["status", "hello-web"], ["history", "hello-web"], ["lineage", "hello-web"]):
        for json_flag in ([], ["--json"]):
            outputs.append(runner.invoke(app, [*json_flag, *command]).output)
    export = runner.invoke(app, ["ledger", "export"])
    assert 0 == export.exit_code
    recorded = export.output.count('"waiver.granted"')
    assert recorded >= len(ONE_LINE), recorded  # the reasons were recorded (redacted), not refused
    _no_secret("\n".join(outputs), "CLI output")
    _no_secret(export.output, "ledger export")
    db = tmp_path / "home" / "ledger.db"
    raw = b"".join(p.read_bytes() for p in db.parent.glob("ledger.db*"))
    _no_secret(raw, "raw database bytes")


def test_the_store_is_the_last_line(tmp_path: Path) -> None:
    store = EventStore.open(f"sqlite:///{tmp_path / 'l.db'}")
    for shape in SHAPES:
        store.append_one(
            NewEvent(
                stream="hello-web",
                kind=EventKind.NOTE_POSTED,
                actor="alice",
                payload={"title": "t", "body": shape.text, "evidence": [{"detail": shape.text}]},
            )
        )
    secret = next(s for s in SHAPES if s.name == "github-pat-classic").secret
    with pytest.raises(LedgerError):  # identifying columns are refused, not rewritten
        store.append_one(NewEvent(stream=secret, kind=EventKind.NOTE_POSTED, actor="alice", payload={}))
    buf = io.StringIO()
    export_jsonl(store, buf)
    store.close()
    _no_secret(buf.getvalue(), "export")
    _no_secret(b"".join(p.read_bytes() for p in tmp_path.glob("l.db*")), "raw database bytes")


def test_declaration_values_reach_no_output(cli_home: Path) -> None:
    toml = cli_home / "railiance" / "app.toml"
    base = toml.read_text(encoding="utf-8")
    runner = CliRunner()
    for shape in ONE_LINE:
        value = shape.text.replace("\\", "\\\\").replace('"', '\\"')
        toml.write_text(base.replace('"hello.example.internal"', f'"{value}"', 1), encoding="utf-8")
        for json_flag in ([], ["--json"]):
            result = runner.invoke(app, [*json_flag, "validate", str(cli_home)])
            assert result.exit_code == 2, (shape.name, result.output)
            _no_secret(result.output, f"validate output ({shape.name})")


def test_workload_output_and_health_answers_lose_secrets_and_personal_data() -> None:
    log = "\n".join(s.text for s in SHAPES)
    log += "\nuser jane.doe@example.com paid with 4111 1111 1111 1111 from 8.8.8.8, call +1 (415) 555-0134\n"
    tail = redacted_tail(log.encode(), limit=len(log) * 2)
    _no_secret(tail, "workload output tail")
    assert not find_pii(tail), tail[-300:]
    for kind in ("email", "card", "ip", "phone"):
        assert f"[REDACTED:{kind}]" in tail
    answer = redact_log("HTTP 500: " + log)
    _no_secret(answer, "health answer")


@pytest.mark.parametrize(
    "evidence",
    [
        "pod 10.244.1.7 ready on node 172.18.0.2, probe from 127.0.0.1",
        "2026-11-30T23:19:48Z took 1764460800 ms; 42 samples; revision 3f2a9c4",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "event 550e8400-e29b-41d4-a716-446655440000 seq 1042",
        "approved by alice@ops (operator)",
    ],
)
def test_log_redaction_keeps_cluster_evidence(evidence: str) -> None:
    assert redact_log(evidence) == evidence


def test_state_hub_note_documents_are_redacted() -> None:
    doc = redact_value({"title": "canary", "body": "\n".join(s.text for s in SHAPES), "evidence": []})
    _no_secret(str(doc), "State Hub note document")


def test_the_stage1_secrets_gate_refuses_every_shape_in_values_and_manifests() -> None:
    from railiance_ledger.domain.manifest_scan import scan_manifest, scan_values

    missed_values = [s.name for s in SHAPES if not scan_values({"app": {"config": s.text}}, "values.yaml")]
    assert not missed_values
    missed_manifests = []
    for s in SHAPES:
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"settings": s.text},
        }
        findings, _ = scan_manifest(cm)
        if not findings:
            missed_manifests.append(s.name)
    assert not missed_manifests
