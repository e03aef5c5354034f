"""The Kube adapter against the real control plane (``real_kube``: etcd, kube-apiserver, controllers,
scheduler, kwok), and, with ``-m live``, against a real cluster from KUBECONFIG. Both use a throw-away
namespace."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from railiance_ledger.adapters.kube import Kube, KubeConflict, KubeInvalid, PodSummary
from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterTimeout,
    AdapterUnavailable,
)
from tests.fixtures.kube import KubeCluster

FM = "railiance-tests"
LIVE_IMAGE = "registry.k8s.io/pause:3.9"


@dataclass
class Cluster:
    """The adapter under test, the namespace it may use, and the test control plane when there is one."""

    kube: Kube
    namespace: str
    control: KubeCluster | None

    def need_control(self) -> KubeCluster:
        """The test control plane's controls (kwok behaviours, pod logs, Gateway API toggle), or skip."""
        if self.control is None:
            pytest.skip("needs the test control plane's controls (kwok behaviours, logs, CRD toggle)")
        return self.control


@pytest.fixture(params=["control-plane", pytest.param("live", marks=pytest.mark.live)])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The real control plane by default; with ``-m live`` a real cluster from KUBECONFIG; each in a
    throw-away namespace."""
    if request.param == "control-plane":
        control = request.getfixturevalue("kube_cluster")
        client = request.getfixturevalue("kube_api_client")
        namespace = request.getfixturevalue("real_kube_namespace")
        yield Cluster(Kube(client, timeout=10), namespace, control)
        return
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("set KUBECONFIG to a disposable cluster (k3d, kind) for the live lane")
    kube = Kube.from_kubeconfig(timeout=20)
    namespace = f"railiance-test-{uuid.uuid4().hex[:6]}"
    kube.apply(
        manifests=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}],
        field_manager=FM,
    )
    yield Cluster(kube, namespace, None)
    kube.delete(api_version="v1", kind="Namespace", namespace=None, name=namespace)


def deployment(
    namespace: str, name: str = "web", image: str = LIVE_IMAGE, replicas: int = 2
) -> dict[str, Any]:
    """A valid Deployment manifest."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def ingress(namespace: str, name: str = "web") -> dict[str, Any]:
    """An Ingress body (apiVersion/kind filled in by write_ingress)."""
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "rules": [
                {
                    "host": "web.test",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": name, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }


def eventually(fn: Any, timeout: float = 60.0) -> Any:
    """Poll ``fn`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --- behaviour of every method -------------------------------------------------------------------


def test_server_version_and_namespace_ready(cluster: Cluster) -> None:
    """server_version answers gitVersion; namespace_ready is True for Active, False for missing."""
    assert cluster.kube.server_version()["gitVersion"].startswith("v1.")
    assert cluster.kube.namespace_ready(namespace=cluster.namespace) is True
    assert cluster.kube.namespace_ready(namespace="does-not-exist-" + uuid.uuid4().hex[:6]) is False


def test_dry_run_apply_validates_without_persisting(cluster: Cluster) -> None:
    """dry_run_apply returns defaulted objects and stores nothing; an invalid manifest is KubeInvalid with causes."""
    out = cluster.kube.dry_run_apply(manifests=[deployment(cluster.namespace)], field_manager=FM)
    assert "RollingUpdate" == out[0]["spec"]["strategy"]["type"]
    assert None is cluster.kube.get(
        api_version="apps/v1", kind="Deployment", namespace=cluster.namespace, name="web"
    )
    bad = deployment(cluster.namespace)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(KubeInvalid) as err:
        cluster.kube.dry_run_apply(manifests=[bad], field_manager=FM)
    assert "spec.template.metadata.labels" in {c["field"] for c in err.value.causes}
    assert "dry-run apply Deployment/web" in str(err.value) and cluster.kube.address in str(err.value)


def test_apply_get_list_delete(cluster: Cluster) -> None:
    """apply creates and updates; get/list read back (None when missing); delete is False the second time."""
    ns = cluster.namespace
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": ns, "labels": {"app": "x"}},
        "data": {"a": "1"},
    }
    assert {"a": "1"} == cluster.kube.apply(manifests=[cm], field_manager=FM)[0]["data"]
    cm["data"] = {"a": "2"}
    cluster.kube.apply(manifests=[cm], field_manager=FM)
    got = cluster.kube.get(api_version="v1", kind="ConfigMap", namespace=ns, name="cfg")
    assert got is not None and {"a": "2"} == got["data"]
    assert ["cfg"] == [
        o["metadata"]["name"]
        for o in cluster.kube.list(api_version="v1", kind="ConfigMap", namespace=ns, label_selector="app=x")
    ]
    assert [] == cluster.kube.list(api_version="v1", kind="ConfigMap", namespace=ns, label_selector="app=y")
    assert cluster.kube.delete(api_version="v1", kind="ConfigMap", namespace=ns, name="cfg") is True
    assert cluster.kube.delete(api_version="v1", kind="ConfigMap", namespace=ns, name="cfg") is False
    assert None is cluster.kube.get(api_version="v1", kind="ConfigMap", namespace=ns, name="cfg")


def test_pod_summary_counts_ready_pods(cluster: Cluster) -> None:
    """pod_summary sees the deployment's pods become ready."""
    cluster.kube.apply(manifests=[deployment(cluster.namespace)], field_manager=FM)
    summary = eventually(
        lambda: (
            (s := cluster.kube.pod_summary(namespace=cluster.namespace, selector="app=web")).ready == 2 and s
        )
    )
    assert isinstance(summary, PodSummary) and summary.all_ready
    assert (2, 2, 0, 0) == (summary.total, summary.ready, summary.pending, summary.crashlooping)
    assert all(p.phase == "Running" for p in summary.pods)


def test_pod_summary_crashloop_and_pending(cluster: Cluster) -> None:
    """Crashlooping and unschedulable pods are counted with their reasons and restarts."""
    control = cluster.need_control()
    ns = cluster.namespace
    control.behaviours.set("crash:1", "crashloop")
    stuck = deployment(ns, "stuck", "stuck:1", 1)
    stuck["spec"]["template"]["spec"]["nodeSelector"] = {
        "railiance.test/node": "none"
    }  # really unschedulable
    cluster.kube.apply(manifests=[deployment(ns, "crash", "crash:1", 2), stuck], field_manager=FM)
    crash = eventually(
        lambda: (
            (s := cluster.kube.pod_summary(namespace=ns, selector="app=crash")).restarts_max >= 2
            and s.crashlooping == 2
            and s
        ),
        timeout=30,
    )
    assert (2, 0, 2) == (crash.total, crash.ready, crash.crashlooping)
    assert crash.restarts_total >= crash.restarts_max >= 2
    assert {"CrashLoopBackOff"} == {p.waiting_reason for p in crash.pods}
    stuck = eventually(
        lambda: (
            (s := cluster.kube.pod_summary(namespace=ns, selector="app=stuck")).total
            and s.pods[0].waiting_reason
            and s
        )
    )
    assert (1, 0, "Unschedulable") == (stuck.pending, stuck.ready, stuck.pods[0].waiting_reason)


def test_pod_logs_are_bounded(cluster: Cluster) -> None:
    """pod_logs returns each pod's tail, at most limit_bytes."""
    control = cluster.need_control()
    ns = cluster.namespace
    control.behaviours.set(
        "chatty:1", logs=[f"line {i} Authorization: Bearer abc" for i in range(500)], namespace=ns
    )
    cluster.kube.apply(manifests=[deployment(ns, "chatty", "chatty:1", 1)], field_manager=FM)
    eventually(lambda: cluster.kube.pod_summary(namespace=ns, selector="app=chatty").ready, timeout=30)
    logs = cluster.kube.pod_logs(namespace=ns, selector="app=chatty", tail_lines=3, limit_bytes=1000)
    (text,) = logs.values()
    assert text.startswith("line 497") and 3 == text.count("\n")
    (short,) = cluster.kube.pod_logs(namespace=ns, selector="app=chatty", limit_bytes=10).values()
    assert 10 == len(short)


def test_events_about_an_object(cluster: Cluster) -> None:
    """events lists plain dicts, filtered by involved object."""
    cluster.kube.apply(manifests=[deployment(cluster.namespace)], field_manager=FM)
    events = eventually(lambda: cluster.kube.events(namespace=cluster.namespace, involved_name="web"))
    assert "ScalingReplicaSet" in {e["reason"] for e in events}
    assert {"type", "reason", "message", "count", "object", "last_seen"} == set(events[0])


def test_ingress_read_write_and_class(cluster: Cluster) -> None:
    """write_ingress applies, read_ingress reads back (None when missing); ingress_class_exists."""
    ns = cluster.namespace
    assert None is cluster.kube.read_ingress(namespace=ns, name="web")
    written = cluster.kube.write_ingress(ingress=ingress(ns), field_manager=FM)
    assert "web.test" == written["spec"]["rules"][0]["host"]
    got = cluster.kube.read_ingress(namespace=ns, name="web")
    assert got is not None and got["metadata"]["uid"] == written["metadata"]["uid"]
    assert cluster.kube.ingress_class_exists(name="no-such-class-" + uuid.uuid4().hex[:6]) is False
    if cluster.control is not None:
        name = f"nginx-{ns}"
        cluster.control.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": name},
                "spec": {"controller": "k8s.io/ingress-nginx"},
            }
        )
        assert cluster.kube.ingress_class_exists(name=name) is True


def test_httproute_and_gateway_api_discovery(cluster: Cluster) -> None:
    """has_api follows discovery; without Gateway API, HTTPRoute calls raise AdapterNotFound."""
    control = cluster.need_control()
    ns = cluster.namespace
    assert cluster.kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute") is True
    assert cluster.kube.has_api(group="apps", version="v1", kind="Deployment") is True
    route = {
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 90},
                        {"name": "web-canary", "port": 80, "weight": 10},
                    ]
                }
            ]
        },
    }
    assert (
        10
        == cluster.kube.write_httproute(route=route, field_manager=FM)["spec"]["rules"][0]["backendRefs"][1][
            "weight"
        ]
    )
    assert cluster.kube.read_httproute(namespace=ns, name="web") is not None
    control.set_gateway_api(False)  # reinstalled by the next test's reset
    assert (
        Kube(cluster.kube.api).has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute")
        is False
    )
    with pytest.raises(AdapterNotFound, match="does not serve HTTPRoute"):
        Kube(cluster.kube.api).read_httproute(namespace=ns, name="web")


def test_secret_exists_never_returns_data(cluster: Cluster) -> None:
    """secret_exists is a bool; the secret's data is not part of the answer."""
    ns = cluster.namespace
    cluster.kube.apply(
        manifests=[
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": ns},
                "stringData": {"password": "hunter2"},
            }
        ],
        field_manager=FM,
    )
    assert cluster.kube.secret_exists(namespace=ns, name="db") is True
    assert cluster.kube.secret_exists(namespace=ns, name="nope") is False


def test_service_proxy_get(cluster: Cluster) -> None:
    """Answers of the Service's ready pods come back through the API server's proxy as (status, text);
    a missing service raises AdapterNotFound."""
    cluster.need_control()
    ns = cluster.namespace
    web = deployment(ns, "web", "web:1", 1)
    pod = web["spec"]["template"]
    pod["metadata"]["annotations"] = {"kwok.railiance.dev/error-rate": "1"}  # the pod host answers 500
    pod["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": "http"}]},
    }
    cluster.kube.apply(manifests=[web, service], field_manager=FM)

    def healthz() -> Any:
        try:
            return cluster.kube.service_proxy_get(
                namespace=ns, service="web", port=8080, path="/healthz", timeout=2
            )
        except AdapterError:
            return None

    status, text = eventually(lambda: (h := healthz()) and h[0] == 200 and h, timeout=30)
    assert (200, "ok") == (status, text.strip())
    status, text = cluster.kube.service_proxy_get(
        namespace=ns, service="web", port=8080, path="fail", timeout=2
    )
    assert 500 == status and '"code": 500' in text
    with pytest.raises(AdapterNotFound, match='services "ghost" not found'):
        cluster.kube.service_proxy_get(namespace=ns, service="ghost", port=80, path="/", timeout=2)


def test_apply_conflict_without_force_is_kube_conflict(cluster: Cluster) -> None:
    """Another field manager's value without force is a KubeConflict naming the field."""
    cluster.kube.apply(manifests=[deployment(cluster.namespace)], field_manager="owner")
    with pytest.raises(KubeConflict, match="spec.replicas"):
        cluster.kube.apply(
            manifests=[deployment(cluster.namespace, replicas=5)], field_manager="intruder", force=False
        )
    assert (
        5
        == cluster.kube.apply(
            manifests=[deployment(cluster.namespace, replicas=5)], field_manager="intruder"
        )[0]["spec"]["replicas"]
    )


# --- errors: typed, readable, naming operation and address ---------------------------------------


def refused_address() -> str:
    """An https address nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("fault", "expected", "text"),
    [
        ({"status": 401}, AdapterAuthError, "HTTP 401"),
        ({"status": 403}, AdapterAuthError, "HTTP 403"),
        ({"status": 404}, AdapterNotFound, "injected fault"),
        ({"status": 409}, KubeConflict, "injected fault"),
        ({"status": 422}, KubeInvalid, "injected fault"),
        ({"status": 500}, AdapterUnavailable, "HTTP 500"),
        ({"latency": 1.5}, AdapterTimeout, "no answer within 0.3s"),
        ({"drop": True}, AdapterUnavailable, "connection"),
        ("refused", AdapterUnavailable, "cannot connect"),
    ],
)
def test_errors_are_typed_and_readable(
    kube_cluster: KubeCluster, kube_api_client: Any, fault: Any, expected: type[AdapterError], text: str
) -> None:
    """Each failure of ``list`` is the documented error type, naming kubernetes, the operation and address."""
    kube = Kube(kube_api_client, timeout=0.3)
    if fault == "refused":
        config = kubernetes.client.Configuration()
        config.host = refused_address()
        kube = Kube(kubernetes.client.ApiClient(config), timeout=0.3)
        kube._resources["apps/v1"] = Kube(kube_api_client)._served(
            "apps/v1"
        )  # discovery known; the list fails
    else:
        kube._served("apps/v1")
        kube_cluster.faults.add(r"/deployments$", **fault)
    with pytest.raises(expected) as err:
        kube.list(api_version="apps/v1", kind="Deployment", namespace="default")
    message = str(err.value)
    assert message.startswith(f"kubernetes list Deployment failed at {kube.address}: ")
    assert text in message
    assert (err.value.system, err.value.operation) == ("kubernetes", "list Deployment")
    assert isinstance(err.value.__cause__, BaseException)


def test_unserved_kind_is_adapter_not_found(cluster: Cluster) -> None:
    """A kind the cluster does not serve is AdapterNotFound with a hint, before any object request."""
    with pytest.raises(AdapterNotFound) as err:
        cluster.kube.get(api_version="example.com/v1", kind="Widget", namespace="default", name="w")
    assert "does not serve Widget in example.com/v1" in str(err.value) and err.value.hint
