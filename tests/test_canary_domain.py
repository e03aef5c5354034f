"""Pure Stage 2 canary logic: routing forms, read-back, fallback, acceptance gates, rollback triggers.

Every gate and fail-closed condition has a passing and a failing case that names it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from railiance_ledger.domain import canary as c
from railiance_ledger.domain.canary import (
    CanaryForm,
    CanarySample,
    LogScan,
    Metric,
    PodState,
    Probe,
    Provider,
    RollbackReadiness,
    RoutingSpec,
    RoutingState,
    Thresholds,
    TrackMetrics,
)
from railiance_ledger.domain.stage_result import CheckStatus

# ------------------------------------------------------------------------------------------ helpers


def spec(
    form: CanaryForm = CanaryForm.WEIGHTED, provider: Provider = Provider.INGRESS_NGINX, **kw: Any
) -> RoutingSpec:
    base: dict[str, Any] = {
        "workload": "hello-web",
        "namespace": "hello-web",
        "host": "hello.example.internal",
        "stable_service": "hello-web",
        "canary_service": "hello-web-canary",
        "port": 8080,
        "form": form,
        "provider": provider,
        "weight": 10,
        "tls_secret": "hello-web-tls",
        "canary_release": "hello-web-canary",
        "route_name": "hello-web",
        "gateway": "prod-gw",
    }
    base.update(kw)
    return RoutingSpec(**base)


def stable_ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "hello-web", "namespace": "hello-web", "resourceVersion": "7"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "hello.example.internal",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "hello-web", "port": {"number": 8080}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def stable_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "hello-web", "namespace": "hello-web", "uid": "u1"},
        "spec": {
            "parentRefs": [{"name": "prod-gw"}],
            "hostnames": ["hello.example.internal"],
            "rules": [{"backendRefs": [{"name": "hello-web", "port": 8080}]}],
        },
    }


def metric(v: float | None, ok: bool = True) -> Metric:
    return Metric(value=v, available=ok, reason="" if ok else "connection refused")


def tm(err: float = 0.001, p95: float = 100.0, sat: float = 0.3) -> TrackMetrics:
    return TrackMetrics(error_rate=metric(err), p95_latency_ms=metric(p95), saturation=metric(sat))


def good_sample(i: int = 0, **kw: Any) -> CanarySample:
    base: dict[str, Any] = {
        "index": i,
        "at": f"2026-01-01T00:00:{i:02d}+00:00",
        "elapsed_seconds": float(i),
        "pods": PodState(total=1, ready=1),
        "health_inside": Probe(True, 200, "HTTP 200"),
        "health_outside": Probe(True, 200, "HTTP 200"),
        "canary": tm(0.001 + i * 1e-5, 100 + i % 3),
        "stable": tm(0.001 + (i % 2) * 1e-5, 100 + (i + 1) % 3),
        "routing": RoutingState(True, "as declared"),
        "logs": LogScan(lines=10),
        "integrity": Probe(True, None, "dead-letters: value 0 within bounds"),
    }
    base.update(kw)
    return CanarySample(**base)


TH = Thresholds(min_samples=8)
ROLLBACK = RollbackReadiness(
    target_known=True, target="helm-revision hello-web 3", tested=True, command="railiance rollback hello-web"
)


def verdict(verdicts: list[c.GateVerdict], name: str) -> c.GateVerdict:
    (v,) = [x for x in verdicts if x.name == name]
    return v


# ------------------------------------------------------------------------------------------ routing objects


def test_canary_weighted_ingress_nginx_creates_annotated_canary_ingress() -> None:
    plan = c.plan_routing(spec())
    assert [] == plan.patches
    (ing,) = plan.creates
    ann = ing["metadata"]["annotations"]
    assert ("true", "10") == (ann[c.NGINX + "canary"], ann[c.NGINX + "canary-weight"])
    assert "hello-web-canary" == ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert [{"hosts": ["hello.example.internal"], "secretName": "hello-web-tls"}] == ing["spec"]["tls"]
    assert c.routing_matches(spec(), [stable_ingress(), ing])[0]


def test_canary_header_ingress_nginx_reachable_only_with_header() -> None:
    s = spec(CanaryForm.HEADER)
    (ing,) = c.plan_routing(s).creates
    assert "X-Railiance-Canary" == ing["metadata"]["annotations"][c.NGINX + "canary-by-header"]
    assert c.NGINX + "canary-weight" not in ing["metadata"]["annotations"]
    ok, reason = c.routing_matches(s, [stable_ingress(), ing])
    assert ok, reason


def test_canary_path_ingress_nginx_serves_only_the_prefix() -> None:
    s = spec(CanaryForm.PATH, path_prefix="/canary")
    (ing,) = c.plan_routing(s).creates
    assert "/canary" == ing["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert (True, "canary reachable only under /canary (Ingress/hello-web-canary)") == c.routing_matches(
        s, [ing]
    )


def test_canary_shadow_ingress_nginx_patches_stable_with_mirror() -> None:
    s = spec(CanaryForm.SHADOW)
    plan = c.plan_routing(s, stable_ingress=stable_ingress())
    (patched,) = plan.patches
    assert "resourceVersion" not in patched["metadata"]
    assert patched["metadata"]["annotations"][c.NGINX + "mirror-target"].startswith(
        "http://hello-web-canary.hello-web.svc"
    )
    assert c.routing_matches(s, [patched])[0]
    with pytest.raises(ValueError):
        c.plan_routing(s)


def test_canary_isolated_namespace_writes_no_routing() -> None:
    s = spec(CanaryForm.ISOLATED_NAMESPACE)
    assert [] == c.plan_routing(s).objects
    assert c.routing_matches(s, [stable_ingress()])[0]


@pytest.mark.parametrize("form", [CanaryForm.WEIGHTED, CanaryForm.HEADER, CanaryForm.PATH, CanaryForm.SHADOW])
def test_canary_gateway_api_forms_patch_the_stable_route_and_read_back_ok(form: CanaryForm) -> None:
    s = spec(form, Provider.GATEWAY_API)
    (route,) = c.plan_routing(s, stable_route=stable_route()).patches
    assert "uid" not in route["metadata"]
    ok, reason = c.routing_matches(s, [route])
    assert ok, reason
    # idempotent: patching the patched route gives the same route
    assert route == c.gateway_route_patch(route, s)


def test_canary_gateway_api_weighted_sets_backend_weights() -> None:
    (route,) = c.plan_routing(spec(provider=Provider.GATEWAY_API), stable_route=stable_route()).patches
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert {"hello-web": 90, "hello-web-canary": 10} == weights


def test_canary_gateway_api_without_existing_route_builds_one() -> None:
    (route,) = c.plan_routing(spec(provider=Provider.GATEWAY_API)).patches
    assert [{"name": "prod-gw"}] == route["spec"]["parentRefs"]
    assert c.routing_matches(spec(provider=Provider.GATEWAY_API), [route])[0]


# ------------------------------------------------------------------------------------------ routing read-back


def test_canary_routing_weight_raised_behind_our_back_fails_more_traffic() -> None:
    (ing,) = c.plan_routing(spec()).creates
    ing["metadata"]["annotations"][c.NGINX + "canary-weight"] = "50"
    ok, reason = c.routing_matches(spec(), [ing])
    assert not ok
    assert reason.startswith(c.MORE_TRAFFIC)
    assert c.traffic_escaped(spec(), [ing])


def test_canary_routing_weight_lowered_or_deleted_is_drift_not_escape() -> None:
    ok, reason = c.routing_matches(spec(), [stable_ingress()])
    assert (False, True) == (ok, reason.startswith("routing drifted"))
    assert not c.traffic_escaped(spec(), [stable_ingress()])


def test_canary_routing_gateway_weight_changed_fails() -> None:
    s = spec(provider=Provider.GATEWAY_API)
    (route,) = c.plan_routing(s, stable_route=stable_route()).patches
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        ref["weight"] = 50
    ok, reason = c.routing_matches(s, [route])
    assert not ok and "50%" in reason and reason.startswith(c.MORE_TRAFFIC)


def test_canary_header_form_with_unconditional_route_fails_more_traffic() -> None:
    s = spec(CanaryForm.HEADER)
    (ing,) = c.plan_routing(s).creates
    ing["metadata"]["annotations"].pop(c.NGINX + "canary")
    ok, reason = c.routing_matches(s, [ing])
    assert not ok and reason.startswith(c.MORE_TRAFFIC)


def test_canary_shadow_form_serving_requests_fails_more_traffic() -> None:
    s = spec(CanaryForm.SHADOW)
    (ing,) = c.plan_routing(spec()).creates  # a weighted ingress where only a mirror was declared
    ok, reason = c.routing_matches(s, [ing])
    assert not ok and reason.startswith(c.MORE_TRAFFIC)


def test_canary_isolated_form_reached_from_production_fails() -> None:
    s = spec(CanaryForm.ISOLATED_NAMESPACE)
    (ing,) = c.plan_routing(spec(CanaryForm.HEADER)).creates
    ok, reason = c.routing_matches(s, [ing])
    assert not ok and reason.startswith(c.MORE_TRAFFIC)


def test_canary_routing_spec_round_trips_through_a_payload() -> None:
    s = spec(CanaryForm.PATH, Provider.GATEWAY_API, fallback_from="weighted")
    assert s == RoutingSpec.from_dict(s.as_dict())


# ------------------------------------------------------------------------------------------ fallback


def test_canary_fallback_not_needed_when_provider_available() -> None:
    d = c.choose_form(
        CanaryForm.WEIGHTED, Provider.INGRESS_NGINX, ingress_class_available=True, gateway_api_available=False
    )
    assert (CanaryForm.WEIGHTED, None) == (d.form, d.fallback_from)


def test_canary_fallback_to_header_on_other_provider() -> None:
    d = c.choose_form(
        CanaryForm.WEIGHTED, Provider.GATEWAY_API, ingress_class_available=True, gateway_api_available=False
    )
    assert (CanaryForm.HEADER, Provider.INGRESS_NGINX, CanaryForm.WEIGHTED) == (
        d.form,
        d.provider,
        d.fallback_from,
    )


def test_canary_fallback_to_isolated_namespace_when_no_routing() -> None:
    d = c.choose_form(
        CanaryForm.WEIGHTED,
        Provider.INGRESS_NGINX,
        ingress_class_available=False,
        gateway_api_available=False,
    )
    assert (CanaryForm.ISOLATED_NAMESPACE, CanaryForm.WEIGHTED) == (d.form, d.fallback_from)
    assert "fell back" in d.reason


def test_canary_fallback_refuses_unsafe_forms() -> None:
    d = c.choose_form(
        CanaryForm.WEIGHTED,
        Provider.INGRESS_NGINX,
        ingress_class_available=False,
        gateway_api_available=True,
        allowed_fallbacks=(CanaryForm.SHADOW, CanaryForm.PATH),
    )
    assert (False, None) == (d.ok, d.form)


# ------------------------------------------------------------------------------------------ one sample


def test_canary_evaluate_sample_all_pass() -> None:
    verdicts = c.evaluate_sample(good_sample(), TH)
    assert [] == [v for v in verdicts if v.status != "pass"]


@pytest.mark.parametrize(
    ("gate", "change", "needle"),
    [
        ("canary_pods_ready", {"pods": PodState(total=2, ready=1)}, "1/2 pods ready"),
        (
            "canary_pods_ready",
            {"pods": PodState(available=False, reason="kube 500")},
            "pod status unavailable",
        ),
        ("canary_pods_stable", {"pods": PodState(total=1, ready=1, crashloop=1)}, "CrashLoopBackOff"),
        ("canary_pods_stable", {"pods": PodState(total=1, ready=1, restarts=5)}, "5 restarts"),
        (
            "canary_pods_stable",
            {"pods": PodState(total=2, ready=1, pending=1)},
            "pending (no reason reported)",
        ),
        ("canary_health", {"health_inside": Probe(False, 503, "HTTP 503, expected 200")}, "inside: HTTP 503"),
        ("canary_health", {"health_inside": None, "health_outside": None}, "no health probe"),
        ("canary_error_rate", {"canary": tm(err=0.05)}, "above the declared ceiling"),
        ("canary_error_rate", {"canary": tm(err=0.009), "stable": tm(err=0.001)}, "regresses"),
        ("canary_latency", {"canary": tm(p95=250.0), "stable": tm(p95=100.0)}, "regresses 150ms"),
        ("canary_latency", {"canary": tm(p95=400.0), "stable": tm(p95=390.0)}, "above the declared ceiling"),
        ("canary_saturation", {"canary": tm(sat=0.95)}, "above the declared ceiling"),
        ("canary_routing", {"routing": RoutingState(False, c.MORE_TRAFFIC + ": x", True)}, c.MORE_TRAFFIC),
        ("canary_side_effects", {"integrity": Probe(False, None, "orphan rows")}, "orphan rows"),
        ("canary_logs_clean", {"logs": LogScan(secret_kinds={"bearer-token": 2})}, "bearer-token x2"),
        ("canary_logs_clean", {"logs": LogScan(auth_failures=5)}, "repeated authorization failures"),
        (
            "canary_logs_clean",
            {"logs": LogScan(read_ok=False, reason="403 pods/log")},
            "pod logs unavailable",
        ),
    ],
)
def test_canary_evaluate_sample_gate_fails(gate: str, change: dict[str, Any], needle: str) -> None:
    v = verdict(c.evaluate_sample(good_sample(**change), TH), gate)
    assert "fail" == v.status
    assert needle in v.reason


@pytest.mark.parametrize("gate", ["canary_error_rate", "canary_latency", "canary_saturation"])
def test_canary_metrics_unavailable_fails_closed(gate: str) -> None:
    down = TrackMetrics(metric(None, False), metric(None, False), metric(None, False))
    v = verdict(c.evaluate_sample(good_sample(canary=down), TH), gate)
    assert ("fail", "technical") == (v.status, v.failure)
    assert v.reason.startswith(c.METRICS_UNAVAILABLE)


def test_canary_stable_metrics_unavailable_fails_relative_comparison() -> None:
    down = TrackMetrics(metric(None, False), metric(None, False), metric(None, False))
    v = verdict(c.evaluate_sample(good_sample(stable=down), TH), "canary_error_rate")
    assert "fail" == v.status and c.METRICS_UNAVAILABLE in v.reason


def test_canary_side_effects_passes_with_passing_integrity_check() -> None:
    v = verdict(
        c.evaluate_sample(good_sample(integrity=Probe(True, 200, "row counts match")), TH),
        "canary_side_effects",
    )
    assert "pass" == v.status


def test_canary_latency_under_absolute_but_over_relative_fails() -> None:
    v = verdict(
        c.evaluate_sample(good_sample(canary=tm(p95=200.0), stable=tm(p95=100.0)), TH), "canary_latency"
    )
    assert "fail" == v.status and "regresses" in v.reason and "200ms" in v.reason


# ------------------------------------------------------------------------------------------ the window


def window(n: int = 10, **kw: Any) -> list[CanarySample]:
    return [good_sample(i, **kw) for i in range(n)]


def test_canary_evaluate_window_all_pass() -> None:
    verdicts = c.evaluate_window(window(), TH, expected_samples=10, rollback=ROLLBACK)
    assert list(c.GATE_NAMES) == [v.name for v in verdicts]
    assert [] == [(v.name, v.reason) for v in verdicts if v.status != "pass"]
    assert all(v.to_check().status == CheckStatus.PASS for v in verdicts)


def test_canary_window_not_fully_observed_fails_pods_ready() -> None:
    v = verdict(c.evaluate_window(window(5), TH, expected_samples=10, rollback=ROLLBACK), "canary_pods_ready")
    assert "fail" == v.status and "5/10" in v.reason


def test_canary_window_one_bad_sample_fails_the_gate_and_names_it() -> None:
    samples = window()
    samples[4] = good_sample(4, pods=PodState(total=1, ready=0))
    v = verdict(c.evaluate_window(samples, TH, rollback=ROLLBACK), "canary_pods_ready")
    assert "fail" == v.status and "sample 4" in v.reason and "1/10" in v.reason


def test_canary_window_restarts_accumulating_fail() -> None:
    samples = [
        good_sample(i, pods=PodState(total=1, ready=1, restarts=min(i, 1) if i < 9 else 1)) for i in range(10)
    ]
    assert "pass" == verdict(c.evaluate_window(samples, TH, rollback=ROLLBACK), "canary_pods_stable").status
    samples[-1] = good_sample(9, pods=PodState(total=1, ready=1, restarts=3))
    assert "fail" == verdict(c.evaluate_window(samples, TH, rollback=ROLLBACK), "canary_pods_stable").status


def test_canary_statistical_comparison_fails_closed_below_min_samples() -> None:
    v = verdict(c.evaluate_window(window(4), TH, rollback=ROLLBACK), "canary_statistical_comparison")
    assert ("fail", "technical") == (v.status, v.failure)
    assert "too few data points" in v.reason


def test_canary_statistical_comparison_detects_latency_regression() -> None:
    samples = [good_sample(i, canary=tm(p95=130.0 + i), stable=tm(p95=100.0 + i % 3)) for i in range(10)]
    verdicts = c.evaluate_window(samples, TH, rollback=ROLLBACK)
    stat = verdict(verdicts, "canary_statistical_comparison")
    assert "fail" == stat.status and "Mann-Whitney" in stat.reason and "p95 latency" in stat.reason
    # every value stays under the absolute ceiling of 300ms
    assert "under" not in verdict(verdicts, "canary_latency").reason


def test_canary_statistical_comparison_all_ties_pass() -> None:
    samples = [good_sample(i, canary=tm(0.0, 100.0), stable=tm(0.0, 100.0)) for i in range(8)]
    assert (
        "pass"
        == verdict(c.evaluate_window(samples, TH, rollback=ROLLBACK), "canary_statistical_comparison").status
    )


def test_canary_compare_distributions_direct() -> None:
    assert not c.compare_distributions([1.0] * 3, [1.0] * 3, min_samples=8, alpha=0.05)[0]
    assert c.compare_distributions([1.0, 2.0] * 4, [1.0, 2.0] * 4, min_samples=8, alpha=0.05)[0]


def test_canary_window_metrics_unavailable_mid_window_fails_every_metric_gate() -> None:
    samples = window()
    down = TrackMetrics(metric(None, False), metric(None, False), metric(None, False))
    samples[6] = good_sample(6, canary=down, stable=down)
    verdicts = c.evaluate_window(samples, TH, rollback=ROLLBACK)
    for gate in ("canary_error_rate", "canary_latency", "canary_saturation", "canary_statistical_comparison"):
        v = verdict(verdicts, gate)
        assert ("fail", "technical") == (v.status, v.failure), gate
        assert c.METRICS_UNAVAILABLE in v.reason


def test_canary_waiver_turns_metrics_unavailable_into_waived() -> None:
    down = TrackMetrics(metric(None, False), metric(None, False), metric(None, False))
    samples = window(canary=down)
    verdicts = c.evaluate_window(samples, TH, rollback=ROLLBACK, waivers={"canary_latency": "ev-1"})
    v = verdict(verdicts, "canary_latency")
    assert ("waived", "ev-1") == (v.status, v.waiver)
    assert CheckStatus.WAIVED == v.to_check().status
    assert "fail" == verdict(verdicts, "canary_error_rate").status


def test_canary_no_samples_fails_every_gate() -> None:
    verdicts = c.evaluate_window([], TH, rollback=ROLLBACK)
    assert ["rollback_ready"] == [v.name for v in verdicts if v.status == "pass"]


def test_canary_logs_secret_leak_window_fails_with_kinds_only() -> None:
    samples = window()
    samples[3] = good_sample(3, logs=LogScan(secret_kinds={"aws-access-key": 1}, lines=4))
    v = verdict(c.evaluate_window(samples, TH, rollback=ROLLBACK), "canary_logs_clean")
    assert "fail" == v.status and "aws-access-key x1" in v.reason


@pytest.mark.parametrize(
    ("info", "status", "needle"),
    [
        (ROLLBACK, "pass", "tested before"),
        (replace(ROLLBACK, tested=False), "pass", "single documented command"),
        (
            replace(ROLLBACK, tested=False, command="helm rollback a && kubectl delete b"),
            "fail",
            "neither tested",
        ),
        (replace(ROLLBACK, target_known=False), "fail", "rollback target unknown"),
    ],
)
def test_canary_rollback_ready(info: RollbackReadiness, status: str, needle: str) -> None:
    v = c.rollback_verdict(info)
    assert status == v.status and needle in v.reason


# ------------------------------------------------------------------------------------------ immediate rollback


def test_canary_immediate_rollback_none_for_healthy_sample() -> None:
    assert c.immediate_rollback_reason(good_sample(), TH) is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"approval_revoked": True}, "approval revoked"),
        ({"routing": RoutingState(False, c.MORE_TRAFFIC, True)}, "escaped the declared blast radius"),
        ({"integrity": Probe(False, None, "checksum mismatch")}, "data integrity at risk"),
        ({"logs": LogScan(secret_kinds={"pem-private-key": 1})}, "secret-handling"),
        ({"logs": LogScan(auth_failures=9)}, "repeated authorization failures"),
        ({"production_available": False}, "production availability degraded"),
        ({"pods": PodState(total=1, ready=0, crashloop=1)}, "crash-looping"),
        ({"canary": tm(err=0.2)}, "canary error rate 0.2"),
        ({"health_outside": Probe(False, 502, "HTTP 502")}, "health from outside failing"),
    ],
)
def test_canary_immediate_rollback_reasons(change: dict[str, Any], needle: str) -> None:
    reason = c.immediate_rollback_reason(good_sample(**change), TH)
    assert reason is not None and needle in reason


def test_canary_sample_round_trips_through_payload() -> None:
    s = good_sample(
        3, health_outside=None, integrity=Probe(True, 200, "ok"), logs=LogScan(secret_kinds={"x": 1})
    )
    assert s == CanarySample.from_payload(s.to_payload())


def test_canary_thresholds_from_mapping_ignores_unknown_keys() -> None:
    t = Thresholds.from_mapping(
        {"max_error_rate": 0.02, "min_samples": 3, "bogus": 1, "max_saturation_increase": None}
    )
    assert (0.02, 3, None) == (t.max_error_rate, t.min_samples, t.max_saturation_increase)


# ------------------------------------------------------------------------------------------ logs


def test_canary_count_auth_failures() -> None:
    text = "GET / 200\nGET /api HTTP 401\nupstream said 403 Forbidden\nall good\npermission denied for x\n"
    assert 3 == c.count_auth_failures(text)
    assert 0 == c.count_auth_failures("GET / 200\nserved 4013 bytes\n")


# ------------------------------------------------------------------------------------------ references


def deployment(
    env: list[dict[str, Any]],
    volumes: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "hello-web-canary"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "env": env}], "volumes": volumes or []},
            }
        },
    }


DECLARED_SECRETS = [
    {"name": "hello-web-db", "kind": "kubernetes"},
    {"name": "kv/apps/hello-web/api", "kind": "openbao"},
]
DECLARED_DEPS = [{"name": "postgres-main", "health_url": "http://postgres-main.platform.svc:8008/health"}]


def test_canary_declared_references_pass() -> None:
    docs = [
        deployment(
            [
                {
                    "name": "DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": "hello-web-db", "key": "DATABASE_URL"}},
                },
                {"name": "PG", "value": "postgres://postgres-main.platform.svc.cluster.local:5432/app"},
                {"name": "SELF", "value": "http://hello-web.hello-web.svc:8080"},
            ],
            volumes=[{"name": "cfg", "configMap": {"name": "hello-web-config"}}],
            annotations={"vault.hashicorp.com/agent-inject-secret-api": "kv/apps/hello-web/api"},
        ),
        {"kind": "ConfigMap", "metadata": {"name": "hello-web-config"}},
        {"kind": "Service", "metadata": {"name": "hello-web"}},
    ]
    assert [] == c.undeclared_references(docs, secrets=DECLARED_SECRETS, dependencies=DECLARED_DEPS)


def test_canary_undeclared_references_fail_closed() -> None:
    docs = [
        deployment(
            [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments-token", "key": "t"}}},
                {"name": "MQ", "value": "amqp://rabbit.platform.svc:5672"},
            ],
            volumes=[
                {"name": "c", "configMap": {"name": "shared-config"}},
                {"name": "s", "projected": {"sources": [{"secret": {"name": "other-secret"}}]}},
            ],
            annotations={"vault.hashicorp.com/agent-inject-secret-x": "kv/other"},
        )
    ]
    assert [
        "secret other-secret",
        "secret payments-token",
        "openbao kv/other",
        "configmap shared-config",
        "dependency rabbit.platform",
    ] == c.undeclared_references(docs, secrets=DECLARED_SECRETS, dependencies=DECLARED_DEPS)


def test_canary_statistical_comparison_negligible_shift_passes() -> None:
    ok, reason = c.compare_distributions(
        [1.0 + i * 1e-6 + 0.5 for i in range(10)],
        [1.0 + i * 1e-6 for i in range(10)],
        min_samples=8,
        alpha=0.05,
        min_effect=1.0,
    )
    assert ok and "negligible" in reason


def test_no_integrity_probe_declared_is_not_evaluated_and_fails_side_effects() -> None:
    """No ``[[integrity]]`` probe: ``canary_side_effects`` is "not evaluated" and fails (never a pass
    nobody checked), but it is no immediate rollback (nothing showed integrity at risk)."""
    sample = good_sample(integrity=None)
    v = verdict(c.evaluate_sample(sample, TH), "canary_side_effects")
    assert (False, True) == (v.passed, v.reason.startswith("not evaluated: no [[integrity]] probe declared"))
    assert c.immediate_rollback_reason(sample, TH) is None
