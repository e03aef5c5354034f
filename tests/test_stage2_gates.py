"""Stage 2 gates in passing/failing pairs, end to end (real control plane + real helm + real registry + real
Prometheus + the recording State Hub): each failure names its check or gate and exits 1.
"""

from __future__ import annotations

from typing import Any

from railiance_ledger.domain.events import EventKind
from railiance_ledger.lifecycle import approvals
from railiance_ledger.lifecycle.waivers import record_waiver
from tests.fixtures.stage2 import (
    CanaryEnv,
    check_named,
    deploy_env,
    events_of,
    not_passed,
    observe_env,
    statehub_poster,
)
from tests.fixtures.signing import signed_approve, test_keys
from tests.fixtures.statehub import StateHubServer
from tests.harness import free_port

AUTH_FAILURES = [f"GET /api/orders -> 403 Forbidden (attempt {i})" for i in range(5)]


def nothing_applied(env: CanaryEnv) -> None:
    assert env.cluster.get("deployments", "hello-web", "hello-web-canary") is None
    assert env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None


def make_critical(env: CanaryEnv) -> None:
    """Production-critical hello-web; its 4 s window waived (under the 60 m minimum) by bob."""
    env.edit("# critical = true", "critical = true")
    record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="observation_window",
        operator="bob",
        reason="test window: seconds, not an hour",
        candidate=env.digest,
        stage=2,
    )


def approve(env: CanaryEnv) -> Any:
    """bob approves the canary, signed with his test key (a critical workload's approval must be), noted
    in the recording State Hub (an undelivered note would block Stage 2)."""
    return signed_approve(
        keys=test_keys(),
        store=env.store,
        decl=env.decl(),
        operator="bob",
        stage=2,
        image=env.image,
        statehub=statehub_poster(env.hub.url) if env.hub else None,
    )


# ------------------------------------------------------------------------------- dependencies


def test_stage2_degraded_dependency_fails_dependencies_healthy(canary_env: CanaryEnv) -> None:
    canary_env.edit(f"{canary_env.app_url}/health", f"http://127.0.0.1:{free_port()}/health")
    out = deploy_env(canary_env)
    assert 1 == out.exit_code
    c = check_named(out.document, "dependencies_healthy")
    assert "fail" == c["status"] and c["reason"].startswith("dependencies unhealthy: postgres-main"), c
    nothing_applied(canary_env)


def test_stage2_degraded_dependency_passes_with_operator_waiver(canary_env: CanaryEnv) -> None:
    canary_env.edit(f"{canary_env.app_url}/health", f"http://127.0.0.1:{free_port()}/health")
    waiver = record_waiver(
        store=canary_env.store,
        decl=canary_env.decl(),
        gate="dependencies_healthy",
        operator="bob",
        reason="postgres-main read replica down; canary reads only",
        candidate=canary_env.digest,
        stage=2,
    )
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    c = check_named(out.document, "dependencies_healthy")
    assert ("waived", waiver.event_id) == (c["status"], c["waiver"])
    assert c["reason"].startswith("degraded with operator approval: postgres-main")
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)


# ------------------------------------------------------------------------------- approvals


def test_stage2_production_critical_without_approval_fails_operator_approval(canary_env: CanaryEnv) -> None:
    make_critical(canary_env)
    out = deploy_env(canary_env)
    assert 1 == out.exit_code
    c = check_named(out.document, "operator_approval")
    assert "fail" == c["status"] and "no approval.granted" in c["reason"]
    assert {"required": True, "decision": "missing", "operator": None} == out.document["approval"]
    nothing_applied(canary_env)


def test_stage2_production_critical_with_approval_passes(canary_env: CanaryEnv) -> None:
    make_critical(canary_env)
    grant = approve(canary_env)
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    assert "waived" == check_named(out.document, "observation_window")["status"]
    assert (
        f"approved by bob (event {grant.event_id})"
        == check_named(out.document, "operator_approval")["reason"]
    )
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    assert {"required": True, "decision": grant.event_id, "operator": "bob"} == res.document["approval"]


def test_stage2_approval_revoked_mid_window_rolls_back_immediately(canary_env: CanaryEnv) -> None:
    make_critical(canary_env)
    approve(canary_env)
    assert 0 == deploy_env(canary_env).exit_code
    seen: list[int] = []

    def progress(done: int, total: int, sample: Any) -> None:
        seen.append(done)
        if done == 2:
            revoked = approvals.revoke(
                store=canary_env.store,
                decl=canary_env.decl(),
                operator="carol",
                reason="change freeze declared",
                image=canary_env.image,
            )
            assert revoked.payload["immediate_rollback"]

    res = observe_env(canary_env, on_progress=progress)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert [1, 2, 3] == seen  # the next sample sees the revocation and rolls back in that iteration
    c = check_named(res.document, "immediate_rollback")
    assert "approval revoked during the observation window" in c["reason"]
    assert "fail" == check_named(res.document, "operator_approval")["status"]
    done = events_of(canary_env, EventKind.ROLLBACK_COMPLETED)[0].payload
    assert ("approval revoked during the observation window", "returned-to-stage1") == (
        done["symptom"],
        done["candidate_fate"],
    )
    nothing_applied(canary_env)


# ------------------------------------------------------------------------------- pods and logs


def test_stage2_repeated_authorization_failures_roll_back_immediately(canary_env: CanaryEnv) -> None:
    canary_env.cluster.behaviours.set(canary_env.image, "ready", logs=AUTH_FAILURES)
    assert 0 == deploy_env(canary_env).exit_code
    res = observe_env(canary_env, fast=True)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert (
        "repeated authorization failures: 5 401/403 log lines"
        in check_named(res.document, "immediate_rollback")["reason"]
    )
    assert "repeated authorization failures" in check_named(res.document, "canary_logs_clean")["reason"]
    assert 1 == len(events_of(canary_env, EventKind.CANARY_SAMPLE))  # the first sample already saw it
    nothing_applied(canary_env)


def test_stage2_occasional_authorization_failure_is_not_repeated(canary_env: CanaryEnv) -> None:
    canary_env.cluster.behaviours.set(canary_env.image, "ready", logs=AUTH_FAILURES[:1])
    assert 0 == deploy_env(canary_env).exit_code
    res = observe_env(canary_env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    c = check_named(res.document, "canary_logs_clean")
    assert "pass" == c["status"] and c["reason"].endswith("401/403 line(s)"), c


def test_stage2_pending_pods_fail_canary_pods_stable(canary_env: CanaryEnv) -> None:
    canary_env.cluster.behaviours.set(canary_env.image, "pending")
    out = deploy_env(canary_env, rollout_timeout=1.0)
    assert 0 == out.exit_code, not_passed(out.document)
    assert any(
        e["kind"] == "pod-status" and e["detail"].endswith("1 pending, 0 crash-looping after 1s")
        for e in out.document["evidence"]
    ), out.document["evidence"]
    res = observe_env(canary_env, fast=True)
    assert (1, True) == (res.exit_code, res.rolled_back)
    c = check_named(res.document, "canary_pods_stable")
    assert "fail" == c["status"] and "pod(s) pending" in c["reason"], c
    assert "fail" == check_named(res.document, "canary_pods_ready")["status"]
    assert "canary_pods_stable" in events_of(canary_env, EventKind.ROLLBACK_STARTED)[0].payload["symptom"]


# ------------------------------------------------------------------------------- State Hub


def test_stage2_statehub_notes_posted_with_ids_in_the_ledger(
    canary_env: CanaryEnv, statehub: StateHubServer
) -> None:
    hub = statehub_poster(statehub.url)
    out = deploy_env(canary_env, statehub=hub)
    assert 0 == out.exit_code, not_passed(out.document)
    assert "note-1" == out.document["statehub_note"]
    res = observe_env(canary_env, fast=True, statehub=hub)
    assert 0 == res.exit_code, not_passed(res.document)
    posted = events_of(canary_env, EventKind.NOTE_POSTED)
    assert [("note-1", True, "stage.started"), ("note-2", True, "stage.started")] == [
        (e.payload["note_id"], e.payload["delivered"], e.payload["ref_kind"]) for e in posted
    ]
    assert {"kind": "statehub", "ref": "note-2", "detail": "progress note"} in res.document["evidence"]
    assert "note-2" == res.document["statehub_note"]
    titles = [n["title"] for n in statehub.notes]
    # the acceptance note is posted before the stage is decided: it says "gates passed", never "accepted"
    assert [
        "hello-web: Stage 2 canary deployed (weighted)",
        "hello-web: Stage 2 canary acceptance gates passed",
    ] == titles
    assert canary_env.digest in statehub.raw_text()
    assert not (out.warnings or res.warnings)


def test_stage2_statehub_down_at_deploy_is_reported_not_dropped(
    canary_env: CanaryEnv, statehub: StateHubServer
) -> None:
    """The deploy note is reported (warnings, note.posted delivered=false) and the operator is told the
    statehub_note gate will fail; State Hub back by the end of the window: the acceptance note is
    delivered and the canary accepted. (State Hub still down at the end: tests/test_stage2_evidence.py.)"""
    hub = statehub_poster(statehub.url)
    statehub.down()
    out = deploy_env(canary_env, statehub=hub)
    assert 0 == out.exit_code
    assert out.document["statehub_note"] is None
    assert any("was NOT delivered" in w for w in out.warnings), out.warnings
    assert any("statehub_note acceptance gate will fail" in w for w in out.warnings), out.warnings
    statehub.up()
    res = observe_env(canary_env, fast=True, statehub=hub)
    assert 0 == res.exit_code, not_passed(res.document)
    posted = events_of(canary_env, EventKind.NOTE_POSTED)
    assert [False, True] == [e.payload["delivered"] for e in posted]
    assert "AdapterUnavailable" == posted[0].payload["error_type"]
    assert "pass" == check_named(res.document, "statehub_note")["status"]
    assert not res.warnings
