"""Fidelity of the Kubernetes API emulator: the official client, kubectl and helm against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.kube_emulator import KubeEmulator, PodMode

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "tests" / "kube_emulator" / "testdata" / "chart"


def deployment(
    name: str = "web",
    image: str = "registry.example.test/web:1.0",
    replicas: int = 2,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A minimal valid Deployment manifest."""
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "sidecar", "image": "registry.example.test/sidecar:1"},
                    ]
                },
            },
        },
    }


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def body_of(err: ApiException) -> dict[str, Any]:
    """The JSON Status body of an API error."""
    return json.loads(err.body)  # type: ignore[no-any-return]


@pytest.fixture
def core(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api_client)


@pytest.fixture
def apps(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(kube_api_client)


@pytest.fixture
def net(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.NetworkingV1Api:
    return kubernetes.client.NetworkingV1Api(kube_api_client)


# --- the official client's typed models -----------------------------------------------------------


def test_typed_models_deserialize_every_kind(
    core: Any, apps: Any, net: Any, kube_emulator: KubeEmulator
) -> None:
    """Create, read, list and patch return typed models for every emulated built-in kind."""
    ns = core.create_namespace({"metadata": {"name": "team-a"}})
    assert ns.status.phase == "Active"
    assert core.read_namespace("team-a").metadata.labels["kubernetes.io/metadata.name"] == "team-a"
    cm = core.create_namespaced_config_map("team-a", {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    assert cm.metadata.resource_version and cm.metadata.uid and cm.metadata.creation_timestamp
    sec = core.create_namespaced_secret(
        "team-a", {"metadata": {"name": "s"}, "string_data": {"password": "x"}}
    )
    assert sec.type == "Opaque" and sec.data == {"password": "eA=="}
    svc = core.create_namespaced_service(
        "team-a",
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].protocol == "TCP"
    dep = apps.create_namespaced_deployment("team-a", deployment())
    assert dep.metadata.generation == 1 and dep.spec.strategy.type == "RollingUpdate"
    ing = net.create_namespaced_ingress(
        "team-a",
        {
            "metadata": {"name": "web"},
            "spec": {
                "rules": [
                    {
                        "host": "web.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    )
    assert ing.spec.rules[0].http.paths[0].backend.service.port.number == 80
    assert net.create_ingress_class(
        {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    )
    wait_for(lambda: core.list_namespaced_pod("team-a").items)
    for listing in (
        core.list_namespaced_pod("team-a"),
        core.list_namespaced_config_map("team-a"),
        core.list_namespaced_secret("team-a"),
        core.list_namespaced_service("team-a"),
        core.list_namespaced_event("team-a"),
        apps.list_namespaced_deployment("team-a"),
        apps.list_namespaced_replica_set("team-a"),
        net.list_namespaced_ingress("team-a"),
        net.list_ingress_class(),
        core.list_namespace(),
        core.list_pod_for_all_namespaces(),
    ):
        assert listing.metadata.resource_version and listing.items
    pod = core.list_namespaced_pod("team-a").items[0]
    assert (
        core.read_namespaced_pod(pod.metadata.name, "team-a").metadata.owner_references[0].kind
        == "ReplicaSet"
    )
    patched = apps.patch_namespaced_deployment("web", "team-a", {"spec": {"replicas": 3}})
    assert (patched.spec.replicas, patched.metadata.generation) == (3, 2)
    assert core.patch_namespaced_config_map("cfg", "team-a", {"data": {"k2": "v2"}}).data == {
        "k": "v",
        "k2": "v2",
    }
    assert net.read_namespaced_ingress("web", "team-a").status.load_balancer is not None
    assert core.delete_namespaced_config_map("cfg", "team-a") is not None


def test_list_kind_and_resource_version_are_global(core: Any) -> None:
    """Lists are ``<Kind>List`` with a metadata.resourceVersion at least as new as any item's."""
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    raw = core.list_namespaced_config_map("default", _preload_content=False)
    doc = json.loads(raw.data)
    assert doc["kind"] == "ConfigMapList"
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    assert int(doc["metadata"]["resourceVersion"]) >= int(b.metadata.resource_version)


# --- selectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front,back)", ["a", "c"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b", "d"]),
        ("app=web,tier=front", ["a"]),
    ],
)
def test_label_selectors(core: Any, selector: str, expected: list[str]) -> None:
    """Every label selector operator filters like the API server."""
    for name, labels in {
        "a": {"app": "web", "tier": "front"},
        "b": {"app": "web"},
        "c": {"app": "db", "tier": "back"},
        "d": {},
    }.items():
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
    names = [
        i.metadata.name for i in core.list_namespaced_config_map("default", label_selector=selector).items
    ]
    assert expected == names


def test_field_selectors(core: Any, kube_emulator: KubeEmulator) -> None:
    """metadata.name, metadata.namespace and status.phase field selectors filter."""
    kube_emulator.behaviours.set("stuck:1", PodMode.PENDING)
    for name, image in (("p1", "ok:1"), ("p2", "stuck:1")):
        core.create_namespaced_pod(
            "default", {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": image}]}}
        )
    wait_for(lambda: core.read_namespaced_pod("p1", "default").status.phase == "Running")
    assert ["p1"] == [
        p.metadata.name for p in core.list_namespaced_pod("default", field_selector="metadata.name=p1").items
    ]
    assert ["p2"] == [
        p.metadata.name
        for p in core.list_pod_for_all_namespaces(
            field_selector="status.phase=Pending,metadata.namespace=default"
        ).items
    ]


# --- errors shaped like the API server -----------------------------------------------------------


def test_not_found_status_shape(apps: Any) -> None:
    """404 carries the exact Status document of the API server."""
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("nope", "default")
    assert err.value.status == 404
    assert {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    } == body_of(err.value)


def test_already_exists_and_stale_resource_version_conflict(core: Any) -> None:
    """A second create is 409 AlreadyExists; a replace with a stale resourceVersion is 409 Conflict."""
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}})
    assert (409, "AlreadyExists", 'configmaps "cfg" already exists') == (
        err.value.status,
        body_of(err.value)["reason"],
        body_of(err.value)["message"],
    )
    core.patch_namespaced_config_map("cfg", "default", {"data": {"a": "2"}})
    stale = {"metadata": {"name": "cfg", "resourceVersion": cm.metadata.resource_version}, "data": {"a": "3"}}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cfg", "default", stale)
    assert 409 == err.value.status and "Conflict" == body_of(err.value)["reason"]
    assert "the object has been modified" in body_of(err.value)["message"]
    fresh = core.read_namespaced_config_map("cfg", "default")
    fresh.data = {"a": "4"}
    assert {"a": "4"} == core.replace_namespaced_config_map("cfg", "default", fresh).data


def test_invalid_deployment_is_422_with_causes(apps: Any) -> None:
    """Selector/template mismatch and a container without image are 422 Invalid with causes."""
    bad = deployment()
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("default", bad)
    body = body_of(err.value)
    assert (422, "Invalid", "Deployment") == (err.value.status, body["reason"], body["details"]["kind"])
    assert body["message"].startswith('Deployment.apps "web" is invalid: [')
    assert {"spec.template.metadata.labels", "spec.template.spec.containers[0].image"} == {
        c["field"] for c in body["details"]["causes"]
    }


def test_invalid_name_is_422(core: Any) -> None:
    """Names must be DNS-1123."""
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Not_Valid"}})
    assert "FieldValueInvalid" == body_of(err.value)["details"]["causes"][0]["reason"]


def test_missing_namespace_is_404(core: Any) -> None:
    """Creating into a namespace that does not exist is 404 for the namespace."""
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "x"}})
    assert 'namespaces "ghost" not found' == body_of(err.value)["message"]


# --- dry run, patches, server-side apply ---------------------------------------------------------


def test_dry_run_is_validated_but_not_persisted(
    apps: Any, kube_api_client: Any, kube_emulator: KubeEmulator
) -> None:
    """dryRun=All on create, patch and apply answers like a write and stores nothing."""
    created = apps.create_namespaced_deployment("default", deployment(), dry_run="All")
    assert created.metadata.uid and kube_emulator.get("deployments", "default", "web") is None
    apps.create_namespaced_deployment("default", deployment())
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}}, dry_run="All")
    assert 2 == kube_emulator.get("deployments", "default", "web")["spec"]["replicas"]  # type: ignore[index]
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("default", bad, dry_run="All")
    assert 422 == err.value.status


def apply(
    client: Any, path: str, body: dict[str, Any], manager: str, force: bool = False, dry_run: bool = False
) -> Any:
    """Server-side apply through the raw ApiClient, as kubectl and helm do it."""
    query = f"?fieldManager={manager}&force={'true' if force else 'false'}" + (
        "&dryRun=All" if dry_run else ""
    )
    headers = {
        "Content-Type": "application/apply-patch+yaml",
        "Accept": "application/json",
        **{s["key"]: s["value"] for s in client.configuration.auth_settings().values()},
    }
    resp = client.call_api(
        "PATCH", client.configuration.host + path + query, header_params=headers, body=body
    )
    resp.read()
    if resp.status >= 400:
        err = ApiException(status=resp.status, reason=resp.reason)
        err.body = resp.data.decode()
        raise err
    return resp.status, json.loads(resp.data)


DEP_PATH = "/apis/apps/v1/namespaces/default/deployments/web"


def test_server_side_apply_records_managers_and_conflicts(
    kube_api_client: Any, kube_emulator: KubeEmulator
) -> None:
    """Apply creates then merges; managedFields name the manager; another manager changing an owned
    field conflicts (409) unless forced; fields a manager stops applying are removed."""
    status, obj = apply(kube_api_client, DEP_PATH, deployment(), "deployer")
    assert 201 == status
    assert [("deployer", "Apply")] == [
        (m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]
    ]
    assert "f:replicas" in obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    status, _ = apply(kube_api_client, DEP_PATH, deployment(), "deployer", dry_run=True)
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 5},
    }
    with pytest.raises(ApiException) as err:
        apply(kube_api_client, DEP_PATH, other, "scaler")
    body = body_of(err.value)
    assert (409, "Conflict") == (err.value.status, body["reason"])
    assert body["message"].startswith(
        'Apply failed with 1 conflict: conflict with "deployer" using apps/v1: .spec.replicas'
    )
    _, forced = apply(kube_api_client, DEP_PATH, other, "scaler", force=True)
    assert 5 == forced["spec"]["replicas"]
    smaller = deployment()
    del smaller["metadata"]["labels"], smaller["spec"]["replicas"]
    smaller["spec"]["template"]["spec"]["containers"] = smaller["spec"]["template"]["spec"]["containers"][:1]
    _, after = apply(kube_api_client, DEP_PATH, smaller, "deployer")
    assert ["web"] == [c["name"] for c in after["spec"]["template"]["spec"]["containers"]]
    assert "labels" not in after["metadata"] and 5 == after["spec"]["replicas"]


def test_strategic_merge_patch_merges_containers_by_name(apps: Any) -> None:
    """A strategic merge patch of one container keeps the others and merges env by name."""
    apps.create_namespaced_deployment("default", deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example.test/web:2.0",
                            "env": [{"name": "B", "value": "2"}],
                        }
                    ]
                }
            }
        }
    }
    out = apps.patch_namespaced_deployment("web", "default", patch)
    containers = {c.name: c for c in out.spec.template.spec.containers}
    assert ["web", "sidecar"] == [c.name for c in out.spec.template.spec.containers]
    assert "registry.example.test/web:2.0" == containers["web"].image
    assert [("A", "1"), ("B", "2")] == [(e.name, e.value) for e in containers["web"].env]


def test_merge_and_json_patch(kube_api_client: Any, core: Any) -> None:
    """merge-patch+json replaces lists; json-patch+json applies operations; a failed test op is 422."""
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"x": "1"}}
    )
    headers = {s["key"]: s["value"] for s in kube_api_client.configuration.auth_settings().values()}
    url = kube_api_client.configuration.host + "/api/v1/namespaces/default/configmaps/cfg"
    for ctype, body in (
        ("application/merge-patch+json", {"metadata": {"labels": {"a": None, "b": "2"}}}),
        (
            "application/json-patch+json",
            [{"op": "add", "path": "/data/y", "value": "2"}, {"op": "remove", "path": "/data/x"}],
        ),
    ):
        r = kube_api_client.call_api(
            "PATCH", url, header_params={**headers, "Content-Type": ctype}, body=body
        )
        r.read()
        assert 200 == r.status
    cm = core.read_namespaced_config_map("cfg", "default")
    assert ({"b": "2"}, {"y": "2"}) == (cm.metadata.labels, cm.data)
    r = kube_api_client.call_api(
        "PATCH",
        url,
        header_params={**headers, "Content-Type": "application/json-patch+json"},
        body=[{"op": "test", "path": "/data/y", "value": "nope"}],
    )
    r.read()
    assert 422 == r.status


# --- controller, behaviours, logs ----------------------------------------------------------------


def test_controller_creates_ready_pods_and_deployment_status(apps: Any, core: Any) -> None:
    """Pods named <deploy>-<hash>-<rand>, owned by a ReplicaSet, labelled with pod-template-hash, ready."""
    apps.create_namespaced_deployment("default", deployment(replicas=3))
    dep = wait_for(
        lambda: (d := apps.read_namespaced_deployment("web", "default")).status.ready_replicas == 3 and d
    )
    assert (3, 3, 3, 1) == (
        dep.status.replicas,
        dep.status.updated_replicas,
        dep.status.available_replicas,
        dep.status.observed_generation,
    )
    assert {"Available": "True", "Progressing": "True"} == {c.type: c.status for c in dep.status.conditions}
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    rs = apps.list_namespaced_replica_set("default").items[0]
    phash = rs.metadata.labels["pod-template-hash"]
    assert all(
        p.metadata.name.startswith(f"web-{phash}-")
        and p.metadata.labels["pod-template-hash"] == phash
        and p.metadata.owner_references[0].name == rs.metadata.name
        for p in pods
    )
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 1}})
    wait_for(lambda: len(core.list_namespaced_pod("default", label_selector="app=web").items) == 1)


def test_crashloop_increments_restarts(apps: Any, core: Any, kube_emulator: KubeEmulator) -> None:
    """A crashlooping image is Running, never Ready, CrashLoopBackOff, with restarts growing."""
    kube_emulator.behaviours.set("registry.example.test/web", PodMode.CRASHLOOP, restart_interval=0.2)
    apps.create_namespaced_deployment("default", deployment(replicas=1))
    pod = wait_for(
        lambda: [
            p
            for p in core.list_namespaced_pod("default").items
            if p.status.container_statuses and p.status.container_statuses[0].restart_count >= 2
        ]
    )[0]
    cs = pod.status.container_statuses[0]
    assert ("Running", False, "CrashLoopBackOff") == (pod.status.phase, cs.ready, cs.state.waiting.reason)
    dep = apps.read_namespaced_deployment("web", "default")
    assert dep.status.ready_replicas is None and dep.status.unavailable_replicas == 1


def test_slow_readiness_and_pending(core: Any, kube_emulator: KubeEmulator) -> None:
    """ready_after delays readiness; pending pods are unschedulable."""
    kube_emulator.behaviours.set("slow:1", ready_after=0.6)
    kube_emulator.behaviours.set("stuck:1", PodMode.PENDING)
    for name, image in (("slow", "slow:1"), ("stuck", "stuck:1")):
        core.create_namespaced_pod(
            "default", {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": image}]}}
        )
    first = wait_for(
        lambda: (p := core.read_namespaced_pod("slow", "default")).status.phase == "Running" and p
    )
    assert first.status.container_statuses[0].ready is False
    wait_for(lambda: core.read_namespaced_pod("slow", "default").status.container_statuses[0].ready)
    stuck = core.read_namespaced_pod("stuck", "default")
    assert ("Pending", "Unschedulable") == (stuck.status.phase, stuck.status.conditions[0].reason)


def test_logs_scripted_tail_and_limit(core: Any, kube_emulator: KubeEmulator) -> None:
    """Pod logs come from the behaviour registry, bounded by tailLines and limitBytes."""
    kube_emulator.behaviours.set("app:1", logs=["one", "two", "three"])
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}
    )
    assert (
        "two\nthree\n"
        == core.read_namespaced_pod_log("p", "default", tail_lines=2, _preload_content=False).data.decode()
    )
    assert (
        "one\ntw"
        == core.read_namespaced_pod_log("p", "default", limit_bytes=6, _preload_content=False).data.decode()
    )
    kube_emulator.behaviours.set_pod_logs("default", "p", ["GET /api 401 Unauthorized"])
    assert "401" in core.read_namespaced_pod_log("p", "default", _preload_content=False).data.decode()


def test_watch_streams_added_and_modified(core: Any) -> None:
    """``?watch=true`` streams ADDED then MODIFIED events as JSON lines (official Watch helper)."""
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def consume() -> None:
        w = kubernetes.watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.3)
    core.create_namespaced_config_map("default", {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", "default", {"data": {"a": "1"}})
    assert done.wait(5)
    assert [("ADDED", "w"), ("MODIFIED", "w")] == seen


def test_namespace_deletion_takes_its_contents(core: Any, kube_emulator: KubeEmulator) -> None:
    """Deleting a namespace answers it Terminating and removes what it held."""
    core.create_namespace({"metadata": {"name": "gone"}})
    core.create_namespaced_config_map("gone", {"metadata": {"name": "cfg"}})
    answer = core.delete_namespace("gone")
    assert "Terminating" == (answer["status"]["phase"] if isinstance(answer, dict) else answer.status.phase)
    assert [] == kube_emulator.list("configmaps", "gone")


# --- faults, auth, proxy, discovery --------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 401, 403])
def test_fault_status(core: Any, kube_emulator: KubeEmulator, status: int) -> None:
    """An injected status answers with a Status body of that code."""
    kube_emulator.faults.add(r"/configmaps$", status=status)
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default")
    assert (status, "Status") == (err.value.status, body_of(err.value)["kind"])


def test_fault_latency_and_drop(core: Any, kube_emulator: KubeEmulator) -> None:
    """Latency delays the answer; a dropped connection gives no HTTP answer at all."""
    kube_emulator.faults.add(r"/configmaps$", latency=0.3, times=1)
    started = time.monotonic()
    core.list_namespaced_config_map("default")
    assert time.monotonic() - started >= 0.3
    kube_emulator.faults.add(r"/secrets$", drop=True)
    with pytest.raises(Exception) as err:
        core.list_namespaced_secret("default", _request_timeout=2)
    assert not isinstance(err.value, ApiException) or err.value.status == 0


def test_requests_without_token_are_401(kube_emulator: KubeEmulator) -> None:
    """A client without the bearer token gets the API server's 401 Status."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(kube_emulator.kubeconfig_path), client_configuration=config
    )
    config.api_key = {}
    with kubernetes.client.ApiClient(config) as anonymous, pytest.raises(ApiException) as err:
        kubernetes.client.CoreV1Api(anonymous).list_namespace()
    assert (401, "Unauthorized") == (err.value.status, body_of(err.value)["reason"])


@pytest.fixture
def backend() -> Iterator[str]:
    """A tiny HTTP backend answering /healthz 200 and everything else 503."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.startswith("/healthz")
            body = f"{'ok' if ok else 'down'} {self.path}".encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_service_proxy_forwards_to_registered_backend(
    core: Any, kube_emulator: KubeEmulator, backend: str
) -> None:
    """services/<name>:<port>/proxy/<path> reaches the backend; no backend is 503; no service is 404."""
    core.create_namespaced_service(
        "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    kube_emulator.register_service_backend("default", "web", 80, backend)
    out = core.connect_get_namespaced_service_proxy_with_path(
        "web:80", "default", "healthz", _preload_content=False
    )
    assert "ok /healthz" == out.data.decode()
    with pytest.raises(ApiException) as err:
        core.connect_get_namespaced_service_proxy_with_path("web:80", "default", "ready")
    assert 503 == err.value.status
    core.create_namespaced_service(
        "default", {"metadata": {"name": "api"}, "spec": {"ports": [{"port": 80}]}}
    )
    with pytest.raises(ApiException) as err:
        core.connect_get_namespaced_service_proxy_with_path("api:80", "default", "healthz")
    assert 'no endpoints available for service "api"' == body_of(err.value)["message"]


def test_gateway_api_toggle(kube_api_client: Any, kube_emulator: KubeEmulator) -> None:
    """The Gateway API group is discoverable until a test removes it."""
    apis = kubernetes.client.ApisApi(kube_api_client)
    assert "gateway.networking.k8s.io" in [g.name for g in apis.get_api_versions().groups]
    kube_emulator.set_gateway_api(False)
    assert "gateway.networking.k8s.io" not in [g.name for g in apis.get_api_versions().groups]
    assert None is kube_emulator.get("customresourcedefinitions", "", "httproutes.gateway.networking.k8s.io")


# --- real tools ----------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of kubectl or helm (repo .venv/bin first), or skip."""
    found = shutil.which(name, path=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip(f"{name} not installed (run ./scripts/bootstrap)")
    return found


def run(args: list[str], kube_emulator: KubeEmulator, tmp_path: Path) -> str:
    """Run a tool against the emulator; fail with its output when it fails."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kube_emulator.kubeconfig_path),
        "HELM_CACHE_HOME": str(tmp_path / "hc"),
        "HELM_CONFIG_HOME": str(tmp_path / "hcfg"),
        "HELM_DATA_HOME": str(tmp_path / "hd"),
    }
    if Path(args[0]).name == "kubectl":
        args = [*args, f"--cache-dir={tmp_path / 'kcache'}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert 0 == done.returncode, f"{args} failed:\n{done.stdout}\n{done.stderr}\n" + "\n".join(
        kube_emulator.paths()[-20:]
    )
    return done.stdout


def test_kubectl_server_side_apply_and_get(kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    """``kubectl apply --server-side -f``, ``kubectl get -l`` and ``kubectl get pods -o json`` work."""
    kubectl = tool("kubectl")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        json.dumps(deployment())
        + "\n---\n"
        + json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}}
        )
    )
    out = run([kubectl, "apply", "--server-side", "-f", str(manifest)], kube_emulator, tmp_path)
    assert "deployment.apps/web serverside-applied" in out
    managers = kube_emulator.get("deployments", "default", "web")["metadata"]["managedFields"]  # type: ignore[index]
    assert [("kubectl", "Apply")] == [(m["manager"], m["operation"]) for m in managers]
    assert "configmap/cfg" in run(
        [kubectl, "get", "cm", "-l", "app=web", "-o", "name"], kube_emulator, tmp_path
    )
    wait_for(lambda: len(kube_emulator.list("pods", "default", "app=web")) == 2)
    pods = json.loads(run([kubectl, "get", "pods", "-l", "app=web", "-o", "json"], kube_emulator, tmp_path))
    assert 2 == len(pods["items"]) and all(p["status"]["phase"] == "Running" for p in pods["items"])


def test_helm_release_lifecycle(kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    """helm install --wait, upgrade, history, rollback, status and uninstall of the test chart."""
    helm = tool("helm")
    run([helm, "install", "hello", str(CHART), "--wait", "--timeout", "60s"], kube_emulator, tmp_path)
    secrets = kube_emulator.list("secrets", "default", "owner=helm,name=hello")
    assert [("sh.helm.release.v1.hello.v1", "helm.sh/release.v1", "deployed")] == [
        (s["metadata"]["name"], s["type"], s["metadata"]["labels"]["status"]) for s in secrets
    ]
    run(
        [helm, "upgrade", "hello", str(CHART), "--set", "replicas=3", "--wait", "--timeout", "60s"],
        kube_emulator,
        tmp_path,
    )
    assert 3 == kube_emulator.get("deployments", "default", "hello")["spec"]["replicas"]  # type: ignore[index]
    history = json.loads(run([helm, "history", "hello", "-o", "json"], kube_emulator, tmp_path))
    assert [(1, "superseded"), (2, "deployed")] == [(h["revision"], h["status"]) for h in history]
    run([helm, "rollback", "hello", "1", "--wait", "--timeout", "60s"], kube_emulator, tmp_path)
    assert 2 == kube_emulator.get("deployments", "default", "hello")["spec"]["replicas"]  # type: ignore[index]
    status = json.loads(run([helm, "status", "hello", "-o", "json"], kube_emulator, tmp_path))
    assert (3, "deployed") == (status["version"], status["info"]["status"])
    run([helm, "uninstall", "hello", "--wait"], kube_emulator, tmp_path)
    assert [] == kube_emulator.list("deployments", "default") == kube_emulator.list("pods", "default")
    assert [] == kube_emulator.list("secrets", "default", "owner=helm")
