"""Acting on a workload through Dagster (issue 11): the sensors refuse a ledger that does not verify,
the rollback job refuses a workload whose lease another action holds, and the stage assets refuse a
workload blocked by an incomplete rollback (until a rollback completes)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("dagster")

from dagster import SkipReason

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.lifecycle.actions import acting
from sensors import canary_guard_sensor, ledger_mirror_sensor, stage_gate_sensor
from tests.fixtures.dagster import DagsterEnv, closed_port_url
from tests.fixtures.ledger import digest_of, registered, stage_result, stage_started
from tests.test_actions import tamper

W = "hello-web"


def _seed(env: DagsterEnv) -> None:
    store = env.store()
    try:
        d = digest_of("v1")
        store.append([registered(W, d), stage_started(W, d, 1), stage_result(W, d, 1)])
        store.append([NewEvent(stream=W, kind=EventKind.NOTE_POSTED, actor="hub", payload={"i": 1})])
    finally:
        store.close()


def test_sensors_refuse_to_act_on_a_ledger_that_does_not_verify(dagster_env: DagsterEnv) -> None:
    _seed(dagster_env)
    store = dagster_env.store()
    try:
        tamper(store, "UPDATE events SET payload = :v WHERE seq = 3", {"v": '{"status":"pass"}'})
    finally:
        store.close()
    for sensor in (stage_gate_sensor, canary_guard_sensor, ledger_mirror_sensor):
        result = dagster_env.tick(sensor)
        assert isinstance(result, SkipReason), sensor
        assert "does not verify" in (result.skip_message or "") and "seq 3" in (result.skip_message or "")


def test_the_rollback_job_refuses_a_workload_whose_lease_is_held(dagster_env: DagsterEnv) -> None:
    from definitions import build_definitions

    _seed(dagster_env)
    store = dagster_env.store()
    try:
        with acting(store, W, "promote", "carol") as act:
            before = store.count()
            job = build_definitions(dagster_env.resources()).get_job_def("rollback")
            result = job.execute_in_process(
                instance=dagster_env.instance,
                run_config={"ops": {"rollback_workload": {"config": {"workload": W, "reason": "latency"}}}},
                raise_on_error=False,
            )
            assert not result.success
            failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
            assert act.lease.holder in str(failure.event_specific_data)
            assert store.count() == before
    finally:
        store.close()


UNREACHABLE_KUBECONFIG = """apiVersion: v1
kind: Config
current-context: nowhere
clusters:
- name: nowhere
  cluster:
    server: "{url}"
users:
- name: nowhere
  user:
    token: t
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: nowhere
"""


def test_the_stage_assets_refuse_a_workload_blocked_by_an_incomplete_rollback(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    from dagster import materialize

    from assets.resources import KubeResource
    from assets.stages import stage2_canary, stage3_promotion
    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.lifecycle.actions import action_state
    from sensors import new_digest_sensor

    digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    dagster_env.tick(new_digest_sensor)
    key = partition_key(W, digest)
    store = dagster_env.store()
    try:
        store.append(
            [
                NewEvent(
                    stream=W,
                    kind=EventKind.ROLLBACK_INCOMPLETE,
                    actor="alice",
                    candidate=digest,
                    stage=2,
                    payload={
                        "reason": "the canary could not be removed completely",
                        "remaining_cleanup": ["FAILED helm uninstall hello-web-canary: injected"],
                        "manual_command": "helm uninstall hello-web-canary --namespace hello-web",
                    },
                )
            ]
        )
        blocker = action_state(store, W).blocker
        assert blocker is not None
        before = store.count()
        # A kubeconfig that loads but names a cluster nobody answers: refusing must come first.
        kubeconfig = dagster_env.tmp_path / "unreachable-kubeconfig"
        kubeconfig.write_text(UNREACHABLE_KUBECONFIG.format(url=closed_port_url()))
        resources = dagster_env.resources(kube=KubeResource(kubeconfig=str(kubeconfig)))
        for asset in (stage2_canary, stage3_promotion):
            result = materialize(
                [asset],
                partition_key=key,
                resources=resources,
                instance=dagster_env.instance,
                raise_on_error=False,
            )
            assert not result.success, asset
            logged = [
                e.dagster_event for e in dagster_env.instance.all_logs(result.run_id) if e.dagster_event
            ]
            failure = next(e for e in logged if e.event_type_value == "STEP_FAILURE")
            text = str(failure.event_specific_data)
            assert "incomplete rollback" in text and f"seq {blocker.seq}" in text, text
        assert store.count() == before  # refused before anything was recorded, not even a lease
    finally:
        store.close()
