"""The project's Kubernetes adapter (``railiance_ledger.adapters.kube.Kube``) against the real
control plane: what Stage 2/3 read (pod summaries, logs, the Service proxy health probe, discovery,
server-side apply) comes from a real apiserver, kube-controller-manager, scheduler and kwok.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from railiance_ledger.adapters.kube import Kube
from tests.harness import wait_until
from tests.harness.kube_real import ControlPlane
from tests.test_control_plane import BEHAVIOUR, deployment
from tests.test_control_plane_traffic import service, track_deployment


@pytest.fixture
def kube(real_kube: ControlPlane) -> Iterator[Kube]:
    """The production adapter from the control plane's kubeconfig."""
    adapter = Kube.from_kubeconfig(str(real_kube.kubeconfig_path), "railiance-test")
    yield adapter
    adapter.api.close()


def test_discovery_and_version(kube: Kube) -> None:
    assert kube.server_version()["gitVersion"] == "v1.35.4"
    assert kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute")
    assert not kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="NoSuchKind")


def test_apply_dry_run_and_pod_summary_per_behaviour(kube: Kube, real_kube_namespace: str) -> None:
    ns = real_kube_namespace
    manifests = []
    for name, behaviour in (("ok", None), ("crash", "crashloop"), ("pull", "image-pull-error")):
        dep = deployment(name, replicas=2, annotations={BEHAVIOUR: behaviour} if behaviour else {})
        dep["metadata"]["namespace"] = ns
        manifests.append(dep)
    dry = kube.dry_run_apply(manifests=manifests, field_manager="railiance-test")
    assert [d["metadata"]["name"] for d in dry] == ["ok", "crash", "pull"]
    assert kube.get(api_version="apps/v1", kind="Deployment", namespace=ns, name="ok") is None
    kube.apply(manifests=manifests, field_manager="railiance-test")

    wait_until(
        lambda: kube.pod_summary(namespace=ns, selector="app=ok").ready == 2, timeout=30, what="ok ready"
    )
    wait_until(
        lambda: kube.pod_summary(namespace=ns, selector="app=crash").crashlooping >= 1,
        timeout=30,
        what="crash CrashLoopBackOff",
    )
    wait_until(
        lambda: all(
            p.waiting_reason == "ImagePullBackOff"
            for p in kube.pod_summary(namespace=ns, selector="app=pull").pods
        ),
        timeout=30,
        what="pull ImagePullBackOff",
    )
    crash = kube.pod_summary(namespace=ns, selector="app=crash")
    assert crash.ready == 0 and crash.restarts_max >= 1
    pull = kube.pod_summary(namespace=ns, selector="app=pull")
    assert pull.pending == pull.total >= 2 and pull.ready == 0


def test_service_proxy_health_and_logs(kube: Kube, real_kube: ControlPlane, real_kube_namespace: str) -> None:
    if real_kube.network is None:
        pytest.skip(f"needs the test network: {real_kube.network_error}")
    ns = real_kube_namespace
    objs = [
        track_deployment("stable", "stable"),
        track_deployment("canary", "canary", behaviour="never-ready"),
        service("stable", {"app": "stable"}),
        service("canary", {"app": "canary"}),
    ]
    for obj in objs:
        obj["metadata"]["namespace"] = ns
    kube.apply(manifests=objs, field_manager="railiance-test")
    wait_until(
        lambda: (
            kube.service_proxy_get(namespace=ns, service="stable", port="http", path="/healthz")[0] == 200
        ),
        timeout=40,
        what="stable healthy through the proxy",
    )
    status, body = kube.service_proxy_get(namespace=ns, service="stable", port=80, path="/healthz")
    assert (status, body) == (200, "ok\n")
    # The canary's only pod never becomes ready: the apiserver has no endpoint to send to.
    status, body = kube.service_proxy_get(namespace=ns, service="canary", port=80, path="/healthz")
    assert status == 503 and "no endpoints available" in body

    names = [p.name for p in kube.pod_summary(namespace=ns, selector="app=stable").pods]
    real_kube.set_logs(ns, ["GET / 200", "auth failed: 401", "GET / 200"], pods=names)
    logs = kube.pod_logs(namespace=ns, selector="app=stable", tail_lines=2)
    assert logs == {names[0]: "auth failed: 401\nGET / 200\n"}
