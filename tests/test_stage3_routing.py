"""Stage 3 routing-switch promotion and the routing rollback, on real servers.

``[promotion] form = "routing-switch"`` (with ``rollback.strategy = "routing"``): promote points the
stable Service at the accepted canary release's pods instead of upgrading the production release,
records the exact routing objects it replaced, and a rollback re-applies them. Everything runs as
in tests/test_stage3_promote.py: the real Kubernetes control plane through the official client, the real
``helm`` binary, the real registry and State Hub, a SQLite ledger.
"""

from __future__ import annotations

from typing import Any

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import lineage, workload_status
from railiance_ledger.ledger.verify import verify
from railiance_ledger.lifecycle.cluster.objects import clean_object
from tests.fixtures.stage3 import NS, Stage3Env


def digest(image: str) -> str:
    return image.rsplit("@", 1)[1]


def check(doc: dict[str, Any], name: str) -> Any:
    (c,) = [c for c in doc["checks"] if c["name"] == name]
    return c


def current_stable(env: Stage3Env) -> str:
    """The digest lineage names as the current stable."""
    cur = lineage(env.store, "hello-web").current_stable
    assert cur is not None
    return str(cur.digest)


def state_of(env: Stage3Env, image: str) -> str:
    """The candidate state the status projection gives ``image``."""
    cand = workload_status(env.store, "hello-web").candidate(digest(image))
    assert cand is not None
    return str(cand.state)


def failed(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["checks"] if c["status"] == "fail"]


def promotion_of(env: Stage3Env, image: str) -> Any:
    (ev,) = [e for e in env.events(EventKind.PROMOTION_COMPLETED) if e.candidate == digest(image)]
    return ev


def host_routes(env: Stage3Env) -> dict[str, str]:
    """Ingress name -> backend service of every Ingress in the namespace."""
    return {
        i["metadata"]["name"]: i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        for i in env.cluster.list("ingresses", NS)
    }


def routing_now(env: Stage3Env) -> list[dict[str, Any]]:
    """The live stable routing objects (Service, Ingress) as a routing switch records them."""
    return [clean_object(env.service()), clean_object(env.cluster.get("ingresses", NS, "hello-web"))]


def same_objects(recorded: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    """The recorded routing objects are exactly the live ones (spec, labels, name)."""
    assert [(o["kind"], o["metadata"]["name"]) for o in recorded] == [
        (o["kind"], o["metadata"]["name"]) for o in live
    ]
    for want, have in zip(recorded, live, strict=True):
        assert want["spec"] == have["spec"], want["metadata"]["name"]
        assert want["metadata"].get("labels") == have["metadata"].get("labels")


def test_promote_routing_switch_then_rollback_restores_previous_routing(stage3_env: Stage3Env) -> None:
    """v1 by release replace; v2 by routing switch (the stable Service now selects v2's canary pods,
    the production release untouched); a rollback re-applies exactly v1's routing, lineage is back
    at v1, and the ledger verifies."""
    env = stage3_env
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    revisions = len(env.helm.history(release="hello-web", namespace=NS))
    before = routing_now(env)
    assert [v1] == env.served_images()

    env.use_routing_switch()
    v2 = env.through_stage2("v2.0.0")
    out = env.promote(v2)
    assert (0, "pass") == (out.exit_code, out.document["status"]), failed(out.document)

    canary_selector = env.service("hello-web-canary")["spec"]["selector"]
    assert ("hello-web-canary", "canary") == (
        canary_selector["app.kubernetes.io/instance"],
        canary_selector["track"],
    )
    assert canary_selector == env.service()["spec"]["selector"]  # the stable Service points at v2's release
    assert [v2] == env.served_images()
    assert env.live_image() == v1  # the production release still runs v1, untouched
    assert revisions == len(env.helm.history(release="hello-web", namespace=NS))
    assert env.live_image("hello-web-canary") == v2  # the canary release is kept: it is the stable workload
    assert {"hello-web": "hello-web"} == host_routes(env)  # the canary's own Ingress is gone

    p2 = promotion_of(env, v2).payload
    canary_rev = env.helm.history(release="hello-web-canary", namespace=NS)[-1]["revision"]
    assert ("routing-switch", "hello-web-canary", "hello-web-canary", NS, canary_rev, digest(v1)) == (
        p2["form"],
        p2["release"],
        p2["serving_release"],
        p2["namespace"],
        p2["helm_revision"],
        p2["previous_stable"],
    )
    assert (
        {"name": "hello-web", "namespace": NS, "helm_revision": revisions, "changed": False},
        "hello-web",
    ) == (p2["stable_release"], p2["previous_serving_release"])
    same_objects(p2["routing_previous"], before)  # exactly what the switch replaced
    same_objects(p2["routing_new"], routing_now(env))
    assert "kubectl --namespace hello-web patch service hello-web" in p2["command"]
    assert "pass" == check(out.document, "stable_routing_points_at_candidate")["status"]
    assert ("routing", digest(v1)) == (
        out.document["rollback_target"]["kind"],
        out.document["rollback_target"]["digest"],
    )
    assert "routing switch" in check(out.document, "rollback_available")["reason"]
    kinds = env.kinds()
    start = len(kinds) - 1 - kinds[::-1].index(EventKind.STAGE_STARTED)
    assert [
        EventKind.STAGE_STARTED,
        EventKind.ROUTING_CHANGED,
        EventKind.PROMOTION_COMPLETED,
        EventKind.NOTE_POSTED,
        EventKind.STAGE_COMPLETED,
    ] == kinds[start:]
    assert digest(v2) == current_stable(env)

    rolled = env.rollback("v2 returns 500 on checkout")
    assert (0, "rolled-back") == (rolled.exit_code, rolled.phase), rolled.document
    same_objects(p2["routing_previous"], routing_now(env))  # v1's routing objects, exactly as recorded
    assert env.service()["spec"]["selector"] == p2["routing_previous"][0]["spec"]["selector"]
    assert [v1] == env.served_images()
    assert rolled.document["verification"]["routing"]["ok"] and rolled.document["verification"]["check"]["ok"]
    assert "re-applied the previous routing configuration" in rolled.document["action"]
    assert (
        env.cluster.get("deployments", NS, "hello-web-canary") is None
    )  # v2's release retired once verified
    done = env.events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (digest(v2), digest(v1), "routing") == (
        done.candidate,
        done.payload["final_stable"],
        done.payload["strategy"],
    )
    assert digest(v1) == current_stable(env)
    assert "rolled-back" == state_of(env, v2)
    assert verify(env.store).ok


def test_promote_routing_switch_smoke_failure_restores_previous_routing(stage3_env: Stage3Env) -> None:
    """The first promotion is a routing switch from the pre-ledger stable; its smoke fails, so the
    previous routing is restored automatically and the candidate's release is retired."""
    env = stage3_env
    env.use_routing_switch()
    before = routing_now(env)
    v1 = env.through_stage2("v1.0.0")
    env.app.statuses["/"] = 500  # the smoke path breaks; /healthz (the rollback verification) stays healthy
    out = env.promote(v1)
    assert (1, True) == (out.exit_code, out.rolled_back), failed(out.document)
    assert "pass" == check(out.document, "promotion_applied")["status"]
    assert "fail" == check(out.document, "post_promotion_smoke")["status"]
    assert "pass" == check(out.document, "automatic_rollback")["status"]
    same_objects(before, routing_now(env))
    assert [env.stable0] == env.served_images()
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None
    assert [] == env.events(EventKind.PROMOTION_COMPLETED)
    switched = [e for e in env.events(EventKind.ROUTING_CHANGED) if e.stage == 3]
    assert 1 == len(switched)
    same_objects(switched[0].payload["routing_previous"], before)
    done = env.events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (digest(v1), digest(env.stable0), "routing", "returned-to-stage1") == (
        done.candidate,
        done.payload["final_stable"],
        done.payload["strategy"],
        done.payload["candidate_fate"],
    )
    assert done.payload["verification"]["routing"]["ok"]
    assert EventKind.STAGE_COMPLETED == env.kinds()[-1]
    assert verify(env.store).ok


def test_promote_routing_switch_alternating_canary_releases(stage3_env: Stage3Env) -> None:
    """Two routing switches in a row: the second canary runs in another release (the one serving v1
    must not be redeployed); a release replace after a switch and a canary deployed into the serving
    release are refused before anything changes; a rollback returns to v1's release."""
    env = stage3_env
    env.use_routing_switch()
    v1 = env.through_stage2("v1.0.0")
    assert 0 == env.promote(v1).exit_code
    assert [v1] == env.served_images() and env.live_image() == env.stable0

    env.use_canary_release("hello-web-canary-b")
    v2 = env.through_stage2("v2.0.0")
    replaced = env.decl()
    env.sub(r'^form = "routing-switch"', 'form = "release-replace"')
    env.sub(r'^strategy = "routing"', 'strategy = "helm-revision"')
    refused = env.promote(v2)
    assert ["rollback_available"] == failed(refused.document)
    assert "after a routing switch" in check(refused.document, "rollback_available")["reason"]
    assert [v1] == env.served_images()
    env.sub(r'^form = "release-replace"', 'form = "routing-switch"')
    env.sub(r'^strategy = "helm-revision"', 'strategy = "routing"')
    assert env.decl() == replaced

    out = env.promote(v2)
    assert 0 == out.exit_code, failed(out.document)
    assert [v2] == env.served_images()
    assert "hello-web-canary-b" == env.service()["spec"]["selector"]["app.kubernetes.io/instance"]
    assert env.live_image("hello-web-canary") == v1  # the previous stable's release is kept
    assert "hello-web-canary" == promotion_of(env, v2).payload["previous_serving_release"]

    rolled = env.rollback("v2 leaks memory")
    assert 0 == rolled.exit_code, rolled.document
    assert [v1] == env.served_images()
    assert env.cluster.get("deployments", NS, "hello-web-canary-b") is None
    assert digest(v1) == current_stable(env)

    # a canary aimed at the release that serves the stable is refused before anything is applied
    env.use_canary_release("hello-web-canary")
    v3 = env.push("v3.0.0")
    assert 0 == env.stage1(v3).exit_code
    refused = env.deploy(v3)
    assert ["canary_distinguishable"] == failed(refused.document)
    assert "serves production" in check(refused.document, "canary_distinguishable")["reason"]
    assert [v1] == env.served_images()
    assert verify(env.store).ok
