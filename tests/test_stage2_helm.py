"""``adapters.helm.Helm`` release methods (Stage 2/3) with the real helm binary against the real Kubernetes
control plane: install_or_upgrade, history, get_manifest, rollback, uninstall, and their typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from railiance_ledger.adapters.helm import Helm, HelmCommandFailed, HelmReleaseNotFound
from railiance_ledger.adapters.kube import Kube
from railiance_ledger.errors import AdapterNotFound
from tests.fixtures.kube import KubeCluster
from tests.fixtures.stage2 import EXAMPLE, ClusterHelm, helm_binary, helm_env, seed_cluster

CHART = EXAMPLE / "chart"
VALUES = [CHART / "values.yaml", CHART / "values-production.yaml"]


def digest(ch: str) -> str:
    return "sha256:" + ch * 64


@pytest.fixture
def helm(kube_cluster: KubeCluster, kube_api_client: object, tmp_path: Path) -> Helm:
    seed_cluster(Kube(kube_api_client))  # type: ignore[arg-type]
    return Helm(helm_binary(), env=helm_env(kube_cluster.kubeconfig_path, tmp_path / "helm"))


def image_of(cluster: KubeCluster) -> str:
    dep = cluster.get("deployments", "hello-web", "hello-web")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_stage2_helm_release_lifecycle_against_the_control_plane(
    helm: Helm, kube_cluster: KubeCluster
) -> None:
    first = helm.install_or_upgrade(
        chart=CHART,
        release="hello-web",
        namespace="hello-web",
        values_files=VALUES,
        set_values={"image.digest": digest("a")},
        wait=True,
        timeout=30,
    )
    assert ("hello-web", "hello-web", 1, "deployed") == (
        first["name"],
        first["namespace"],
        first["version"],
        first["info"]["status"],
    )  # type: ignore[index]
    assert image_of(kube_cluster).endswith(digest("a"))
    second = helm.install_or_upgrade(
        chart=CHART,
        release="hello-web",
        namespace="hello-web",
        values_files=VALUES,
        set_values={"image.digest": digest("c")},
    )
    assert 2 == second["version"]
    assert [(1, "superseded"), (2, "deployed")] == [
        (h["revision"], h["status"]) for h in helm.history(release="hello-web", namespace="hello-web")
    ]
    assert digest("c") in helm.get_manifest(release="hello-web", namespace="hello-web")
    assert digest("a") in helm.get_manifest(release="hello-web", namespace="hello-web", revision=1)

    helm.rollback(release="hello-web", namespace="hello-web", revision=1, wait=True, timeout=30)
    history = helm.history(release="hello-web", namespace="hello-web")
    assert (3, "deployed") == (history[-1]["revision"], history[-1]["status"])
    assert image_of(kube_cluster).endswith(digest("a"))

    helm.uninstall(release="hello-web", namespace="hello-web", wait=True)
    assert [] == kube_cluster.list("deployments", "hello-web") == kube_cluster.list("services", "hello-web")
    assert [] == kube_cluster.list("secrets", "hello-web", "owner=helm")


def test_stage2_helm_unknown_release_raises_release_not_found(helm: Helm) -> None:
    for call in (
        lambda: helm.history(release="nope", namespace="hello-web"),
        lambda: helm.uninstall(release="nope", namespace="hello-web"),
        lambda: helm.rollback(release="nope", namespace="hello-web"),
        lambda: helm.get_manifest(release="nope", namespace="hello-web"),
    ):
        with pytest.raises(HelmReleaseNotFound) as info:
            call()
        assert isinstance(info.value, AdapterNotFound) and isinstance(info.value, HelmCommandFailed)
        assert 1 == info.value.exit_status and "nope" in str(info.value)


def test_stage2_helm_wait_on_crashlooping_release_fails_within_its_timeout(
    helm: Helm, kube_cluster: KubeCluster
) -> None:
    kube_cluster.behaviours.set("registry.local/railiance/hello-web", "crashloop")
    with pytest.raises(HelmCommandFailed) as info:
        helm.install_or_upgrade(
            chart=CHART, release="hello-web", namespace="hello-web", values_files=VALUES, wait=True, timeout=3
        )
    assert not isinstance(info.value, HelmReleaseNotFound)
    history = helm.history(release="hello-web", namespace="hello-web")
    assert [(1, "failed")] == [(h["revision"], h["status"]) for h in history]


def test_stage2_cluster_helm_writes_a_kubeconfig_from_the_kube_adapter(
    kube_cluster: KubeCluster, kube_api_client: object, tmp_path: Path
) -> None:
    """``ClusterHelm(kube)`` (the name the first Stage 2 fixture used) is the real helm now."""
    kube = Kube(kube_api_client)  # type: ignore[arg-type]
    seed_cluster(kube)
    helm = ClusterHelm(kube, home=tmp_path / "h")
    status = helm.install_or_upgrade(
        chart=CHART, release="hello-web", namespace="hello-web", values_files=VALUES
    )
    assert 1 == status["version"] == helm.deployed_revision(release="hello-web", namespace="hello-web")
    assert kube_cluster.list("secrets", "hello-web", "owner=helm,name=hello-web")
