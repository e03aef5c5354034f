"""The real control plane (tests/harness/kube_real.py): what Stage 2/3 will rely on once they move.

Each test works in its own namespace (``real_kube_namespace``) on the session's control plane and
drives it with the real kubectl, helm, the official Python client or raw HTTP. Pod behaviours come
from kwok Stages chosen by the annotation ``kwok.railiance.dev/behaviour`` (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import yaml

from tests.harness import wait_until
from tests.harness.faultproxy import FaultControl, FaultProxy
from tests.harness.kube_real import ROOT, ControlPlane

BEHAVIOUR = "kwok.railiance.dev/behaviour"


def deployment(
    name: str,
    *,
    replicas: int = 3,
    image: str = "registry.test/hello:1",
    annotations: dict[str, str] | None = None,
    progress_deadline: int = 600,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods labelled ``app=<name>``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
            },
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def pod(name: str, *, behaviour: str | None = None, **spec: Any) -> dict[str, Any]:
    """A bare pod with the given behaviour annotation and extra spec fields."""
    annotations = {BEHAVIOUR: behaviour} if behaviour else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "containers": [{"name": "app", "image": "registry.test/hello:1"}],
            "terminationGracePeriodSeconds": 1,
            **spec,
        },
    }


def apply(cp: ControlPlane, ns: str, *objs: dict[str, Any]) -> None:
    """``kubectl apply --server-side`` of the objects into ``ns``."""
    docs = "\n---\n".join(yaml.safe_dump(o) for o in objs)
    proc = subprocess.run(
        [
            str(ROOT / ".venv/bin/kubectl"),
            "--kubeconfig",
            str(cp.kubeconfig_path),
            "-n",
            ns,
            "apply",
            "--server-side",
            "--field-manager=test",
            "-f",
            "-",
        ],
        input=docs,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def get(cp: ControlPlane, path: str) -> dict[str, Any]:
    """GET ``path`` on the apiserver as JSON (raises on an error status)."""
    with cp.client() as http:
        resp = http.get(path)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result


def pods(cp: ControlPlane, ns: str, selector: str) -> list[dict[str, Any]]:
    """The pods of ``ns`` matching the label ``selector``."""
    items: list[dict[str, Any]] = get(cp, f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]
    return items


def is_ready(p: dict[str, Any]) -> bool:
    """True when the pod's Ready condition is True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
    )


def waiting_reason(p: dict[str, Any]) -> str | None:
    """The first container's waiting reason, if it waits."""
    statuses = p.get("status", {}).get("containerStatuses") or [{}]
    reason: str | None = statuses[0].get("state", {}).get("waiting", {}).get("reason")
    return reason


# --------------------------------------------------------------------------------------------------
# The cluster itself


def test_nodes_ready_and_components_serving(real_kube: ControlPlane) -> None:
    out = real_kube.kubectl("get", "nodes", "-o", "json").stdout
    nodes = json.loads(out)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["kwok-node-1", "kwok-node-2"]
    for node in nodes:
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    version = get(real_kube, "/version")
    assert version["gitVersion"] == "v1.35.4"
    assert real_kube.alive()


def test_gateway_api_crds_installed(real_kube: ControlPlane) -> None:
    names = {
        c["metadata"]["name"]
        for c in get(real_kube, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    }
    assert {"httproutes.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io"} <= names


def test_namespace_gets_default_serviceaccount_and_token(
    real_kube: ControlPlane, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    wait_until(
        lambda: get(real_kube, f"/api/v1/namespaces/{ns}/serviceaccounts/default") is not None,
        timeout=20,
        what="default ServiceAccount",
    )
    with real_kube.client() as http:
        resp = http.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        assert resp.status_code == 201, resp.text
        token = resp.json()["status"]["token"]
        review = http.post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        ).json()
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{ns}:default"
    # RBAC is on: the service account may not list secrets.
    sa = httpx.get(
        f"{real_kube.url}/api/v1/namespaces/{ns}/secrets",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(real_kube.ca_path)),
    )
    assert sa.status_code == 403


def test_api_semantics_the_emulator_lacked(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, deployment("sem", replicas=1))
    with real_kube.client() as http:
        base = f"/apis/apps/v1/namespaces/{ns}/deployments/sem"
        # The selector is immutable.
        resp = http.patch(
            base,
            content=json.dumps({"spec": {"selector": {"matchLabels": {"app": "other"}}}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status_code == 422 and "field is immutable" in resp.text
        # Quantities are canonicalized.
        resp = http.patch(
            base,
            content=json.dumps(
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": 0.5}}}]}
                        }
                    }
                }
            ),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        assert resp.status_code == 200, resp.text
        assert (
            resp.json()["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"
        )
        # Unknown fields are refused under fieldValidation=Strict.
        resp = http.patch(
            base + "?fieldValidation=Strict",
            content=json.dumps({"spec": {"bogusField": 1}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status_code == 422 and "bogusField" in resp.text
    # A no-op server-side apply keeps the resourceVersion.
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "noop"}, "data": {"a": "1"}}
    apply(real_kube, ns, cm)
    rv = get(real_kube, f"/api/v1/namespaces/{ns}/configmaps/noop")["metadata"]["resourceVersion"]
    apply(real_kube, ns, cm)
    assert get(real_kube, f"/api/v1/namespaces/{ns}/configmaps/noop")["metadata"]["resourceVersion"] == rv


# --------------------------------------------------------------------------------------------------
# Rollouts


def test_rollout_surges_and_completes(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, deployment("web", replicas=3))
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    assert sum(is_ready(p) for p in pods(real_kube, ns, "app=web")) == 3

    apply(real_kube, ns, deployment("web", replicas=3, image="registry.test/hello:2"))
    seen_total = 0

    def rolled() -> bool:
        nonlocal seen_total
        current = [p for p in pods(real_kube, ns, "app=web") if not p["metadata"].get("deletionTimestamp")]
        seen_total = max(seen_total, len(current))
        dep = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        st = dep["status"]
        return bool(
            st.get("observedGeneration") == dep["metadata"]["generation"]
            and st.get("updatedReplicas") == 3
            and st.get("availableReplicas") == 3
            and st.get("replicas") == 3
        )

    wait_until(rolled, timeout=60, interval=0.05, what="rollout to image 2")
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
    images = {p["spec"]["containers"][0]["image"] for p in pods(real_kube, ns, "app=web")}
    assert images == {"registry.test/hello:2"}
    rs = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app=web")["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 3]
    assert seen_total >= 4, "maxSurge=1 should have run a fourth pod during the rollout"


def test_crashlooping_update_fails_rollout_while_old_pods_serve(
    real_kube: ControlPlane, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, deployment("shop", replicas=2, progress_deadline=8))
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/shop", "--timeout=60s")
    old_pods = {p["metadata"]["name"] for p in pods(real_kube, ns, "app=shop")}

    apply(
        real_kube,
        ns,
        deployment(
            "shop",
            replicas=2,
            progress_deadline=8,
            image="registry.test/hello:bad",
            annotations={BEHAVIOUR: "crashloop"},
        ),
    )
    t0 = time.monotonic()
    proc = real_kube.kubectl("-n", ns, "rollout", "status", "deployment/shop", "--timeout=90s", check=False)
    assert proc.returncode != 0
    assert "exceeded its progress deadline" in proc.stderr + proc.stdout
    assert time.monotonic() - t0 < 60

    current = pods(real_kube, ns, "app=shop")
    serving = [p for p in current if p["metadata"]["name"] in old_pods]
    assert len(serving) == 2 and all(is_ready(p) for p in serving)
    new = [p for p in current if p["metadata"]["name"] not in old_pods]
    assert new, "the new ReplicaSet should have surged one pod"
    statuses = new[0]["status"]["containerStatuses"][0]
    assert statuses["restartCount"] >= 1
    dep = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/deployments/shop")
    conditions = {c["type"]: c for c in dep["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "ProgressDeadlineExceeded"
    # kubectl wait for Available answers at once: the old pods still serve.
    real_kube.kubectl("-n", ns, "wait", "--for=condition=Available", "deployment/shop", "--timeout=5s")


def test_crashloop_restart_count_grows_with_backoff(
    real_kube: ControlPlane, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, pod("crash", behaviour="crashloop", restartPolicy="Always"))
    counts: list[tuple[float, int, str | None]] = []

    def restarted_three_times() -> bool:
        p = get(real_kube, f"/api/v1/namespaces/{ns}/pods/crash")
        cs = (p["status"].get("containerStatuses") or [{}])[0]
        counts.append((time.monotonic(), cs.get("restartCount", 0), waiting_reason(p)))
        return bool(cs.get("restartCount", 0) >= 3)

    wait_until(restarted_three_times, timeout=40, interval=0.2, what="three restarts")
    p = get(real_kube, f"/api/v1/namespaces/{ns}/pods/crash")
    assert not is_ready(p)
    assert any(reason == "CrashLoopBackOff" for _, _, reason in counts)
    first = {n: t for t, n, _ in reversed(counts)}
    # back-off grows: the gap between restarts 2->3 is longer than 1->2
    assert first[3] - first[2] > first[2] - first[1]
    events = get(real_kube, f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name=crash")[
        "items"
    ]
    assert any(e["reason"] == "BackOff" for e in events)


# --------------------------------------------------------------------------------------------------
# Pod behaviours


def test_pod_behaviours(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    apply(
        real_kube,
        ns,
        pod("plain"),
        {
            **pod("slow"),
            "metadata": {"name": "slow", "annotations": {"kwok.railiance.dev/ready-after": "3s"}},
        },
        pod("never", behaviour="never-ready"),
        pod("waits", behaviour="pending"),
        pod("nopull", behaviour="image-pull-error"),
        pod(
            "nosecret",
            behaviour="config-error",
            containers=[
                {
                    "name": "app",
                    "image": "registry.test/hello:1",
                    "env": [
                        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "url"}}}
                    ],
                }
            ],
        ),
        pod("nowhere", nodeSelector={"railiance.test/node": "none"}),
    )
    t0 = time.monotonic()
    path = f"/api/v1/namespaces/{ns}/pods"

    def by_name() -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in get(real_kube, path)["items"]}

    wait_until(lambda: is_ready(by_name()["plain"]), timeout=20, what="plain pod Ready")
    wait_until(lambda: is_ready(by_name()["slow"]), timeout=20, what="slow pod Ready")
    assert time.monotonic() - t0 >= 2.5
    wait_until(
        lambda: waiting_reason(by_name()["nopull"]) == "ImagePullBackOff", timeout=20, what="ImagePullBackOff"
    )
    wait_until(
        lambda: waiting_reason(by_name()["nosecret"]) == "CreateContainerConfigError",
        timeout=20,
        what="config error",
    )
    wait_until(
        lambda: by_name()["never"]["status"].get("phase") == "Running", timeout=20, what="never-ready Running"
    )
    time.sleep(1.0)
    state = by_name()
    assert not is_ready(state["never"])
    assert (
        state["waits"]["status"]["phase"] == "Pending"
        and waiting_reason(state["waits"]) == "ContainerCreating"
    )
    msg = state["nosecret"]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert msg == 'secret "db-creds" not found'
    scheduled = {c["type"]: c for c in state["nowhere"]["status"]["conditions"]}["PodScheduled"]
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert state["plain"]["status"]["podIP"].startswith("198.18.")
    assert state["plain"]["spec"]["nodeName"].startswith("kwok-node-")


def test_job_completes_and_failing_job_backs_off(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace

    def job(name: str, behaviour: str | None) -> dict[str, Any]:
        template = pod(name, behaviour=behaviour, restartPolicy="Never")
        template["metadata"].pop("name")
        template.pop("apiVersion")
        template.pop("kind")
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": 1, "template": template},
        }

    apply(real_kube, ns, job("ok", None), job("bad", "fail"))

    def condition(name: str, kind: str) -> bool:
        st = get(real_kube, f"/apis/batch/v1/namespaces/{ns}/jobs/{name}").get("status", {})
        return any(c["type"] == kind and c["status"] == "True" for c in st.get("conditions", []))

    wait_until(lambda: condition("ok", "Complete"), timeout=40, what="job ok Complete")
    wait_until(lambda: condition("bad", "Failed"), timeout=60, what="job bad Failed")


def test_endpointslices_follow_pod_readiness(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"tier": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    good = pod("good")
    good["metadata"]["labels"]["tier"] = "web"
    bad = pod("bad", behaviour="never-ready")
    bad["metadata"]["labels"]["tier"] = "web"
    apply(real_kube, ns, service, good, bad)

    def endpoints() -> dict[str, bool]:
        slices = get(real_kube, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices")["items"]
        return {
            e["targetRef"]["name"]: bool(e["conditions"].get("ready"))
            for s in slices
            for e in s.get("endpoints") or []
        }

    wait_until(
        lambda: endpoints() == {"good": True, "bad": False}, timeout=30, what="endpointslice readiness"
    )
    svc = get(real_kube, f"/api/v1/namespaces/{ns}/services/web")
    assert svc["spec"]["clusterIP"].startswith("198.19.")


def test_orphaning_delete_keeps_replicasets(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    apply(real_kube, ns, deployment("orph", replicas=1))
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/orph", "--timeout=60s")
    real_kube.kubectl("-n", ns, "delete", "deployment/orph", "--cascade=orphan", "--wait=true")
    rs = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=app=orph")["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    apply(real_kube, ns, deployment("fg", replicas=1))
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/fg", "--timeout=60s")
    real_kube.kubectl(
        "-n", ns, "delete", "deployment/fg", "--cascade=foreground", "--wait=true", "--timeout=60s"
    )
    wait_until(lambda: not pods(real_kube, ns, "app=fg"), timeout=30, what="foreground deletion")


# --------------------------------------------------------------------------------------------------
# helm


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "values.yaml": "image: registry.test/hello:1\nbehaviour: ready\nreplicas: 2\n",
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  progressDeadlineSeconds: 10
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
      annotations:
        kwok.railiance.dev/behaviour: {{ .Values.behaviour | quote }}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {{ .Values.image }}
        ports: [{containerPort: 8080}]
""",
    "templates/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80, targetPort: 8080}]
""",
}


def helm(cp: ControlPlane, ns: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the project's helm against the control plane in ``ns``."""
    return subprocess.run(
        [str(ROOT / ".venv/bin/helm"), "--kubeconfig", str(cp.kubeconfig_path), "-n", ns, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_helm_upgrade_with_failing_pod_rolls_back(
    real_kube: ControlPlane, real_kube_namespace: str, tmp_path: Path
) -> None:
    ns = real_kube_namespace
    chart = tmp_path / "chart"
    for rel, text in CHART.items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    first = helm(real_kube, ns, "upgrade", "--install", "web", str(chart), "--wait", "--timeout=60s")
    assert first.returncode == 0, first.stderr
    bad = helm(
        real_kube,
        ns,
        "upgrade",
        "--install",
        "web",
        str(chart),
        "--set",
        "behaviour=crashloop,image=registry.test/hello:bad",
        "--wait",
        "--rollback-on-failure",
        "--timeout=20s",
    )
    assert bad.returncode != 0
    assert (
        "rolled back" in (bad.stderr + bad.stdout).lower() or "rollback" in (bad.stderr + bad.stdout).lower()
    )
    history = json.loads(helm(real_kube, ns, "history", "web", "-o", "json").stdout)
    assert [h["status"] for h in history] == ["superseded", "failed", "deployed"]
    assert "Rollback to 1" in history[-1]["description"]
    dep = get(real_kube, f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.test/hello:1"
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    ready = [p for p in pods(real_kube, ns, "app=web") if is_ready(p)]
    assert len(ready) == 2
    assert all(p["spec"]["containers"][0]["image"] == "registry.test/hello:1" for p in ready)


# --------------------------------------------------------------------------------------------------
# The fault proxy


def proxied_kubectl(cp: ControlPlane, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """kubectl through the fault proxy."""
    assert cp.proxied_kubeconfig_path is not None
    return subprocess.run(
        [str(ROOT / ".venv/bin/kubectl"), "--kubeconfig", str(cp.proxied_kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_fault_proxy_passes_through_then_injects_status(
    real_kube: ControlPlane, real_kube_faults: FaultProxy, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    ok = proxied_kubectl(real_kube, "-n", ns, "get", "configmaps", "-o", "name")
    assert ok.returncode == 0, ok.stderr
    assert "configmap/kube-root-ca.crt" in ok.stdout or ok.stdout == ""

    rule = real_kube_faults.add(
        rf"^/api/v1/namespaces/{ns}/configmaps$", methods=["GET"], status=503, times=1
    )
    failed = proxied_kubectl(real_kube, "-n", ns, "get", "configmaps", "--request-timeout=5s")
    assert failed.returncode != 0
    # kubectl retries nothing on 503 for a plain get; the rule was used once and retired
    assert rule.id not in [f.id for f in real_kube_faults.faults()]
    again = proxied_kubectl(real_kube, "-n", ns, "get", "configmaps")
    assert again.returncode == 0, again.stderr
    statuses = [
        r["status"]
        for r in real_kube_faults.requests()
        if r["path"].startswith(f"/api/v1/namespaces/{ns}/configmaps")
    ]
    assert 503 in statuses and 200 in statuses


def test_fault_proxy_latency_drop_and_method_filter(
    real_kube: ControlPlane, real_kube_faults: FaultProxy, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    client = kubernetes.config.new_client_from_config(
        config_file=str(real_kube.proxied_kubeconfig_path), context="railiance-test"
    )
    core = kubernetes.client.CoreV1Api(client)
    try:
        real_kube_faults.add(
            rf"/namespaces/{ns}/configmaps", methods=["POST"], status=500, message="etcd is sad"
        )
        with pytest.raises(kubernetes.client.ApiException) as err:
            core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}, "data": {"a": "b"}})
        assert err.value.status == 500 and "etcd is sad" in str(err.value.body)
        core.list_namespaced_config_map(ns)  # GET is not affected
        real_kube_faults.clear()

        real_kube_faults.add(rf"/namespaces/{ns}/secrets$", latency=1.0)
        t0 = time.monotonic()
        core.list_namespaced_secret(ns)
        assert time.monotonic() - t0 >= 1.0
        real_kube_faults.clear()

        real_kube_faults.add(rf"/namespaces/{ns}/services$", drop=True)
        with pytest.raises(Exception) as dropped:  # urllib3 raises its own protocol errors
            core.list_namespaced_service(ns, _request_timeout=5)
        assert not isinstance(dropped.value, kubernetes.client.ApiException)
    finally:
        client.close()


def test_fault_proxy_streams_watches(
    real_kube: ControlPlane, real_kube_faults: FaultProxy, real_kube_namespace: str
) -> None:
    ns = real_kube_namespace
    client = kubernetes.config.new_client_from_config(
        config_file=str(real_kube.proxied_kubeconfig_path), context="railiance-test"
    )
    core = kubernetes.client.CoreV1Api(client)
    try:
        rv = core.list_namespaced_config_map(ns).metadata.resource_version
        core.create_namespaced_config_map(ns, {"metadata": {"name": "watched"}, "data": {"a": "b"}})
        w = kubernetes.watch.Watch()
        names = []
        for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
            names.append((event["type"], event["object"].metadata.name))
            if event["object"].metadata.name == "watched":
                w.stop()
        assert ("ADDED", "watched") in names
    finally:
        client.close()


def test_fault_control_endpoint_over_http(real_kube: ControlPlane, real_kube_faults: FaultProxy) -> None:
    control = FaultControl(real_kube_faults.control_url)
    try:
        rule = control.add("^/version$", status=418, methods=["GET"])
        assert rule["id"] and rule["status"] == 418
        assert [f["path"] for f in control.faults()] == ["^/version$"]
        ctx = ssl.create_default_context(cafile=str(real_kube.ca_path))
        resp = httpx.get(f"{real_kube_faults.url}/version", verify=ctx)
        assert resp.status_code == 418 and resp.json()["kind"] == "Status"
        bad = httpx.post(f"{real_kube_faults.control_url}/faults", json={"path": "("})
        assert bad.status_code == 400
        control.clear()
        assert control.faults() == []
        assert httpx.get(f"{real_kube_faults.url}/version", verify=ctx).status_code in (200, 401)
        assert any(r["status"] == 418 for r in control.requests())
    finally:
        control.close()


def test_control_plane_cli_prints_ready_line(tmp_path: Path, real_kube: ControlPlane) -> None:
    """``python -m tests.harness kube-real`` starts a second, independent control plane and stops it."""
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "tests.harness",
            "kube-real",
            "--workdir",
            str(tmp_path / "cp"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("kube-real ready https://127.0.0.1:"), line + (
            proc.stderr.read() if proc.poll() else ""
        )
        details = [proc.stdout.readline() for _ in range(3)]
        kubeconfig = details[0].split("kubeconfig: ")[1].split(" ")[0]
        out = subprocess.run(
            [str(ROOT / ".venv/bin/kubectl"), "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "node/kwok-node-1" in out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # every component's process group is gone
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "cp")], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""


def test_gateway_api_can_be_removed_and_restored(real_kube: ControlPlane) -> None:
    try:
        real_kube.set_gateway_api(False)
        out = real_kube.kubectl("api-resources", "--api-group=gateway.networking.k8s.io", "-o", "name").stdout
        assert "httproutes" not in out
    finally:
        real_kube.set_gateway_api(True)
    wait_until(
        lambda: (
            "httproutes.gateway.networking.k8s.io"
            in real_kube.kubectl(
                "api-resources", "--api-group=gateway.networking.k8s.io", "-o", "name"
            ).stdout
        ),
        timeout=30,
        what="HTTPRoute served again",
    )


def test_behaviour_by_image_digest(real_kube: ControlPlane, real_kube_namespace: str) -> None:
    import hashlib

    ns = real_kube_namespace
    bad = "registry.test/shop@sha256:" + hashlib.sha256(ns.encode() + b"bad").hexdigest()
    good = "registry.test/shop@sha256:" + hashlib.sha256(ns.encode() + b"good").hexdigest()
    tagged = f"registry.test/{ns}-pull:v2"
    real_kube.set_image_behaviour(bad, "crashloop")
    real_kube.set_image_behaviour(f"registry.test/{ns}-pull", "image-pull-error")  # repository: any tag
    try:
        apply(
            real_kube,
            ns,
            deployment("bad", replicas=1, image=bad),
            deployment("good", replicas=1, image=good),
            deployment("pull", replicas=1, image=tagged),
            deployment("explicit", replicas=1, image=bad, annotations={BEHAVIOUR: "ready"}),
        )
        wait_until(
            lambda: waiting_reason(pods(real_kube, ns, "app=bad")[0]) == "CrashLoopBackOff",
            timeout=30,
            what="the bad digest crash-loops",
        )
        wait_until(
            lambda: waiting_reason(pods(real_kube, ns, "app=pull")[0]) == "ImagePullBackOff",
            timeout=30,
            what="the repository cannot be pulled",
        )
        real_kube.kubectl("-n", ns, "rollout", "status", "deployment/good", "--timeout=30s")
        real_kube.kubectl("-n", ns, "rollout", "status", "deployment/explicit", "--timeout=30s")
        assert pods(real_kube, ns, "app=bad")[0]["metadata"]["annotations"][BEHAVIOUR] == "crashloop"
    finally:
        real_kube.set_image_behaviour(bad, None)
        real_kube.set_image_behaviour(f"registry.test/{ns}-pull", None)
    apply(real_kube, ns, deployment("again", replicas=1, image=bad))
    real_kube.kubectl("-n", ns, "rollout", "status", "deployment/again", "--timeout=30s")


def test_fault_proxy_fails_a_helm_upgrade_then_lets_it_through(
    real_kube: ControlPlane, real_kube_faults: FaultProxy, real_kube_namespace: str, tmp_path: Path
) -> None:
    ns = real_kube_namespace
    chart = tmp_path / "chart"
    for rel, text in CHART.items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    proxied = str(real_kube.proxied_kubeconfig_path)

    def helm_via_proxy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv/bin/helm"), "--kubeconfig", proxied, "-n", ns, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert (
        helm_via_proxy("upgrade", "--install", "web", str(chart), "--wait", "--timeout=60s").returncode == 0
    )
    real_kube_faults.add(rf"^/apis/apps/v1/namespaces/{ns}/deployments/web$", methods=["PATCH"], status=500)
    failed = helm_via_proxy("upgrade", "web", str(chart), "--set", "replicas=3", "--timeout=30s")
    assert failed.returncode != 0
    assert "500" in failed.stderr or "Internal" in failed.stderr, failed.stderr
    real_kube_faults.clear()
    ok = helm_via_proxy("upgrade", "web", str(chart), "--set", "replicas=3", "--wait", "--timeout=60s")
    assert ok.returncode == 0, ok.stderr
    assert get(real_kube, f"/apis/apps/v1/namespaces/{ns}/deployments/web")["spec"]["replicas"] == 3
    patched = [
        r
        for r in real_kube_faults.requests()
        if r["method"] == "PATCH" and r["path"].split("?")[0].endswith("/deployments/web")
    ]
    assert {r["status"] for r in patched} >= {500, 200}
