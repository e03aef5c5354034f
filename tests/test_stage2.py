"""Stage 2 service: deploy the canary (prechecks first), observe it, accept or roll back.

Everything is real except the cluster: the real Kubernetes control plane (official client; the real helm
binary installs, lists and uninstalls the releases), the real registry (distribution), real
Prometheus scraping a stable and a canary metrics app per test, and a SQLite ledger. Windows are
4 s with 1 s samples.
"""

from __future__ import annotations

import time
from typing import Any

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.lifecycle.stage2 import PRECHECKS, deploy_canary, observe_canary
from tests.fixtures.stage2 import (
    STABLE_DIGEST,
    CanaryEnv,
    check_named,
    deploy_env,
    events_of,
    not_passed,
    observe_env,
    starve_service,
    use_form,
    wait_for_metric,
    with_env_statehub,
)


def deploy(env: CanaryEnv, **kw: Any) -> Any:
    return deploy_canary(
        store=env.store,
        decl=env.decl(),
        operator="alice",
        kube=env.kube,
        helm=env.helm,
        registry=env.registry,
        metrics=env.metrics,
        http=env.http,
        resolve_host=lambda h: True,
        image=env.image,
        **with_env_statehub(kw),
    )


def observe(env: CanaryEnv, **kw: Any) -> Any:
    kw.setdefault("sleep", lambda s: None)
    return observe_canary(
        store=env.store,
        decl=env.decl(),
        operator="alice",
        kube=env.kube,
        helm=env.helm,
        metrics=env.metrics,
        http=env.http,
        **with_env_statehub(kw),
    )


def kinds(env: CanaryEnv) -> list[str]:
    return [e.kind for e in env.store.read_stream("hello-web")]


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return check_named(doc, name)


def stable_image(env: CanaryEnv) -> str:
    dep = env.cluster.get("deployments", "hello-web", "hello-web")
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


# ---------------------------------------------------------------------------------------- accepted


def test_stage2_weighted_canary_accepted(canary_env: CanaryEnv) -> None:
    """Weighted 10 % on ingress-nginx, observed for 4 s against real Prometheus: accepted, stable untouched."""
    out = deploy(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    ing = canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary")
    assert "10" == ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
    # the canary is helm's own release (real helm history), pinned to the candidate digest
    assert 1 == canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web")
    assert canary_env.digest in canary_env.helm.get_manifest(
        release="hello-web-canary", namespace="hello-web"
    )
    assert 1 == out.document["release"]["revision"]
    progress: list[int] = []
    res = observe_env(canary_env, on_progress=lambda done, total, s: progress.append(done))
    assert 0 == res.exit_code, not_passed(res.document)
    assert [1, 2, 3, 4] == progress
    assert "pass" == res.document["status"]
    assert [EventKind.STAGE_STARTED, EventKind.ROUTING_CHANGED] == kinds(canary_env)[2:4]
    samples = events_of(canary_env, EventKind.CANARY_SAMPLE)
    assert 4 == len(samples)
    # metrics are Prometheus's answers for this test's job, both tracks
    first = samples[0].payload
    assert canary_env.pair is not None and canary_env.pair.job in first["canary"]["error_rate"]["query"]
    assert first["canary"]["p95_latency_ms"]["available"] and first["stable"]["saturation"]["value"] == 0.2
    # health from inside went through the API server's service proxy (percent-encoded, as a client sends it)
    assert any("/services/hello-web-canary%3A8080/proxy/healthz 200" in p for p in canary_env.cluster.paths())
    assert "HTTP 200" == first["health_inside"]["reason"]
    evidence = {e["detail"].split(":")[0]: e for e in res.document["evidence"]}
    assert {"rendered release identity", "key health inside", "key health outside", "progress note"} <= set(
        evidence
    )
    assert any(e["detail"].startswith("metrics window: 4 samples") for e in res.document["evidence"])
    assert EventKind.STAGE_COMPLETED == kinds(canary_env)[-1]
    # stable never replaced: revision 1 of the stable release still serves the stable digest
    assert 1 == canary_env.helm.deployed_revision(release="hello-web", namespace="hello-web")
    assert stable_image(canary_env).endswith(STABLE_DIGEST)


def test_stage2_gateway_api_weighted_canary_accepted(canary_env: CanaryEnv) -> None:
    canary_env.edit('provider = "ingress-nginx"', 'provider = "gateway-api"')
    assert 0 == deploy(canary_env).exit_code
    route = canary_env.cluster.get("httproutes", "hello-web", "hello-web")
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert {"hello-web": 90, "hello-web-canary": 10} == weights
    res = observe(canary_env)
    assert 0 == res.exit_code, not_passed(res.document)
    assert "pass" == res.document["status"]


def test_stage2_resumes_from_recorded_samples(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code
    first = observe(canary_env, max_samples=2)
    assert (0, "observing", 2) == (first.exit_code, first.document["phase"], first.samples)
    res = observe(canary_env)
    assert 0 == res.exit_code, not_passed(res.document)
    assert 4 == kinds(canary_env).count(EventKind.CANARY_SAMPLE)


# ---------------------------------------------------------------------------------------- prechecks


def test_stage2_prechecks_pass_names_every_check(canary_env: CanaryEnv) -> None:
    out = deploy(canary_env)
    assert list(PRECHECKS) == [c["name"] for c in out.document["checks"]]
    assert all(c["status"] == "pass" for c in out.document["checks"]), not_passed(out.document)


def test_stage2_fails_when_digest_missing_from_registry(canary_env: CanaryEnv) -> None:
    """A registered, Stage-1-passed candidate whose digest the registry does not hold: nothing applied."""
    other_digest = "sha256:" + "c" * 64
    other = f"{canary_env.repository}@{other_digest}"
    canary_env.store.append(
        [
            NewEvent(
                stream="hello-web",
                kind=EventKind.CANDIDATE_REGISTERED,
                actor="ci",
                candidate=other_digest,
                payload={"image": other},
            ),
            NewEvent(
                stream="hello-web",
                kind=EventKind.STAGE_COMPLETED,
                actor="ci",
                candidate=other_digest,
                stage=1,
                payload={"stage": 1, "status": "pass", "candidate": {"digest": other_digest}},
            ),
        ]
    )
    out = deploy_env(canary_env, image=other)
    assert 1 == out.exit_code
    assert "fail" == check(out.document, "digest_in_registry")["status"]
    assert canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None


def test_stage2_rollback_target_from_stable_helm_history(canary_env: CanaryEnv) -> None:
    """No ledger stable, no declared previous_stable: the stable release's deployed helm revision."""
    canary_env.edit('previous_stable = "', '# previous_stable = "')
    out = deploy(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    target = out.document["rollback_target"]
    assert ("helm-revision", "hello-web", 1) == (target["kind"], target["release"], target["revision"])


def test_stage2_fails_when_rollback_target_unknown(canary_env: CanaryEnv) -> None:
    canary_env.edit('previous_stable = "', '# previous_stable = "')
    canary_env.helm.uninstall(
        release="hello-web", namespace="hello-web"
    )  # no deployed stable revision either
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "rollback target unknown" in check(out.document, "rollback_target_known")["reason"]
    assert canary_env.cluster.get("deployments", "hello-web", "hello-web-canary") is None


def test_stage2_fails_on_undeclared_secret(canary_env: CanaryEnv) -> None:
    canary_env.edit('name = "hello-web-db"', 'name = "renamed-db"')
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "secret hello-web-db" in check(out.document, "declared_references")["reason"]


def test_stage2_fails_when_server_dry_run_refuses(canary_env: CanaryEnv) -> None:
    canary_env.cluster.faults.add(r"/deployments", status=422, methods=["PATCH", "POST"], times=5)
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "fail" == check(out.document, "server_dry_run")["status"]
    assert canary_env.cluster.get("deployments", "hello-web", "hello-web-canary") is None


def test_stage2_canary_release_renders_without_its_own_ingress(canary_env: CanaryEnv) -> None:
    """Routing objects belong to the ledger: the canary release has no chart Ingress (a typed
    ``ingress.enabled: false``, not the string "false" that Go templates treat as true)."""
    assert 0 == deploy(canary_env).exit_code
    manifest = canary_env.helm.get_manifest(release="hello-web-canary", namespace="hello-web")
    assert "kind: Ingress" not in manifest and "kind: Deployment" in manifest
    ing = canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary")
    assert [m["manager"] for m in ing["metadata"]["managedFields"]] == ["railiance-ledger"]


# ---------------------------------------------------------------------------------------- rejected


def test_stage2_crashlooping_canary_rolled_back(canary_env: CanaryEnv) -> None:
    canary_env.cluster.behaviours.set(canary_env.image, "crashloop")
    assert 0 == deploy(canary_env).exit_code
    res = observe(canary_env, sleep=time.sleep)
    assert 1 == res.exit_code and res.rolled_back
    assert "crash-looping" in check(res.document, "immediate_rollback")["reason"]
    assert EventKind.ROLLBACK_COMPLETED in kinds(canary_env)
    assert canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert canary_env.cluster.get("deployments", "hello-web", "hello-web-canary") is None
    # helm uninstall removed the canary release and its history; the stable release is untouched
    assert canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None
    assert 1 == canary_env.helm.deployed_revision(release="hello-web", namespace="hello-web")


def test_stage2_error_rate_rising_mid_window_rolls_back_within_two_intervals(canary_env: CanaryEnv) -> None:
    """The canary app starts failing 20 % of requests after sample 2; real Prometheus sees it a scrape
    later and the rollback starts within two 1 s sample intervals of the change."""
    canary_env.edit('observation_window = "4s"', 'observation_window = "8s"')
    assert 0 == deploy(canary_env).exit_code
    seen: list[int] = []
    changed: list[float] = []

    def progress(done: int, total: int, sample: Any) -> None:
        seen.append(done)
        if done == 2:
            canary_env.metrics.set("canary", error_rate=0.2)
            changed.append(time.monotonic())

    res = observe_env(canary_env, on_progress=progress)
    rolled_at = time.monotonic()
    assert 1 == res.exit_code and res.rolled_back, not_passed(res.document)
    assert seen[-1] in (3, 4), seen  # detected by the first or second sample after the change
    assert rolled_at - changed[0] < 2 * 1.0 + 1.5  # two intervals, plus the rollback itself
    started = events_of(canary_env, EventKind.ROLLBACK_STARTED)
    assert "error rate" in started[0].payload["symptom"]
    assert "immediate_rollback" == res.document["checks"][0]["name"]
    assert canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None


def test_stage2_latency_regression_relative_to_stable(canary_env: CanaryEnv) -> None:
    """Canary p95 ~90 ms vs stable ~23 ms: under the 300 ms ceiling, but +50 ms over stable."""
    canary_env.metrics.set("canary", latency_ms=80.0)
    wait_for_metric(canary_env, "canary", "p95_latency_ms", lambda v: v > 75)
    assert 0 == deploy(canary_env).exit_code
    res = observe(canary_env)
    assert 1 == res.exit_code
    assert "regresses" in check(res.document, "canary_latency")["reason"]
    assert "fail" == check(res.document, "canary_statistical_comparison")["status"]


def test_stage2_routing_weight_changed_behind_our_back(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code
    ing = canary_env.kube.get(
        api_version="networking.k8s.io/v1", kind="Ingress", namespace="hello-web", name="hello-web-canary"
    )
    assert ing is not None
    ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = "60"
    for k in ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation"):
        ing["metadata"].pop(k, None)
    canary_env.kube.apply(manifests=[ing], field_manager="someone-else")
    res = observe(canary_env)
    assert 1 == res.exit_code and res.rolled_back
    started = events_of(canary_env, EventKind.ROLLBACK_STARTED)
    assert "more traffic than intended" in started[0].payload["symptom"]


def test_stage2_prometheus_going_away_mid_window_fails_closed(canary_env: CanaryEnv) -> None:
    """A Prometheus of the test's own is stopped after sample 2: every later metric is "metrics
    unavailable", so the metric gates fail closed and the canary is removed."""
    canary_env.own_prometheus()
    assert 0 == deploy(canary_env).exit_code

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.metrics.down()

    res = observe_env(canary_env, on_progress=progress, fast=True)
    assert 1 == res.exit_code and res.rolled_back
    for gate in ("canary_error_rate", "canary_latency", "canary_saturation"):
        c = check(res.document, gate)
        assert ("fail", "technical") == (c["status"], c["failure"]) and c["reason"].startswith(
            "metrics unavailable"
        ), c
        assert "sample 2; failed in 2/4 samples" in c["reason"]
    assert check(res.document, "canary_statistical_comparison")["reason"].startswith("metrics unavailable")
    assert any(e["detail"] == "metrics unavailable in samples [2, 3]" for e in res.document["evidence"])
    samples = events_of(canary_env, EventKind.CANARY_SAMPLE)
    assert samples[1].payload["canary"]["error_rate"]["available"]
    assert not samples[2].payload["canary"]["error_rate"]["available"]


def test_stage2_secret_in_pod_logs_fails_and_is_never_stored(canary_env: CanaryEnv) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    canary_env.cluster.behaviours.set(
        canary_env.image, "ready", logs=[f"connecting with aws_access_key_id={secret}"]
    )
    assert 0 == deploy(canary_env).exit_code
    res = observe(canary_env)
    assert 1 == res.exit_code and res.rolled_back
    assert "fail" == check(res.document, "canary_logs_clean")["status"]
    for ev in canary_env.store.read_stream("hello-web"):
        assert secret not in str(ev.model_dump())


def test_stage2_health_from_inside_failing_through_the_service_proxy(canary_env: CanaryEnv) -> None:
    """The canary Service selects no ready pod, so the API server's own proxy answers 503: ``canary_health`` fails on "inside"
    (outside stays fine, so no immediate rollback) and the canary is removed at the end of the window."""
    assert 0 == deploy(canary_env).exit_code
    starve_service(canary_env, "hello-web-canary")  # the real proxy: no ready endpoint, 503
    res = observe(canary_env)
    assert (1, True) == (res.exit_code, res.rolled_back)
    c = check(res.document, "canary_health")
    assert "fail" == c["status"] and c["reason"].startswith("health failing inside: HTTP 503"), c
    assert "immediate_rollback" not in [x["name"] for x in res.document["checks"]]


def test_stage2_gateway_api_rejected_canary_removes_the_route_it_built(canary_env: CanaryEnv) -> None:
    """No stable HTTPRoute existed: the one the canary built is deleted on rollback, not left weighted."""
    canary_env.edit('provider = "ingress-nginx"', 'provider = "gateway-api"')
    canary_env.cluster.behaviours.set(canary_env.image, "crashloop")
    assert 0 == deploy(canary_env).exit_code
    assert canary_env.cluster.get("httproutes", "hello-web", "hello-web") is not None
    res = observe(canary_env, sleep=time.sleep)
    assert (1, True) == (res.exit_code, res.rolled_back)
    assert canary_env.cluster.get("httproutes", "hello-web", "hello-web") is None


def test_stage2_shadow_apply_failure_restores_stable_ingress(canary_env: CanaryEnv) -> None:
    """An apply failure after the stable Ingress was patched restores it and never deletes it."""
    use_form(canary_env, "shadow")
    canary_env.cluster.faults.add(r"/namespaces/hello-web/ingresses$", status=500, methods=["GET"])
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "fail" == check(out.document, "canary_applied")["status"]
    canary_env.cluster.faults.clear()
    stable = canary_env.cluster.get("ingresses", "hello-web", "hello-web")
    assert stable is not None
    assert "nginx.ingress.kubernetes.io/mirror-target" not in (stable["metadata"].get("annotations") or {})
