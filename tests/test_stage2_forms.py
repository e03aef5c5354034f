"""Stage 2 canary forms end to end (real control plane + real helm + real registry + real Prometheus): header,
path, shadow and isolated-namespace accepted, and the fallback when weighted routing is unavailable.
"""

from __future__ import annotations

import pytest

from railiance_ledger.domain.events import EventKind
from tests.fixtures.stage2 import (
    STABLE_DIGEST,
    CanaryEnv,
    check_named,
    deploy_env,
    events_of,
    not_passed,
    observe_env,
    use_form,
)

NGINX = "nginx.ingress.kubernetes.io/"


def accepted(env: CanaryEnv) -> dict:
    """Deploy and observe; both must pass. Returns the stage-result document."""
    out = deploy_env(env)
    assert 0 == out.exit_code, not_passed(out.document)
    res = observe_env(env, fast=True)
    assert 0 == res.exit_code, not_passed(res.document)
    assert "pass" == res.document["status"]
    assert 1 == env.helm.deployed_revision(release="hello-web", namespace="hello-web")  # stable untouched
    return res.document


def stable_ingress(env: CanaryEnv) -> dict:
    ing = env.cluster.get("ingresses", "hello-web", "hello-web")
    assert ing is not None
    return ing


def test_stage2_header_canary_accepted_on_ingress_nginx(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "header")
    doc = accepted(canary_env)
    ann = canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary")["metadata"]["annotations"]
    assert ("true", "X-Railiance-Canary", "always") == (
        ann[NGINX + "canary"],
        ann[NGINX + "canary-by-header"],
        ann[NGINX + "canary-by-header-value"],
    )
    assert NGINX + "canary-weight" not in ann  # operator traffic only: no share of ordinary requests
    assert (
        "canary reachable only with header X-Railiance-Canary" in check_named(doc, "canary_routing")["reason"]
    )
    assert "pass" == check_named(doc, "canary_health")["status"]


def test_stage2_header_canary_accepted_on_gateway_api(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "header", "gateway-api")
    accepted(canary_env)
    rules = canary_env.cluster.get("httproutes", "hello-web", "hello-web")["spec"]["rules"]
    assert [{"type": "Exact", "name": "X-Railiance-Canary", "value": "always"}] == rules[0]["matches"][0][
        "headers"
    ]
    assert ["hello-web-canary"] == [b["name"] for b in rules[0]["backendRefs"]]
    assert ["hello-web"] == [b["name"] for b in rules[1]["backendRefs"]]


@pytest.mark.parametrize("provider", ["ingress-nginx", "gateway-api"])
def test_stage2_path_canary_accepted(canary_env: CanaryEnv, provider: str) -> None:
    use_form(canary_env, "path", provider)
    doc = accepted(canary_env)
    assert "canary reachable only under /canary" in check_named(doc, "canary_routing")["reason"]
    if provider == "ingress-nginx":
        paths = canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary")["spec"]["rules"][0][
            "http"
        ]["paths"]
        assert [("/canary", "hello-web-canary")] == [
            (p["path"], p["backend"]["service"]["name"]) for p in paths
        ]


def test_stage2_shadow_canary_accepted_on_ingress_nginx(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "shadow")
    doc = accepted(canary_env)
    ann = stable_ingress(canary_env)["metadata"]["annotations"]
    assert ann[NGINX + "mirror-target"].startswith("http://hello-web-canary.hello-web.svc.cluster.local:8080")
    assert "off" == ann[NGINX + "mirror-request-body"]  # non-mutating: bodies are not mirrored
    assert canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert "stable answers every request" in check_named(doc, "canary_routing")["reason"]
    # no outside probe for a shadow: health is from inside only
    samples = events_of(canary_env, EventKind.CANARY_SAMPLE)
    assert samples[0].payload["health_outside"] is None and samples[0].payload["health_inside"]["ok"]


def test_stage2_shadow_canary_rolled_back_restores_stable_ingress(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "shadow")
    before = stable_ingress(canary_env)["metadata"].get("annotations") or {}
    canary_env.cluster.behaviours.set(canary_env.image, "crashloop")
    assert 0 == deploy_env(canary_env).exit_code
    res = observe_env(canary_env)
    assert (1, True) == (res.exit_code, res.rolled_back)
    after = stable_ingress(canary_env)["metadata"].get("annotations") or {}
    assert before == after


def test_stage2_shadow_canary_accepted_on_gateway_api(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "shadow", "gateway-api")
    accepted(canary_env)
    rule = canary_env.cluster.get("httproutes", "hello-web", "hello-web")["spec"]["rules"][0]
    assert ["hello-web"] == [b["name"] for b in rule["backendRefs"]]
    assert "hello-web-canary" == rule["filters"][0]["requestMirror"]["backendRef"]["name"]


def test_stage2_isolated_namespace_canary_accepted(canary_env: CanaryEnv) -> None:
    use_form(canary_env, "isolated-namespace")
    doc = accepted(canary_env)
    assert canary_env.cluster.list("ingresses", "hello-web-canary") == []
    assert canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary") is None
    assert 1 == canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web-canary")
    assert "canary isolated" in check_named(doc, "canary_routing")["reason"]
    assert any(
        "/namespaces/hello-web-canary/services/hello-web-canary%3A8080/proxy/healthz 200" in p
        for p in canary_env.cluster.paths()
    )


def _assert_fallback(env: CanaryEnv, doc: dict, form: str) -> None:
    started = events_of(env, EventKind.STAGE_STARTED)[-1]
    routed = events_of(env, EventKind.ROUTING_CHANGED)[0]
    assert ("weighted", form) == (
        started.payload["routing"]["fallback_from"],
        started.payload["routing"]["form"],
    )
    assert "weighted" == routed.payload["fallback_from"] and form == routed.payload["form"]
    assert started.payload["fallback"] and "fell back" in started.payload["fallback"]
    assert 0 == started.payload["routing"]["weight"]  # no share of ordinary production traffic
    stable = env.cluster.get("deployments", "hello-web", "hello-web")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"].endswith(STABLE_DIGEST)


def test_stage2_fallback_to_header_when_gateway_api_disabled(canary_env: CanaryEnv) -> None:
    """Declared weighted on gateway-api; the cluster serves no HTTPRoute: header via ingress-nginx."""
    canary_env.edit('provider = "ingress-nginx"', 'provider = "gateway-api"')
    canary_env.cluster.set_gateway_api(False)
    doc = accepted(canary_env)
    _assert_fallback(canary_env, doc, "header")
    ann = canary_env.cluster.get("ingresses", "hello-web", "hello-web-canary")["metadata"]["annotations"]
    assert NGINX + "canary-by-header" in ann and NGINX + "canary-weight" not in ann
    prechecks = {"checks": events_of(canary_env, EventKind.STAGE_STARTED)[-1].payload["prechecks"]}
    assert (
        "fell back to header routing via ingress-nginx"
        in check_named(prechecks, "canary_form_declared")["reason"]
    )


def test_stage2_fallback_to_isolated_when_no_ingress_class_and_no_gateway_api(canary_env: CanaryEnv) -> None:
    """Declared weighted on ingress-nginx; no IngressClass and no Gateway API: an isolated canary,
    probed from inside only, and production routing untouched."""
    canary_env.kube.delete(
        api_version="networking.k8s.io/v1", kind="IngressClass", namespace=None, name="nginx"
    )
    canary_env.cluster.set_gateway_api(False)
    doc = accepted(canary_env)
    _assert_fallback(canary_env, doc, "isolated-namespace")
    assert ["hello-web"] == [i["metadata"]["name"] for i in canary_env.cluster.list("ingresses", "hello-web")]
    assert "canary isolated" in check_named(doc, "canary_routing")["reason"]
