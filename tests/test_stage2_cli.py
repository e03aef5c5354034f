"""Stage 2 acceptance through the real CLI (``bin/railiance`` in a subprocess), as the issue's
"Done when" asks: ``railiance run`` (Stage 1) on a git-committed copy of hello-web, then
``railiance deploy --stage 2`` and ``railiance observe`` against the real Kubernetes control plane
(``KUBECONFIG``; the real helm), the real registry (``RAILIANCE_REGISTRY_URL``), real Prometheus
(``RAILIANCE_PROMETHEUS_URL``) and the recording State Hub (``RAILIANCE_STATEHUB_URL``).
Outside probes enter through ``RAILIANCE_INGRESS_URL`` (the canary metrics app plays the ingress).
"""

from __future__ import annotations

from pathlib import Path

from railiance_ledger.domain.events import EventKind
from tests.fixtures.cli import CliStage2
from tests.fixtures.statehub import StateHubServer


def test_stage2_cli_run_deploy_observe_accepted(cli_stage2: CliStage2, statehub: StateHubServer) -> None:
    c = cli_stage2
    code, doc, out = c.run("run", str(c.app), "--image", c.image, "--json")
    assert (0, "pass") == (code, doc.get("status")), out
    code, doc, out = c.run("deploy", "--stage", "2", str(c.app), "--json")
    assert (0, "deployed") == (code, doc.get("phase")), out
    code, doc, out = c.run("observe", str(c.app), "--json")
    assert (0, "pass", False) == (code, doc.get("status"), doc.get("rolled_back")), out

    events = c.events()
    started = next(e for e in events if e.kind == EventKind.STAGE_STARTED and e.stage == 2)
    release = started.payload["release"]
    # stage.started is the intent (recorded before helm ran); the deploy's outcome carries the revision
    outcome = next(e for e in events if e.kind == EventKind.ROUTING_CHANGED and "deployed" in e.payload)
    assert ("deploying", "hello-web-canary", "hello-web", 1, c.image) == (
        started.payload["phase"],
        release["name"],
        release["namespace"],
        outcome.payload["deployed"]["revision"],
        release["image"],
    )  # namespace/release
    assert len(started.payload["manifests"]["sha256"]) == 64  # rendered release identity
    assert (
        Path(c.env["RAILIANCE_HOME"]) / "manifests" / f"{started.payload['manifests']['sha256']}.yaml"
    ).exists()
    routed = next(e for e in events if e.kind == EventKind.ROUTING_CHANGED)
    assert "canary weight 10% of localhost as declared" in routed.payload["read_back"]  # routing state
    completed = [e for e in events if e.kind == EventKind.STAGE_COMPLETED and e.stage == 2][-1]
    assert "pass" == completed.payload["status"]
    evidence = completed.payload["evidence"]
    details = [e["detail"] for e in evidence]
    assert "rendered release identity" in details
    assert any(
        e["kind"] == "pod-status" and e["detail"].startswith("1/1 ready, 0 restarts") for e in evidence
    )
    assert any(d.startswith("key health inside: HTTP 200") for d in details)
    assert any(d.startswith("key health outside: HTTP 200") for d in details)
    assert any(d.startswith("metrics window: 4 samples") for d in details)
    notes = [e for e in events if e.kind == EventKind.NOTE_POSTED]
    assert [True, True] == [n.payload["delivered"] for n in notes]
    assert {"kind": "statehub", "ref": notes[-1].payload["note_id"], "detail": "progress note"} in evidence
    assert 2 == len(statehub.notes)
    # the State Hub note is required evidence: its gate passed with the delivered note's id
    hub_check = next(ch for ch in completed.payload["checks"] if ch["name"] == "statehub_note")
    assert ("pass", notes[-1].payload["note_id"]) == (hub_check["status"], hub_check["evidence"][0]["ref"])
    assert (
        "pass"
        == next(ch for ch in completed.payload["checks"] if ch["name"] == "canary_release_identity")["status"]
    )
    assert 4 == sum(1 for e in events if e.kind == EventKind.CANARY_SAMPLE)


def test_stage2_cli_crashlooping_canary_exits_1_naming_the_gate(cli_stage2: CliStage2) -> None:
    c = cli_stage2
    c.cluster.behaviours.set(c.image, "crashloop")
    assert 0 == c.run("run", str(c.app), "--image", c.image, "--json")[0]
    assert 0 == c.run("deploy", "--stage", "2", str(c.app), "--json")[0]
    code, doc, out = c.run("observe", str(c.app), "--json")
    assert (1, "fail", True) == (code, doc.get("status"), doc.get("rolled_back")), out
    first = doc["checks"][0]
    assert ("immediate_rollback", "fail") == (first["name"], first["status"])
    assert "crash-looping" in first["reason"]
    code, _, text = c.run("observe", str(c.app))  # nothing left to observe: the canary was removed
    assert 2 == code, text
    assert c.cluster.get("deployments", "hello-web", "hello-web-canary") is None
