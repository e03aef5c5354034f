"""Acting on a workload through Dagster (issue 11): the sensors refuse a ledger that does not verify,
and the rollback job refuses a workload whose lease another action holds."""

from __future__ import annotations

import pytest

pytest.importorskip("dagster")

from dagster import SkipReason

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.lifecycle.actions import acting
from sensors import canary_guard_sensor, ledger_mirror_sensor, stage_gate_sensor
from tests.fixtures.dagster import DagsterEnv
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
