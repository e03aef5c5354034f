"""The scale-out lane (docs/deploying.md) on the real control plane: a Dagster instance with
PostgreSQL run/event storage (``dagster-postgres``) and ``dagster_k8s.K8sRunLauncher`` launches a
lifecycle run of this repository's code location. Pods do not execute under kwok, so the test checks
the Job the launcher created (image, command, env, service account) and the run's events in
PostgreSQL.

``dagster-k8s`` and ``dagster-postgres`` are in the dev extra, so ``make test`` always runs it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from tests.harness import wait_until
from tests.harness.kube_real import ROOT, ControlPlane

IMAGE = "registry.test/railiance-dagster@sha256:" + "d" * 64


def _setup_namespace(cp: ControlPlane, ns: str) -> None:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "railiance-dagster"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "railiance-settings"},
            "data": {"RAILIANCE_LEDGER_URL": "postgresql+psycopg://ledger@db.test/ledger"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "railiance-credentials"},
            "data": {"DAGSTER_PG_PASSWORD": base64.b64encode(b"not-a-secret").decode()},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dagster-instance"}, "data": {}},
    ]
    with cp.client() as http:
        for obj in objs:
            plural = {"ServiceAccount": "serviceaccounts", "ConfigMap": "configmaps", "Secret": "secrets"}[
                obj["kind"]
            ]
            resp = http.post(f"/api/v1/namespaces/{ns}/{plural}", json=obj)
            assert resp.status_code == 201, resp.text


def test_k8s_run_launcher_creates_the_job_and_records_events_in_postgres(
    real_kube: ControlPlane, real_kube_namespace: str, pg_database_url: str, tmp_path: Path
) -> None:
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    ns = real_kube_namespace
    _setup_namespace(real_kube, ns)
    # dagster-postgres speaks psycopg2 (NOTIFY with a bound parameter fails on psycopg 3)
    postgres_url = pg_database_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {"postgres": {"postgres_url": postgres_url}},
                "run_launcher": {
                    "module": "dagster_k8s",
                    "class": "K8sRunLauncher",
                    "config": {
                        "service_account_name": "railiance-dagster",
                        "job_image": IMAGE,
                        "job_namespace": ns,
                        "image_pull_policy": "IfNotPresent",
                        "load_incluster_config": False,
                        "kubeconfig_file": str(real_kube.kubeconfig_path),
                        "instance_config_map": "dagster-instance",
                        "env_config_maps": ["railiance-settings"],
                        "env_secrets": ["railiance-credentials"],
                    },
                },
                "telemetry": {"enabled": False},
            }
        )
    )
    with DagsterInstance.from_config(str(home)) as instance:
        target = ModuleTarget(
            module_name="definitions", attribute=None, working_directory=str(ROOT), location_name="railiance"
        )
        with WorkspaceProcessContext(instance, target) as workspace:
            context = workspace.create_request_context()
            location = context.get_code_location("railiance")
            repository = next(iter(location.get_repositories().values()))
            remote_job = repository.get_full_job("lineage")
            run = create_run_for_test(
                instance,
                job_name="lineage",
                remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=remote_job.get_python_origin(),
                tags={"railiance/workload": "hello-web"},
            )
            instance.launch_run(run.run_id, context)

    # The Job, as the launcher built it.
    def jobs() -> list[dict[str, Any]]:
        with real_kube.client() as http:
            items: list[dict[str, Any]] = http.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]
            return items

    wait_until(lambda: len(jobs()) == 1, timeout=30, what="the run's Job")
    job = jobs()[0]
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["image"] == IMAGE
    assert pod_spec["serviceAccountName"] == "railiance-dagster"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    assert json.loads(container["args"][3])["__class__"] == "ExecuteRunArgs"
    assert {"configMapRef": {"name": "railiance-settings"}} in container["envFrom"]
    assert {"secretRef": {"name": "railiance-credentials"}} in container["envFrom"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["DAGSTER_RUN_JOB_NAME"] == "lineage"
    assert job["metadata"]["labels"]["dagster/run-id"] == run.run_id

    # The run's events are in PostgreSQL (a second instance on the same storage reads them back).
    with DagsterInstance.from_config(str(home)) as reader:
        stored = reader.get_run_by_id(run.run_id)
        assert stored is not None and stored.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
        messages = [e.message or "" for e in reader.all_logs(run.run_id)]
    assert any("Kubernetes run worker job" in m for m in messages), messages
    # kwok plays the pod: it is created, scheduled and "completes" without running anything.
    wait_until(
        lambda: (jobs()[0].get("status") or {}).get("succeeded") == 1,
        timeout=40,
        what="kwok completes the Job pod",
    )
