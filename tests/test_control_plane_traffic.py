"""Real traffic on the real control plane: pod IPs in the run's test network are served by real
processes (``tests/harness/podhost.py``), so the apiserver's Service proxy, the EndpointSlices and
pod readiness decide where a request goes, and the test gateway splits traffic by the Ingress and
HTTPRoute objects themselves.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import httpx
import pytest

from tests.harness import wait_until
from tests.harness.gateway import BACKEND_HEADER, TestGateway
from tests.harness.kube_real import ControlPlane
from tests.test_control_plane import BEHAVIOUR, apply, deployment, get, is_ready, pods


@pytest.fixture(autouse=True)
def _needs_network(real_kube: ControlPlane) -> None:
    if real_kube.network is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real traffic is required on CI: no test network: {real_kube.network_error}")
        pytest.skip(f"real traffic needs the test network: {real_kube.network_error}")


def track_deployment(
    name: str, track: str, *, replicas: int = 1, behaviour: str | None = None
) -> dict[str, Any]:
    """A Deployment of pods labelled ``app=<app>, track=<track>`` whose pods serve on 8080."""
    annotations = {BEHAVIOUR: behaviour} if behaviour else {}
    dep = deployment(name, replicas=replicas, annotations=annotations)
    dep["spec"]["selector"]["matchLabels"] = {"app": name}
    dep["spec"]["template"]["metadata"]["labels"] = {"app": name, "track": track, "svc": "web"}
    return dep


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    """A Service on port 80 -> 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def served(cp: ControlPlane, ns: str, selector: str, count: int) -> None:
    """Wait until ``count`` ready pods match and the pod host serves each of them."""

    def ok() -> bool:
        ready = [p for p in pods(cp, ns, selector) if is_ready(p)]
        assert cp.pod_sync is not None
        serving = cp.pod_sync.serving()
        return len(ready) == count and all(p["status"]["podIP"] in serving for p in ready)

    wait_until(ok, timeout=40, interval=0.2, what=f"{count} served pods for {selector}")


def test_service_proxy_reaches_real_pod_processes(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, track_deployment("web", "stable", replicas=2), service("web", {"app": "web"}))
    served(real_kube, ns, "app=web", 2)
    ips = {p["status"]["podIP"] for p in pods(real_kube, ns, "app=web")}
    for ip in ips:  # the pod IPs themselves answer (inside the test network)
        assert httpx.get(f"http://{ip}:8080/healthz", timeout=5).text == "ok\n"
    with real_kube.client() as http:
        answers = [http.get(f"/api/v1/namespaces/{ns}/services/web:http/proxy/hello") for _ in range(10)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert {a.json()["track"] for a in answers} == {"stable"}


def test_service_selecting_no_ready_pod_fails_through_the_proxy(
    real_kube: ControlPlane, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    apply(
        real_kube,
        ns,
        track_deployment("canary", "canary", behaviour="never-ready"),
        service("canary", {"app": "canary"}),
        service("typo", {"app": "canray"}),
    )
    wait_until(
        lambda: (
            pods(real_kube, ns, "app=canary")
            and pods(real_kube, ns, "app=canary")[0]["status"].get("phase") == "Running"
        ),
        timeout=30,
        what="never-ready canary pod running",
    )
    with real_kube.client() as http:
        for name in ("canary", "typo"):
            resp = http.get(f"/api/v1/namespaces/{ns}/services/{name}:http/proxy/healthz")
            assert resp.status_code == 503, (name, resp.status_code, resp.text)
            assert "no endpoints available" in resp.text


def test_old_pods_keep_serving_while_a_crashlooping_rollout_fails(
    real_kube: ControlPlane, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    dep = track_deployment("shop", "stable", replicas=2)
    dep["spec"]["progressDeadlineSeconds"] = 8
    apply(real_kube, ns, dep, service("shop", {"app": "shop"}))
    served(real_kube, ns, "app=shop", 2)
    bad = track_deployment("shop", "stable", replicas=2, behaviour="crashloop")
    bad["spec"]["progressDeadlineSeconds"] = 8
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.test/hello:bad"
    apply(real_kube, ns, bad)
    codes: collections.Counter[int] = collections.Counter()
    deadline_hit = False
    with real_kube.client() as http:
        for _ in range(300):
            codes[http.get(f"/api/v1/namespaces/{ns}/services/shop:http/proxy/").status_code] += 1
            d = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/deployments/shop")
            cond = {c["type"]: c for c in d["status"].get("conditions", [])}
            if cond.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded":
                deadline_hit = True
                break
    assert deadline_hit
    assert set(codes) == {200}, codes


def test_gateway_splits_httproute_traffic_by_weight_and_header(
    real_kube: ControlPlane, real_kube_namespace: str, real_kube_gateway: TestGateway
) -> None:
    ns = real_kube_namespace
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "hostnames": [f"{ns}.test"],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "X-Canary", "value": "always"}]}],
                    "backendRefs": [{"name": "web-canary", "port": 80}],
                },
                {
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 90},
                        {"name": "web-canary", "port": 80, "weight": 10},
                    ]
                },
            ],
        },
    }
    apply(
        real_kube,
        ns,
        track_deployment("stable", "stable", replicas=2),
        track_deployment("canary", "canary"),
        service("web-stable", {"app": "stable"}),
        service("web-canary", {"app": "canary"}),
        route,
    )
    served(real_kube, ns, "svc=web", 3)
    wait_until(
        lambda: (
            (real_kube_gateway.reload() or True)
            and len(real_kube_gateway.endpoints(_backend(ns, "web-stable"))) == 2
            and len(real_kube_gateway.endpoints(_backend(ns, "web-canary"))) == 1
        ),
        timeout=30,
        what="gateway sees the endpoints",
    )
    real_kube_gateway.reset_stats()
    tracks: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=real_kube_gateway.url, headers={"Host": f"{ns}.test"}, timeout=10) as client:
        for _ in range(100):
            resp = client.get("/checkout")
            assert resp.status_code == 200, resp.text
            tracks[resp.json()["track"]] += 1
        header = [client.get("/", headers={"X-Canary": "always"}).json()["track"] for _ in range(5)]
    assert tracks == {"stable": 90, "canary": 10}
    assert header == ["canary"] * 5
    stats = real_kube_gateway.stats()
    assert stats[f"{ns}/web-canary"] == 15 and stats[f"{ns}/web-stable"] == 90


def _backend(ns: str, name: str) -> Any:
    from tests.harness.gateway import Backend

    return Backend(ns, name, 80)


def test_gateway_ingress_nginx_canary_by_header_and_weight(
    real_kube: ControlPlane, real_kube_namespace: str, real_kube_gateway: TestGateway
) -> None:
    ns = real_kube_namespace
    host = f"{ns}.ingress.test"

    def ingress(name: str, svc: str, annotations: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": svc, "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }

    nginx = "nginx.ingress.kubernetes.io/"
    apply(
        real_kube,
        ns,
        track_deployment("stable", "stable"),
        track_deployment("canary", "canary"),
        service("web-stable", {"app": "stable"}),
        service("web-canary", {"app": "canary"}),
        ingress("web", "web-stable", {}),
        ingress(
            "web-canary",
            "web-canary",
            {nginx + "canary": "true", nginx + "canary-by-header": "X-Canary", nginx + "canary-weight": "20"},
        ),
    )
    served(real_kube, ns, "svc=web", 2)
    wait_until(
        lambda: (
            (real_kube_gateway.reload() or True)
            and len(real_kube_gateway.endpoints(_backend(ns, "web-canary"))) == 1
            and len(real_kube_gateway.endpoints(_backend(ns, "web-stable"))) == 1
        ),
        timeout=30,
        what="gateway sees the endpoints",
    )
    with httpx.Client(base_url=real_kube_gateway.url, headers={"Host": host}, timeout=10) as client:
        always = {client.get("/", headers={"X-Canary": "always"}).json()["track"] for _ in range(5)}
        never = {client.get("/", headers={"X-Canary": "never"}).json()["track"] for _ in range(5)}
        split = collections.Counter(client.get("/").json()["track"] for _ in range(50))
    assert always == {"canary"} and never == {"stable"}
    assert split == {"stable": 40, "canary": 10}


def test_gateway_answers_503_when_the_canary_has_no_ready_pod(
    real_kube: ControlPlane, real_kube_namespace: str, real_kube_gateway: TestGateway
) -> None:
    ns = real_kube_namespace
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "hostnames": [f"{ns}.test"],
            "rules": [{"backendRefs": [{"name": "web-canary", "port": 80}]}],
        },
    }
    apply(
        real_kube,
        ns,
        track_deployment("canary", "canary", behaviour="never-ready"),
        service("web-canary", {"app": "canary"}),
        route,
    )
    wait_until(
        lambda: (
            bool(pods(real_kube, ns, "app=canary"))
            and pods(real_kube, ns, "app=canary")[0]["status"].get("phase") == "Running"
        ),
        timeout=30,
        what="canary running",
    )
    real_kube_gateway.reload()
    resp = httpx.get(real_kube_gateway.url + "/", headers={"Host": f"{ns}.test"}, timeout=10)
    assert resp.status_code == 503
    assert resp.headers[BACKEND_HEADER] == f"{ns}/web-canary"


def test_pod_logs_served_through_the_kubelet_port(
    real_kube: ControlPlane, real_kube_namespace: str, real_kube_api_client: Any
) -> None:
    import kubernetes

    ns = real_kube_namespace
    apply(real_kube, ns, track_deployment("chatty", "stable", replicas=2))
    wait_until(
        lambda: sum(is_ready(p) for p in pods(real_kube, ns, "app=chatty")) == 2, timeout=30, what="2 pods"
    )
    names = sorted(p["metadata"]["name"] for p in pods(real_kube, ns, "app=chatty"))
    real_kube.set_logs(ns, ["GET /checkout 200", "GET /checkout 200", "GET /cart 200"])
    real_kube.set_logs(ns, ["GET /checkout 401 token=sk_live_123", "GET /checkout 500"], pods=[names[0]])
    core = kubernetes.client.CoreV1Api(real_kube_api_client)

    def log(name: str, **kw: Any) -> str:
        # the raw body: kubernetes 36.0.3 returns str(bytes) ("b'...'") for a preloaded pod log
        return str(core.read_namespaced_pod_log(name, ns, _preload_content=False, **kw).data.decode())

    assert log(names[1], tail_lines=2) == "GET /checkout 200\nGET /cart 200\n"
    assert "token=sk_live_123" in log(names[0])
    assert log(names[0], limit_bytes=12) == "GET /checkou"
    proc = real_kube.kubectl("-n", ns, "logs", "-l", "app=chatty", "--tail=1", "--prefix")
    assert f"[pod/{names[0]}/app] GET /checkout 500" in proc.stdout
