"""Stage 2 service: deploy the canary (prechecks first), observe it, accept or roll back.

Runs against the Kubernetes emulator (official client), the real registry, real helm rendering, and
scripted metrics; windows are 4 s with 1 s samples.
"""

from __future__ import annotations

from typing import Any

from railiance_ledger.domain.events import EventKind
from railiance_ledger.lifecycle.stage2 import deploy_canary, observe_canary
from tests.fixtures.stage2 import CanaryEnv


def deploy(env: CanaryEnv, **kw: Any) -> Any:
    return deploy_canary(store=env.store, decl=env.decl(), operator="alice", kube=env.kube, helm=env.helm,
                         registry=env.registry, metrics=env.metrics, http=env.http, resolve_host=lambda h: True,
                         image=env.image, **kw)


def observe(env: CanaryEnv, **kw: Any) -> Any:
    kw.setdefault("sleep", lambda s: None)
    return observe_canary(store=env.store, decl=env.decl(), operator="alice", kube=env.kube, helm=env.helm,
                          metrics=env.metrics, http=env.http, **kw)


def kinds(env: CanaryEnv) -> list[str]:
    return [e.kind for e in env.store.read_stream("hello-web")]


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in doc["checks"] if c["name"] == name]
    return c


def test_stage2_weighted_canary_accepted(canary_env: CanaryEnv) -> None:
    out = deploy(canary_env)
    assert 0 == out.exit_code, out.document
    ing = canary_env.emulator.get("ingresses", "hello-web", "hello-web-canary")
    assert "10" == ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
    progress: list[int] = []
    res = observe(canary_env, on_progress=lambda done, total, s: progress.append(done))
    assert 0 == res.exit_code, [c for c in res.document["checks"] if c["status"] != "pass"]
    assert [1, 2, 3, 4] == progress
    assert "pass" == res.document["status"]
    assert [EventKind.STAGE_STARTED, EventKind.ROUTING_CHANGED] == kinds(canary_env)[2:4]
    assert 4 == kinds(canary_env).count(EventKind.CANARY_SAMPLE)
    assert EventKind.STAGE_COMPLETED == kinds(canary_env)[-1]


def test_stage2_fails_when_digest_missing_from_registry(canary_env: CanaryEnv) -> None:
    canary_env.registry_helper.delete_manifest(canary_env.image.split("/", 1)[1].split("@")[0], canary_env.digest) \
        if hasattr(canary_env.registry_helper, "delete_manifest") else None
    other = canary_env.image.rsplit("@", 1)[0] + "@sha256:" + "c" * 64
    canary_env.store.append([])  # no-op: keeps the ledger open
    from railiance_ledger.domain.events import NewEvent

    canary_env.store.append([
        NewEvent(stream="hello-web", kind=EventKind.CANDIDATE_REGISTERED, actor="ci", candidate="sha256:" + "c" * 64,
                 payload={"image": other}),
        NewEvent(stream="hello-web", kind=EventKind.STAGE_COMPLETED, actor="ci", candidate="sha256:" + "c" * 64, stage=1,
                 payload={"stage": 1, "status": "pass", "candidate": {"digest": "sha256:" + "c" * 64}}),
    ])
    out = deploy_canary(store=canary_env.store, decl=canary_env.decl(), operator="alice", kube=canary_env.kube,
                        helm=canary_env.helm, registry=canary_env.registry, metrics=canary_env.metrics,
                        http=canary_env.http, resolve_host=lambda h: True, image=other)
    assert 1 == out.exit_code
    assert "fail" == check(out.document, "digest_in_registry")["status"]
    assert canary_env.emulator.get("ingresses", "hello-web", "hello-web-canary") is None


def test_stage2_fails_when_rollback_target_unknown(canary_env: CanaryEnv) -> None:
    canary_env.edit('previous_stable = "', '# previous_stable = "')
    canary_env.helm.revisions.clear()
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "rollback target unknown" in check(out.document, "rollback_target_known")["reason"]
    assert canary_env.emulator.get("deployments", "hello-web", "hello-web-canary") is None


def test_stage2_fails_on_undeclared_secret(canary_env: CanaryEnv) -> None:
    canary_env.edit('name = "hello-web-db"', 'name = "renamed-db"')
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "secret hello-web-db" in check(out.document, "declared_references")["reason"]


def test_stage2_crashlooping_canary_rolled_back(canary_env: CanaryEnv) -> None:
    canary_env.emulator.behaviours.set(canary_env.image, "crashloop", restart_interval=0.2)
    assert 0 == deploy(canary_env).exit_code
    import time

    res = observe(canary_env, sleep=time.sleep)
    assert 1 == res.exit_code and res.rolled_back
    assert EventKind.ROLLBACK_COMPLETED in kinds(canary_env)
    assert canary_env.emulator.get("ingresses", "hello-web", "hello-web-canary") is None
    assert canary_env.emulator.get("deployments", "hello-web", "hello-web-canary") is None


def test_stage2_error_rate_rising_mid_window_rolls_back_within_two_intervals(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code
    seen: list[int] = []

    def progress(done: int, total: int, sample: Any) -> None:
        seen.append(done)
        if done == 2:
            canary_env.metrics.set("canary", error_rate=0.2)

    res = observe(canary_env, on_progress=progress)
    assert 1 == res.exit_code and res.rolled_back
    assert [1, 2, 3] == seen  # symptom after sample 2, detected by sample 3, rollback in that iteration
    started = [e for e in canary_env.store.read_stream("hello-web") if e.kind == EventKind.ROLLBACK_STARTED]
    assert "error rate" in started[0].payload["symptom"]


def test_stage2_latency_regression_relative_to_stable(canary_env: CanaryEnv) -> None:
    canary_env.metrics.set("canary", p95_latency_ms=250.0)  # under the 300 ms ceiling, +150 over stable
    assert 0 == deploy(canary_env).exit_code
    res = observe(canary_env)
    assert 1 == res.exit_code
    assert "regresses" in check(res.document, "canary_latency")["reason"]


def test_stage2_routing_weight_changed_behind_our_back(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code
    ing = canary_env.kube.get(api_version="networking.k8s.io/v1", kind="Ingress", namespace="hello-web",
                              name="hello-web-canary")
    assert ing is not None
    ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = "60"
    for k in ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation"):
        ing["metadata"].pop(k, None)
    canary_env.kube.apply(manifests=[ing], field_manager="someone-else")
    res = observe(canary_env)
    assert 1 == res.exit_code and res.rolled_back
    started = [e for e in canary_env.store.read_stream("hello-web") if e.kind == EventKind.ROLLBACK_STARTED]
    assert "more traffic than intended" in started[0].payload["symptom"]


def test_stage2_metrics_unavailable_mid_window_fails_closed(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.metrics.down()

    res = observe(canary_env, on_progress=progress)
    assert 1 == res.exit_code
    assert check(res.document, "canary_error_rate")["reason"].startswith("metrics unavailable")


def test_stage2_secret_in_pod_logs_fails_and_is_never_stored(canary_env: CanaryEnv) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    canary_env.emulator.behaviours.set(canary_env.image, "ready", logs=[f"connecting with aws_access_key_id={secret}"])
    assert 0 == deploy(canary_env).exit_code
    res = observe(canary_env)
    assert 1 == res.exit_code
    for ev in canary_env.store.read_stream("hello-web"):
        assert secret not in str(ev.model_dump())


def test_stage2_resumes_from_recorded_samples(canary_env: CanaryEnv) -> None:
    assert 0 == deploy(canary_env).exit_code
    first = observe(canary_env, max_samples=2)
    assert (0, "observing", 2) == (first.exit_code, first.document["phase"], first.samples)
    res = observe(canary_env)
    assert 0 == res.exit_code
    assert 4 == kinds(canary_env).count(EventKind.CANARY_SAMPLE)



def test_stage2_gateway_api_weighted_canary_accepted(canary_env: CanaryEnv) -> None:
    canary_env.edit('provider = "ingress-nginx"', 'provider = "gateway-api"')
    assert 0 == deploy(canary_env).exit_code
    route = canary_env.emulator.get("httproutes", "hello-web", "hello-web")
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert {"hello-web": 90, "hello-web-canary": 10} == weights
    res = observe(canary_env)
    assert 0 == res.exit_code, [c for c in res.document["checks"] if c["status"] != "pass"]
    assert "pass" == res.document["status"]




def test_stage2_fails_when_server_dry_run_refuses(canary_env: CanaryEnv) -> None:
    canary_env.emulator.faults.add(r"/deployments", status=422, methods=["PATCH", "POST"], times=5)
    out = deploy(canary_env)
    assert 1 == out.exit_code
    assert "fail" == check(out.document, "server_dry_run")["status"]
    assert canary_env.emulator.get("deployments", "hello-web", "hello-web-canary") is None


def test_stage2_prechecks_pass_names_every_check(canary_env: CanaryEnv) -> None:
    from railiance_ledger.lifecycle.stage2 import PRECHECKS

    out = deploy(canary_env)
    assert list(PRECHECKS) == [c["name"] for c in out.document["checks"]]
    assert all(c["status"] == "pass" for c in out.document["checks"])
