"""Stage 3 promotion and rollback through the lifecycle services, on real servers.

Everything runs for real except the Kubernetes API (the real control plane, through the official client) and
the ingress controller (``http`` forwards the production host to the app): git and Stage 1, the
OCI registry, the real ``helm`` binary installing, upgrading and rolling back releases on the
real control plane, a real State Hub, a real app behind the services, and a SQLite ledger.
"""

from __future__ import annotations

from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.errors import GateFailed
from railiance_ledger.ledger.projections import lineage, workload_status
from railiance_ledger.ledger.verify import verify
from railiance_ledger.lifecycle.cluster.manifests import load_manifests
from railiance_ledger.lifecycle.cluster.objects import split_docs
from railiance_ledger.lifecycle.stage3 import PRECHECKS, lineage_with_evidence
from tests.fixtures.stage3 import NS, Stage3Env


def digest(image: str) -> str:
    return image.rsplit("@", 1)[1]


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in doc["checks"] if c["name"] == name]
    return c


def failed(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["checks"] if c["status"] == "fail"]


def promotion_of(env: Stage3Env, image: str) -> Any:
    (ev,) = [e for e in env.events(EventKind.PROMOTION_COMPLETED) if e.candidate == digest(image)]
    return ev


def live_matches(env: Stage3Env, sha: str) -> list[str]:
    """Differences between the live objects and the stored manifests ``sha`` (independent of the service)."""
    problems: list[str] = []
    plural = {"Deployment": "deployments", "Service": "services", "Ingress": "ingresses"}
    for doc in split_docs(load_manifests(sha, env.home)):
        live = env.cluster.get(plural[doc["kind"]], NS, doc["metadata"]["name"])
        if live is None:
            problems.append(f"{doc['kind']} missing")
            continue
        if doc["kind"] == "Deployment":
            want = doc["spec"]["template"]["spec"]["containers"][0]
            have = live["spec"]["template"]["spec"]["containers"][0]
            for key in ("image", "args", "env"):
                if want[key] != have[key]:
                    problems.append(f"Deployment {key}: {have[key]} != {want[key]}")
            if doc["spec"]["replicas"] != live["spec"]["replicas"]:
                problems.append("replicas")
            if (
                doc["spec"]["template"]["metadata"]["labels"]
                != live["spec"]["template"]["metadata"]["labels"]
            ):
                problems.append("pod labels")
        elif doc["kind"] == "Ingress":
            if doc["spec"]["rules"] != live["spec"]["rules"]:
                problems.append("ingress rules")
        elif doc["kind"] == "Service" and doc["spec"]["selector"] != live["spec"]["selector"]:
            problems.append("service selector")
    return problems


def host_routes(env: Stage3Env) -> dict[str, str]:
    """Ingress name -> backend service of every Ingress in the namespace."""
    return {
        i["metadata"]["name"]: i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        for i in env.cluster.list("ingresses", NS)
    }


def make_critical(env: Stage3Env) -> None:
    env.sub(r"^# critical = true.*$", "critical = true")


def critical_through_stage2(env: Stage3Env, tag: str) -> str:
    """A production-critical candidate through Stage 2: window waiver and Stage 2 approval by bob first."""
    from railiance_ledger.lifecycle.waivers import record_waiver

    image = env.push(tag)
    assert 0 == env.stage1(image).exit_code
    record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="observation_window",
        operator="bob",
        reason="4 s test window",
        candidate=digest(image),
        stage=2,
        statehub=env.statehub,
    )
    env.approve(image, "bob", stage=2)
    assert 0 == env.deploy(image).exit_code
    out = env.observe()
    assert 0 == out.exit_code, failed(out.document)
    return image


# ---------------------------------------------------------------------------------------- lifecycle


def test_stage3_full_lifecycle_v1_v2_v3_then_rollback_restores_v2(stage3_env: Stage3Env) -> None:
    """v1 -> v2 -> v3 through Stage 1, 2 (short window), approval by another operator and promotion;
    then a rollback from v3 restores exactly v2's stored manifests and routing, and the ledger verifies."""
    env = stage3_env
    promoted: dict[str, Any] = {}
    for tag in ("v1.0.0", "v2.0.0", "v3.0.0"):
        image = env.through_stage2(tag)
        env.approve(image, "bob")
        out = env.promote(image)
        assert (0, "pass") == (out.exit_code, out.document["status"]), failed(out.document)
        assert list(PRECHECKS) == [c["name"] for c in out.document["checks"]][: len(PRECHECKS)]
        assert env.live_image() == image
        assert {"hello-web": "hello-web"} == host_routes(
            env
        )  # canary Ingress removed, stable serves the host
        assert env.cluster.get("deployments", NS, "hello-web-canary") is None
        promoted[tag] = out
    v1, v2, v3 = (env.versions[t] for t in ("v1.0.0", "v2.0.0", "v3.0.0"))

    doc = promoted["v3.0.0"].document
    assert ("production", "helm-revision", digest(v2)) == (
        doc["target_environment"],
        doc["rollback_target"]["kind"],
        doc["rollback_target"]["digest"],
    )
    assert {"workflow", "digest", "k8s-object", "http-status", "statehub", "summary"} <= {
        e["kind"] for e in doc["evidence"]
    }
    assert doc["statehub_note"] in {n["id"] for n in env.hub_server.notes}
    p3 = promotion_of(env, v3)
    assert (digest(v2), 3, 4) == (
        p3.payload["previous_stable"],
        p3.payload["previous_helm_revision"],
        p3.payload["helm_revision"],
    )
    kinds = env.kinds()
    start = len(kinds) - 1 - kinds[::-1].index(EventKind.STAGE_STARTED)
    assert [
        EventKind.STAGE_STARTED,
        EventKind.ROUTING_CHANGED,
        EventKind.ROUTING_CHANGED,
        EventKind.PROMOTION_COMPLETED,
        EventKind.NOTE_POSTED,
        EventKind.STAGE_COMPLETED,
    ] == kinds[start:]

    lin = lineage(env.store, "hello-web")
    assert ([digest(v1), digest(v2), digest(v3)], digest(v2)) == (list(lin.stack), lin.rollback_target.digest)

    v2_sha = promotion_of(env, v2).payload["manifests_sha256"]
    assert live_matches(env, v2_sha)  # v3 is live: it differs from v2's manifests
    out = env.rollback("p95 latency doubled after v3", candidate_fate="blocked")
    assert (0, "rolled-back") == (out.exit_code, out.phase), out.document
    assert [] == live_matches(env, v2_sha)
    assert env.live_image() == v2
    assert {"hello-web": "hello-web"} == host_routes(env)
    assert out.document["verification"]["manifests"]["ok"] and out.document["verification"]["check"]["ok"]
    history = env.helm.history(release="hello-web", namespace=NS)
    assert ("deployed", 5) == (history[-1]["status"], history[-1]["revision"])
    done = env.events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (digest(v3), digest(v2), "blocked", "p95 latency doubled after v3") == (
        done.candidate,
        done.payload["final_stable"],
        done.payload["candidate_fate"],
        done.payload["symptom"],
    )
    assert "helm rollback hello-web 3" in done.payload["action"]
    lin = lineage(env.store, "hello-web")
    assert (digest(v2), digest(v1), "rolled-back") == (
        lin.current_stable.digest,
        lin.rollback_target.digest,
        lin.stables[2].state,
    )
    status = workload_status(env.store, "hello-web")
    assert "rolled-back" == status.candidate(digest(v3)).state

    # a blocked candidate is never promoted again
    again = env.promote(v3)
    assert "stage2_accepted" in failed(again.document) and env.live_image() == v2

    # what was stable when v2 was promoted, who approved it, with which evidence
    at = promotion_of(env, v2).recorded_at
    then = lineage_with_evidence(env.store, "hello-web", at=at)
    cur = then["current_stable"]
    assert digest(v2) == cur["digest"]
    assert ["bob"] == [a["operator"] for a in cur["approvals"] if a["stage"] == 3]
    assert cur["evidence"]["stage_result"] is None  # recorded just after the promotion
    now = lineage_with_evidence(env.store, "hello-web")
    v2_now = next(s for s in now["stables"] if s["digest"] == digest(v2))
    assert "pass" == v2_now["evidence"]["stage_result"]["status"]
    assert v2_now["evidence"]["notes"] and v2_now["evidence"]["promotion"]["workflow_id"].startswith(
        "promote-hello-web-"
    )

    assert verify(env.store).ok


def test_rollback_digest_and_values_reapplies_stored_manifests(stage3_env: Stage3Env) -> None:
    """Strategy digest-and-values: the previous stable's exact rendered manifests are re-applied."""
    env = stage3_env
    env.sub(r'^strategy = "helm-revision"', 'strategy = "digest-and-values"')
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    v2 = env.through_stage2("v2.0.0")
    assert 0 == env.promote(v2).exit_code
    out = env.rollback("errors after v2")
    assert (0, "rolled-back") == (out.exit_code, out.phase), out.document
    assert [] == live_matches(env, promotion_of(env, v1).payload["manifests_sha256"])
    assert env.live_image() == v1
    assert "re-applied the stored rendered manifests" in out.document["action"]
    assert any("Helm's release record" in c for c in out.document["remaining_cleanup"])
    assert digest(v1) == lineage(env.store, "hello-web").current_stable.digest


def test_rollback_from_first_promotion_returns_to_pre_ledger_stable(stage3_env: Stage3Env) -> None:
    """The first promotion records the live stable it replaced; a rollback returns to it."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    out = env.rollback("v1 breaks logins")
    assert 0 == out.exit_code, out.document
    assert env.live_image() == env.stable0
    assert digest(env.stable0) == lineage(env.store, "hello-web").current_stable.digest


# ---------------------------------------------------------------------------------------- automatic rollback


def test_promote_smoke_failure_rolls_back_automatically(stage3_env: Stage3Env) -> None:
    """The post-promotion smoke fails: the previous stable is restored and Stage 3 fails."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    env.app.statuses["/"] = 500  # the smoke path breaks; /healthz (the rollback verification) stays healthy
    out = env.promote(v1)
    assert (1, True) == (out.exit_code, out.rolled_back)
    assert "fail" == check(out.document, "post_promotion_smoke")["status"]
    assert "pass" == check(out.document, "automatic_rollback")["status"]
    assert env.live_image() == env.stable0
    assert [] == env.events(EventKind.PROMOTION_COMPLETED)
    done = env.events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (digest(v1), digest(env.stable0), "returned-to-stage1") == (
        done.candidate,
        done.payload["final_stable"],
        done.payload["candidate_fate"],
    )
    assert "post-promotion smoke failed" in done.payload["symptom"]
    assert EventKind.STAGE_COMPLETED == env.kinds()[-1]
    assert "rolled-back" == workload_status(env.store, "hello-web").candidate(digest(v1)).state
    # returned to Stage 1: the old Stage 2 acceptance no longer counts
    env.app.statuses.clear()
    assert "stage2_accepted" in failed(env.promote(v1).document)
    assert verify(env.store).ok


# ---------------------------------------------------------------------------------------- approvals


def test_promote_production_critical_without_approval_refused(stage3_env: Stage3Env) -> None:
    """Production-critical: no Stage 3 approval -> refused before anything changes; self-approval and
    approver-promotes are refused; an approval by another operator lets the deployer promote."""
    env = stage3_env
    make_critical(env)
    v1 = critical_through_stage2(env, "v1.0.0")
    out = env.promote(v1)
    assert (1, ["human_approval"]) == (out.exit_code, failed(out.document))
    assert env.live_image() == env.stable0
    assert 1 == len(env.helm.history(release="hello-web", namespace=NS))
    assert EventKind.STAGE_STARTED not in [
        e.kind for e in env.events(EventKind.STAGE_STARTED) if e.stage == 3
    ]

    with pytest.raises(GateFailed, match="separation of duties"):
        env.approve(v1, "alice")  # alice deployed the canary
    env.approve(v1, "bob")
    by_approver = env.promote(v1, operator="bob")
    assert "separation of duties" in check(by_approver.document, "human_approval")["reason"]
    out = env.promote(v1, operator="alice")
    assert 0 == out.exit_code, failed(out.document)
    assert ("bob", True) == (out.document["approval"]["operator"], out.document["approval"]["required"])


def test_stage2_approval_revoked_mid_window_rolls_back(stage3_env: Stage3Env) -> None:
    """Revoking the Stage 2 approval during the observation window rolls the canary back at once."""
    from railiance_ledger.lifecycle.approvals import revoke

    env = stage3_env
    make_critical(env)
    v1 = critical_through_stage2(env, "v1.0.0")
    env.approve(v1, "bob")
    assert 0 == env.promote(v1).exit_code
    from railiance_ledger.lifecycle.waivers import record_waiver

    v2 = env.push("v2.0.0")
    assert 0 == env.stage1(v2).exit_code
    record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="observation_window",
        operator="bob",
        reason="test window",
        candidate=digest(v2),
        stage=2,
        statehub=env.statehub,
    )
    env.approve(v2, "bob", stage=2)
    assert 0 == env.deploy(v2).exit_code

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            revoke(
                store=env.store,
                decl=env.decl(),
                operator="carol",
                reason="change freeze",
                image=v2,
                statehub=env.statehub,
            )

    res = env.observe(on_progress=progress)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert "approval" in env.events(EventKind.ROLLBACK_STARTED)[-1].payload["symptom"].lower()
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None
    assert env.live_image() == v1
    assert "stage2_accepted" in failed(env.promote(v2).document)
    assert env.live_image() == v1


def test_rollback_of_stage2_canary_keeps_the_stable_lineage(stage3_env: Stage3Env) -> None:
    """``rollback`` while a canary is observed removes the canary; the stable lineage is unchanged."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    v2 = env.push("v2.0.0")
    assert 0 == env.stage1(v2).exit_code
    assert 0 == env.deploy(v2).exit_code
    out = env.rollback("canary returns 502s")
    assert (0, "canary-removed") == (out.exit_code, out.phase), out.document
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None and env.live_image() == v1
    assert digest(v1) == lineage(env.store, "hello-web").current_stable.digest


# ---------------------------------------------------------------------------------------- deferral, forward-only, manual


def test_rollback_deferred_without_approval_refused(stage3_env: Stage3Env) -> None:
    """Deferring a rollback needs a fresh approval by another operator; then rollback.deferred and a note."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    with pytest.raises(GateFailed, match="needs a recorded human approval"):
        env.rollback("db failover in progress", defer=True)
    grant = env.approve(v1, "bob")
    with pytest.raises(GateFailed, match="cannot approve their own"):
        env.rollback("db failover in progress", operator="bob", defer=True, approval_id=grant.event_id)
    assert [] == env.events(EventKind.ROLLBACK_DEFERRED)
    out = env.rollback("db failover in progress", defer=True, approval_id=grant.event_id)
    assert (0, "deferred", "bob") == (out.exit_code, out.phase, out.document["approved_by"])
    (ev,) = env.events(EventKind.ROLLBACK_DEFERRED)
    assert out.document["statehub_note"] in {n["id"] for n in env.hub_server.notes}
    assert env.live_image() == v1 and digest(v1) == ev.candidate


def test_rollback_forward_only_migration_blocks_automatic_rollback(stage3_env: Stage3Env) -> None:
    """A forward-only migration: promotion needs an approval, automatic rollback is refused, and an
    operator proceeds only with --accept-forward-only and a fresh approval by someone else."""
    env = stage3_env
    env.sub(r'^classification = "reversible"', 'classification = "forward-only"')
    v1 = env.through_stage2("v1.0.0")
    assert "migrations_approved" in failed(env.promote(v1).document)
    env.approve(v1, "bob")
    assert 0 == env.promote(v1).exit_code
    with pytest.raises(GateFailed, match="forward-only migration"):
        env.rollback("errors", automatic=True)
    with pytest.raises(GateFailed, match="forward-only migration"):
        env.rollback("errors")
    first = env.events(EventKind.APPROVAL_GRANTED)[-1].event_id
    with pytest.raises(GateFailed, match="predates the promotion"):
        env.rollback("errors", accept_forward_only=True, approval_id=first)
    assert env.live_image() == v1 and [] == env.events(EventKind.ROLLBACK_STARTED)
    grant = env.approve(v1, "bob")
    out = env.rollback("errors", accept_forward_only=True, approval_id=grant.event_id)
    assert 0 == out.exit_code and env.live_image() == env.stable0


def test_promote_forward_only_smoke_failure_does_not_roll_back(stage3_env: Stage3Env) -> None:
    """With a forward-only migration a failed promotion is not rolled back automatically: a human decides."""
    env = stage3_env
    env.sub(r'^classification = "reversible"', 'classification = "forward-only"')
    v1 = env.through_stage2("v1.0.0")
    env.approve(v1, "bob")
    env.app.statuses["/"] = 503
    out = env.promote(v1)
    assert (1, False) == (out.exit_code, out.rolled_back)
    assert "BLOCKED" in check(out.document, "automatic_rollback")["reason"]
    assert env.live_image() == v1 and [] == env.events(EventKind.ROLLBACK_STARTED)


def test_rollback_manual_strategy_records_runbook_and_does_not_act(stage3_env: Stage3Env) -> None:
    """The manual path records the runbook and acts on nothing; --manual-done verifies and records it."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    env.sub(r'^strategy = "helm-revision"', 'strategy = "manual"\nrunbook = "docs/recover.md"')
    out = env.rollback("disk corruption")
    assert (1, "manual-action-required", "docs/recover.md") == (
        out.exit_code,
        out.phase,
        out.document["runbook"],
    )
    assert env.live_image() == v1 and [] == env.events(EventKind.ROLLBACK_COMPLETED)
    env.helm.rollback(
        release="hello-web", namespace=NS, revision=1, wait=True
    )  # the human follows the runbook
    done = env.rollback("disk corruption", manual_done=True)
    assert 0 == done.exit_code, done.document
    assert digest(env.stable0) == lineage(env.store, "hello-web").current_stable.digest


# ---------------------------------------------------------------------------------------- prechecks


def test_promote_emergency_skip_of_stage2_shows_retrospective_pending_in_status(
    stage3_env: Stage3Env,
) -> None:
    """An emergency exception skips Stage 2; the promotion runs and status lists the awaiting approval."""
    from railiance_ledger.lifecycle.approvals import pending_retrospective, record_exception

    env = stage3_env
    v1 = env.push("v1.0.0")
    assert 0 == env.stage1(v1).exit_code
    exc = record_exception(
        store=env.store,
        decl=env.decl(),
        operator="carol",
        skip_stage=2,
        reason="CVE hotfix, canary would delay the fix",
        image=v1,
        statehub=env.statehub,
    )
    out = env.promote(v1)
    assert 0 == out.exit_code, failed(out.document)
    assert "emergency exception" in check(out.document, "stage2_accepted")["reason"]
    status = workload_status(env.store, "hello-web")
    assert ([exc.event_id], "stable") == (
        [e.event_id for e in status.awaiting_retrospective],
        status.candidate(digest(v1)).state,
    )
    assert [exc.event_id] == [p["exception_id"] for p in pending_retrospective(env.store, "hello-web")]
    env.approve(v1, "bob", retrospective=True)
    assert () == workload_status(env.store, "hello-web").awaiting_retrospective


def test_promote_fails_closed_without_stage2_acceptance(stage3_env: Stage3Env) -> None:
    """No Stage 2 result for the digest: every precheck is named, nothing changes, exit 1, the failure is recorded."""
    env = stage3_env
    v1 = env.push("v1.0.0")
    assert 0 == env.stage1(v1).exit_code
    out = env.promote(v1)
    assert (1, list(PRECHECKS)) == (out.exit_code, [c["name"] for c in out.document["checks"]])
    assert ["stage2_accepted"] == failed(out.document)
    assert env.live_image() == env.stable0 and 1 == len(env.helm.history(release="hello-web", namespace=NS))
    recorded = [
        e for e in env.store.read_stream("hello-web") if e.kind == EventKind.STAGE_COMPLETED and e.stage == 3
    ]
    # a failing result is evidence and always lands; the ledger would refuse a passing one without stage 2
    assert ["fail"] == [e.payload["status"] for e in recorded]


def test_promote_gateway_api_weighted_canary_shifts_then_replaces(stage3_env: Stage3Env) -> None:
    """Gateway API: the HTTPRoute sends 100% to the canary, then the stable release takes over and the
    route is back to the stable service only."""
    env = stage3_env
    env.sub(r'^provider = "ingress-nginx"', 'provider = "gateway-api"')
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1)
    assert 0 == out.exit_code, failed(out.document)
    shifted = next(e for e in env.events(EventKind.ROUTING_CHANGED) if e.stage == 3)
    assert (100, "weighted traffic shifted to the candidate") == (
        shifted.payload["weight"],
        shifted.payload["action"],
    )
    route = env.cluster.get("httproutes", NS, "hello-web")
    assert route is None or {"hello-web"} == {
        b["name"] for r in route["spec"]["rules"] for b in r["backendRefs"]
    }
    assert env.live_image() == v1


def test_promote_refuses_routing_strategy_it_cannot_roll_back(stage3_env: Stage3Env) -> None:
    """strategy routing would only re-apply routing objects after a release replacement: refused up front."""
    env = stage3_env
    env.sub(r'^strategy = "helm-revision"', 'strategy = "routing"')
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1)
    assert ["rollback_available"] == failed(out.document)
    assert env.live_image() == env.stable0


def test_promote_refuses_to_change_production_without_a_state_hub_unless_waived(
    stage3_env: Stage3Env,
) -> None:
    """The State Hub note is required Stage 3 evidence: with nowhere to post it, nothing changes (exit 1,
    `statehub_configured` named); a stage 3 waiver for statehub_note lets the promotion proceed, recorded."""
    from railiance_ledger.lifecycle.stage3 import promote
    from railiance_ledger.lifecycle.waivers import record_waiver

    env = stage3_env
    v1 = env.through_stage2("v1.0.0")

    def promote_without_hub() -> Any:
        return promote(
            store=env.store,
            decl=env.decl(),
            operator="alice",
            kube=env.kube,
            helm=env.helm,
            http=env.http,
            statehub=None,
            image=v1,
            home=env.home,
            ready_timeout=30.0,
        )

    out = promote_without_hub()
    assert (1, ["statehub_configured"]) == (out.exit_code, failed(out.document))
    assert env.live_image() == env.stable0
    record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="statehub_note",
        operator="bob",
        stage=3,
        reason="State Hub maintenance window; note filed by hand as INC-42",
        candidate=digest(v1),
    )
    out = promote_without_hub()
    assert 0 == out.exit_code, failed(out.document)
    assert "waived" == check(out.document, "statehub_configured")["status"]
    assert env.live_image() == v1
