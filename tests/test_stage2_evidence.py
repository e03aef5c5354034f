"""Stage 2 required evidence (spec "Required Stage 2 evidence"), each in a passing/failing pair, end
to end (real control plane + real helm + real registry + real Prometheus + the recording State Hub).

"Stage 2 fails closed when any required evidence is missing and no operator waiver is recorded":
every item the result could not collect fails a named check (exit 1, the canary removed like any
rejected canary) unless a stage 2 waiver names that check.

| evidence | check |
|---|---|
| State Hub progress note | ``statehub_note`` |
| rendered release identity, applied namespace and release name | ``canary_release_identity`` |
| pod readiness and restart status | ``canary_pods_ready``, ``canary_pods_stable`` |
| ingress or routing state | ``canary_routing`` |
| key health endpoint result | ``canary_health`` (a declaration without ``[[health]]`` is refused) |
| metrics window | the metric gates ("metrics unavailable", tests/test_stage2.py) |
| operator approval | ``operator_approval`` (tests/test_stage2_gates.py) |
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.declaration.loader import load_declaration
from railiance_ledger.domain.events import EventKind
from railiance_ledger.errors import DeclarationError, InvalidInput
from railiance_ledger.lifecycle.stage2 import ACCEPTANCE_CHECKS
from railiance_ledger.lifecycle.waivers import WAIVABLE_STAGE2, active_waivers, record_waiver
from tests.fixtures.stage2 import (
    EXAMPLE,
    STABLE_DIGEST,
    CanaryEnv,
    check_named,
    deploy_env,
    events_of,
    not_passed,
    observe_env,
    starve_service,
)

STATEHUB_ENV = "RAILIANCE_STATEHUB_URL"


def canary_removed(env: CanaryEnv) -> None:
    """The canary release, its pods' Deployment and its routing are gone; stable untouched."""
    assert env.cluster.get("deployments", "hello-web", "hello-web-canary") is None
    assert env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None
    assert 1 == env.helm.deployed_revision(release="hello-web", namespace="hello-web")


def failing(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["checks"] if c["status"] == "fail"]


def statehub_evidence(doc: dict[str, Any]) -> dict[str, Any]:
    (ev,) = [e for e in doc["evidence"] if e["kind"] == "statehub"]
    return dict(ev)


# ------------------------------------------------------------------------------- State Hub note


def test_stage2_statehub_note_delivered_passes_with_the_note_id(canary_env: CanaryEnv) -> None:
    assert canary_env.hub is not None
    out = deploy_env(canary_env)  # the State Hub comes from RAILIANCE_STATEHUB_URL (the fixture's default)
    assert 0 == out.exit_code, not_passed(out.document)
    res = observe_env(canary_env, fast=True)
    assert (0, "pass", False) == (res.exit_code, res.document["status"], res.rolled_back), not_passed(
        res.document
    )
    assert list(ACCEPTANCE_CHECKS) == [c["name"] for c in res.document["checks"]]
    note = events_of(canary_env, EventKind.NOTE_POSTED)[-1]
    note_id = note.payload["note_id"]
    assert (True, "note-2") == (note.payload["delivered"], note_id)
    c = check_named(res.document, "statehub_note")
    assert "pass" == c["status"], c
    assert (
        f"progress note {note_id} delivered to State Hub (ledger note.posted seq {note.seq})" == c["reason"]
    )
    assert [{"kind": "statehub", "ref": note_id, "detail": f"note.posted seq {note.seq}"}] == c["evidence"]
    assert {"kind": "statehub", "ref": note_id, "detail": "progress note"} == statehub_evidence(res.document)
    assert note_id == res.document["statehub_note"]
    # the stored stage result carries the same: the note id is evidence in the ledger
    completed = events_of(canary_env, EventKind.STAGE_COMPLETED)[-1]
    assert completed.seq > note.seq and "pass" == completed.payload["status"]
    assert check_named(completed.payload, "statehub_note")["evidence"][0]["ref"] == note_id
    # posted before the stage was decided, the note never claims "accepted"
    sent = canary_env.hub.notes[-1]
    assert "hello-web: Stage 2 canary acceptance gates passed" == sent["title"]
    assert "accepted" not in (sent["title"] + sent["body"]).lower()
    assert canary_env.cluster.get("deployments", "hello-web", "hello-web-canary") is not None  # kept


def test_stage2_statehub_not_configured_fails_statehub_note_and_removes_the_canary(
    canary_env: CanaryEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATEHUB_ENV)
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    assert any("no State Hub configured" in w for w in out.warnings), out.warnings
    assert any("statehub_note acceptance gate will fail" in w for w in out.warnings), out.warnings
    res = observe_env(canary_env, fast=True)
    assert (1, "fail", True) == (res.exit_code, res.document["status"], res.rolled_back)
    assert ["statehub_note"] == failing(res.document)  # every other gate passed
    c = check_named(res.document, "statehub_note")
    assert ("fail", "technical") == (c["status"], c["failure"])
    assert "RAILIANCE_STATEHUB_URL is not set" in c["reason"], c
    assert {"kind": "statehub", "ref": "not configured", "detail": "progress note"} == statehub_evidence(
        res.document
    )
    assert res.document["statehub_note"] is None
    assert any("no State Hub configured" in w for w in res.warnings), res.warnings
    started = events_of(canary_env, EventKind.ROLLBACK_STARTED)[-1]
    assert "canary rejected at the end of the window: statehub_note" == started.payload["symptom"]
    assert [] == events_of(canary_env, EventKind.NOTE_POSTED) and [] == canary_env.hub.notes  # nothing posted
    canary_removed(canary_env)


def test_stage2_statehub_down_fails_statehub_note_after_retries_and_is_reported(
    canary_env: CanaryEnv,
) -> None:
    """Deploy note delivered; State Hub goes down before the end of the window. The acceptance note
    is retried (3 attempts, the configured adapter's default), recorded as delivered=false, reported
    as a warning, and the stage fails closed on statehub_note: the canary is removed."""
    assert canary_env.hub is not None
    assert 0 == deploy_env(canary_env).exit_code
    canary_env.hub.down()
    res = observe_env(canary_env, fast=True)
    assert (1, "fail", True) == (res.exit_code, res.document["status"], res.rolled_back)
    assert ["statehub_note"] == failing(res.document)
    note = events_of(canary_env, EventKind.NOTE_POSTED)[-1]
    assert (False, 3, "AdapterUnavailable") == (
        note.payload["delivered"],
        note.payload["attempts"],
        note.payload["error_type"],
    )
    c = check_named(res.document, "statehub_note")
    assert ("fail", "technical") == (c["status"], c["failure"])
    assert c["reason"].startswith("State Hub progress note not delivered after 3 attempt(s): "), c
    assert (
        "connection refused" in c["reason"] and f"note.posted seq {note.seq}, delivered=false" in c["reason"]
    )
    assert {"kind": "statehub", "ref": "not delivered", "detail": "progress note"} == statehub_evidence(
        res.document
    )
    assert any("was NOT delivered after 3 attempt(s)" in w for w in res.warnings), res.warnings
    canary_removed(canary_env)


def test_stage2_statehub_transient_5xx_is_retried_and_delivered(canary_env: CanaryEnv) -> None:
    assert canary_env.hub is not None
    assert 0 == deploy_env(canary_env).exit_code
    canary_env.hub.fail_next(2, 503)
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    assert "pass" == check_named(res.document, "statehub_note")["status"]
    assert [True, True] == [e.payload["delivered"] for e in events_of(canary_env, EventKind.NOTE_POSTED)]


def test_stage2_statehub_note_waiver_accepts_with_waived(
    canary_env: CanaryEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "statehub_note" in WAIVABLE_STAGE2
    monkeypatch.delenv(STATEHUB_ENV)
    waiver = record_waiver(
        store=canary_env.store,
        decl=canary_env.decl(),
        gate="statehub_note",
        operator="bob",
        reason="State Hub migration window; evidence kept in the ledger",
        candidate=canary_env.digest,
        stage=2,
    )
    history = canary_env.store.read_stream("hello-web")
    assert (
        waiver.event_id
        == active_waivers(history, digest=canary_env.digest, stage=2)["statehub_note"].event_id
    )
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    assert not any("acceptance gate will fail" in w for w in out.warnings), out.warnings
    res = observe_env(canary_env, fast=True)
    assert (0, "pass", False) == (res.exit_code, res.document["status"], res.rolled_back), not_passed(
        res.document
    )
    c = check_named(res.document, "statehub_note")
    assert ("waived", waiver.event_id, None) == (c["status"], c["waiver"], c["failure"])
    assert "RAILIANCE_STATEHUB_URL is not set" in c["reason"] and "waived by bob" in c["reason"]
    assert (
        canary_env.cluster.get("deployments", "hello-web", "hello-web-canary") is not None
    )  # accepted, kept


def test_stage2_statehub_fails_on_a_rejected_canary_still_reported(canary_env: CanaryEnv) -> None:
    """A canary the gates reject is removed first; the "rejected" note is judged by statehub_note too."""
    assert canary_env.hub is not None
    assert 0 == deploy_env(canary_env).exit_code
    starve_service(canary_env, "hello-web-canary")  # the real proxy: no ready endpoint, 503
    res = observe_env(canary_env, fast=True)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert "pass" == check_named(res.document, "statehub_note")["status"]
    sent = canary_env.hub.notes[-1]
    assert "hello-web: Stage 2 canary rejected" == sent["title"] and "canary_health" in sent["body"]
    kinds = [e.kind for e in canary_env.store.read_stream("hello-web")]
    assert kinds.index(EventKind.ROLLBACK_COMPLETED) < len(kinds) - 1 - kinds[::-1].index(
        EventKind.NOTE_POSTED
    )


# ------------------------------------------------------------------------------- release identity


def test_stage2_release_identity_read_back_passes(canary_env: CanaryEnv) -> None:
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    c = check_named(res.document, "canary_release_identity")
    sha = out.document["manifests_sha256"]
    assert "pass" == c["status"]
    assert c["reason"] == (
        f"release hello-web/hello-web-canary revision 1, rendered manifests sha256:{sha}: "
        f"deployed as recorded, pinned to {canary_env.digest}"
    )
    assert {"kind": "summary", "ref": f"manifests:sha256:{sha}", "detail": "rendered release identity"} in c[
        "evidence"
    ]
    assert {
        "kind": "k8s-object",
        "ref": "helm-release/hello-web/hello-web-canary",
        "detail": "revision 1",
    } in c["evidence"]


def test_stage2_canary_release_changed_mid_window_fails_release_identity(canary_env: CanaryEnv) -> None:
    """Someone upgrades the canary release to another image during the window: pods stay ready and
    healthy, but what ran is not the candidate that was recorded. Rejected and removed."""
    assert 0 == deploy_env(canary_env).exit_code
    chart = canary_env.app_dir / "chart"
    assert canary_env.tmp is not None
    overrides = sorted((canary_env.tmp / "home" / "values").glob("canary-overrides-*.yaml"))

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.helm.install_or_upgrade(
                chart=chart,
                release="hello-web-canary",
                namespace="hello-web",
                values_files=[chart / "values.yaml", chart / "values-canary.yaml", *overrides],
                set_values={
                    "image.repository": canary_env.repository,
                    "image.digest": STABLE_DIGEST,
                    "track": "canary",
                },
                wait=True,  # a real rolling update: the next sample sees it finished, pods ready
                timeout=60,
            )

    res = observe_env(canary_env, fast=True, on_progress=progress)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert ["canary_release_identity"] == failing(res.document), not_passed(res.document)
    c = check_named(res.document, "canary_release_identity")
    assert ("fail", "policy") == (c["status"], c["failure"])
    assert (
        "canary release hello-web/hello-web-canary is at revision 2, not the recorded revision 1: "
        "it was changed during the window"
    ) == c["reason"]
    canary_removed(canary_env)


# ------------------------------------------------------------------------------- pods and routing


def test_stage2_pod_status_unreadable_fails_pod_readiness_and_restart_checks(canary_env: CanaryEnv) -> None:
    """The canary pods cannot be read from sample 2 on: readiness AND restart status are unknown,
    so both pod gates fail closed (technical) and the evidence says so instead of "0/0 ready"."""
    assert 0 == deploy_env(canary_env).exit_code

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.cluster.faults.add(r"/api/v1/namespaces/hello-web/pods$", status=500, methods=["GET"])

    res = observe_env(canary_env, fast=True, on_progress=progress)
    canary_env.cluster.faults.clear()
    assert (1, True) == (res.exit_code, res.rolled_back)
    for gate, what in (
        ("canary_pods_ready", "pod status unavailable"),
        ("canary_pods_stable", "restart status unavailable"),
    ):
        c = check_named(res.document, gate)
        assert ("fail", "technical") == (c["status"], c["failure"]), c
        assert c["reason"].startswith(what) and "(sample 2; failed in 2/4 samples)" in c["reason"], c
    (pods,) = [e for e in res.document["evidence"] if e["kind"] == "pod-status"]
    assert pods["detail"].startswith("pod status unavailable"), pods
    canary_removed(canary_env)


def test_stage2_pod_status_read_passes_pod_checks_with_evidence(canary_env: CanaryEnv) -> None:
    assert 0 == deploy_env(canary_env).exit_code
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    assert "pass" == check_named(res.document, "canary_pods_ready")["status"]
    assert check_named(res.document, "canary_pods_stable")["reason"].startswith(
        "no crash loops, 0 restart(s)"
    )
    (pods,) = [e for e in res.document["evidence"] if e["kind"] == "pod-status"]
    assert "1/1 ready, 0 restarts" == pods["detail"]
    (routing,) = [e for e in res.document["evidence"] if e["ref"] == "routing:weighted"]
    assert "pass" == check_named(res.document, "canary_routing")["status"] and routing["detail"]
    inside = [e for e in res.document["evidence"] if e["detail"].startswith("key health inside")]
    assert ["key health inside: HTTP 200 (healthz /healthz)"] == [e["detail"] for e in inside]


def test_stage2_routing_read_back_failing_fails_canary_routing(canary_env: CanaryEnv) -> None:
    """The routing objects cannot be read back from sample 2 on: the routing state is unknown, so
    canary_routing fails closed (technical), not as a policy verdict about the weight."""
    assert 0 == deploy_env(canary_env).exit_code

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.cluster.faults.add(r"/namespaces/hello-web/ingresses$", status=500, methods=["GET"])

    res = observe_env(canary_env, fast=True, on_progress=progress)
    canary_env.cluster.faults.clear()
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert ["canary_routing"] == failing(res.document), not_passed(res.document)
    c = check_named(res.document, "canary_routing")
    assert ("fail", "technical") == (c["status"], c["failure"]), c
    assert (
        c["reason"].startswith("routing read-back failed")
        and "(sample 2; failed in 2/4 samples)" in c["reason"]
    )
    canary_removed(canary_env)


# ------------------------------------------------------------------------------- key health endpoint


def test_stage2_workload_without_a_key_health_endpoint_is_refused(tmp_path: Path) -> None:
    """Without a [[health]] check there is no key health endpoint to record: the declaration is refused
    (exit 2 at `railiance validate` / `deploy`), so no Stage 2 can run without that evidence."""
    app = tmp_path / "hello-web"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert "healthz" == load_declaration(app).key_health.name  # declared: `key = true`
    toml = app / "railiance" / "app.toml"
    text, n = re.subn(r"(?ms)^\[\[health\]\]\n.*?(?=^\[)", "", toml.read_text())
    assert 1 == n
    toml.write_text(text)
    with pytest.raises(DeclarationError) as info:
        load_declaration(app)
    assert isinstance(info.value, InvalidInput) and 2 == info.value.exit_code
    assert [("health", "required table [health] is missing")] == [
        (i.path, i.message) for i in info.value.issues
    ]
