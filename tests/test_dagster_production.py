"""The ``production`` asset, red/green truth and partition retention, through the mirror sensor against a
real Dagster instance and a real SQLite ledger.

- after v1 -> v2 -> v3 -> rollback the production view names v2 stable (since its promotion) and v1 the
  rollback target, with the last rollback and its reason; v3's Stage 3 turns red (``not_rolled_back``);
- a failed Stage 1 recorded outside Dagster is an observation with red gates, never a materialization;
- a declared ``[[local_checks]]`` is an asset check of ``stage1_validation``;
- ``recorded_at``, ``operator``, ``approved_by`` and ``reason`` are top-level metadata;
- retention keeps the newest N candidates per workload plus every stable and the rollback target;
- the gate and mirror sensors never list the partitions (they look keys up one by one).
"""

from __future__ import annotations

import re
from typing import Any

from dagster import AssetKey, AssetPartitionStatus, SensorResult, materialize

from assets.stages import stage3_promotion
from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.ledger.projections import partition_key
from sensors import ledger_mirror_sensor, stage_gate_sensor
from tests.fixtures.dagster import ROLLBACK_REASON, DagsterEnv, seed_rollback_story
from tests.fixtures.ledger import digest_of, registered, stage_result


def _seed(env: DagsterEnv, stream: str = "hello-web") -> dict[str, str]:
    store = env.store()
    try:
        return seed_rollback_story(store, stream)
    finally:
        store.close()


def _status(env: DagsterEnv, key: str) -> Any:
    from assets.candidates import candidates_partitions

    found = env.instance.get_status_by_partition(AssetKey("stage3_promotion"), [key], candidates_partitions)
    return (found or {}).get(key)


def _by(result: Any, kind: str, asset: str, partition: str | None = None) -> list[Any]:
    return [
        e
        for e in result.asset_events
        if type(e).__name__ == kind
        and e.asset_key == AssetKey(asset)
        and (partition is None or e.partition == partition)
    ]


def test_production_names_stable_target_and_last_rollback_after_v3_is_rolled_back(
    dagster_env: DagsterEnv,
) -> None:
    digests = _seed(dagster_env)
    result = dagster_env.tick(ledger_mirror_sensor, persist=True)
    assert isinstance(result, SensorResult)

    [prod] = _by(result, "AssetMaterialization", "production", "hello-web")
    meta = {k: getattr(v, "value", v) for k, v in prod.metadata.items()}
    assert (digests["v2"], digests["v1"]) == (meta["stable"], meta["rollback_target"])
    assert ROLLBACK_REASON == meta["last_rollback_reason"]
    assert meta["last_rollback"].startswith(f"{digests['v3']} -> {digests['v2']} at ")
    assert "alice" == meta["approved_by"] and "none" == meta["open_canary"]
    store = dagster_env.store()
    try:
        v2_promotion = next(
            e
            for e in store.read_stream("hello-web")
            if e.kind == EventKind.PROMOTION_COMPLETED and e.candidate == digests["v2"]
        )
    finally:
        store.close()
    assert v2_promotion.recorded_at == meta["stable_since"]
    assert "hello-web" in dagster_env.instance.get_dynamic_partitions("workloads")

    # v3's Stage 3 is red with the rollback's reason; v1 and v2 have no rollback check against them
    v3 = partition_key("hello-web", digests["v3"])
    rolled = [
        e
        for e in result.asset_events
        if type(e).__name__ == "AssetCheckEvaluation" and e.check_name == "not_rolled_back"
    ]
    assert [(v3, False)] == [(e.partition, e.passed) for e in rolled]
    assert ROLLBACK_REASON in rolled[0].description
    assert AssetKey("stage3_promotion") == rolled[0].asset_key

    # ... and its partition is Failed in Dagster's own terms: the mirror requests a `promote` run with
    # record_rollback, which promotes nothing and fails with the ledger's reason
    assert [(v3, "promote", True)] == [
        (r.partition_key, r.job_name, r.run_config["ops"]["stage3_promotion"]["config"]["record_rollback"])
        for r in result.run_requests
    ]
    assert AssetPartitionStatus.MATERIALIZED == _status(dagster_env, v3)
    run = materialize(
        [stage3_promotion],
        partition_key=v3,
        run_config=result.run_requests[0].run_config,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
        raise_on_error=False,
    )
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert ROLLBACK_REASON in str(failure.event_specific_data.error.message)
    assert AssetPartitionStatus.FAILED == _status(dagster_env, v3)
    assert AssetPartitionStatus.MATERIALIZED == _status(
        dagster_env, partition_key("hello-web", digests["v2"])
    )

    # the approval's principal and the ledger's time are top-level metadata
    v2 = partition_key("hello-web", digests["v2"])
    [approval] = _by(result, "AssetMaterialization", "promotion_approval", v2)
    assert "alice" == approval.metadata["approved_by"].value
    assert "alice" == approval.metadata["operator"].value
    assert approval.metadata["recorded_at"].value.startswith("20")
    assert "recorded_at_ts" in approval.metadata
    [rollback_obs] = _by(result, "AssetObservation", "stage3_promotion", v3)
    assert ROLLBACK_REASON == rollback_obs.metadata["reason"].value
    assert "carol" == rollback_obs.metadata["operator"].value

    # the same view again is not reported twice; a new event refreshes it
    again = dagster_env.tick(ledger_mirror_sensor, cursor=result.cursor, persist=True)
    assert not isinstance(again, SensorResult) or not _by(again, "AssetMaterialization", "production")
    replay = dagster_env.tick(ledger_mirror_sensor, persist=True)  # no cursor: the view is already shown
    assert [] == _by(replay, "AssetMaterialization", "production")


def test_a_failed_stage1_recorded_outside_dagster_is_red_not_materialized(dagster_env: DagsterEnv) -> None:
    digest = digest_of("failing")
    store = dagster_env.store()
    try:
        store.append([registered("hello-web", digest), stage_result("hello-web", digest, 1, "fail")])
    finally:
        store.close()
    result = dagster_env.tick(ledger_mirror_sensor)
    key = partition_key("hello-web", digest)
    assert [] == _by(result, "AssetMaterialization", "stage1_validation", key)
    [obs] = _by(result, "AssetObservation", "stage1_validation", key)
    assert "fail" == obs.metadata["status"].value and obs.description.startswith("FAILED: ")
    checks = {
        e.check_name: e.passed
        for e in result.asset_events
        if type(e).__name__ == "AssetCheckEvaluation" and e.partition == key
    }
    assert {"manifests_valid": False, "local_health": False} == {
        k: v for k, v in checks.items() if k in ("manifests_valid", "local_health")
    }
    assert not any(checks.values())  # the gates the document does not report fail closed


def test_declared_local_checks_are_asset_checks_of_stage1(dagster_env: DagsterEnv) -> None:
    from railiance_ledger.lifecycle.workloads import find_workload

    declared = [lc.name for lc in find_workload(dagster_env.apps_dir, "hello-web").decl.local_checks]
    assert "unit" in declared  # hello-web declares [[local_checks]] name = "unit"
    defs = dagster_env.definitions()
    names = {key.name for checks in defs.asset_checks for key in checks.check_keys}
    assert {f"local_check_{n}" for n in declared} <= names

    # a Stage 1 document that fails only the local check: that check is red, the catalogue's are green
    digest = digest_of("local-fail")
    doc_event = stage_result("hello-web", digest, 1, "pass")
    payload = dict(doc_event.payload)
    payload["checks"] = [
        *payload["checks"],
        {"name": "local_check:unit", "status": "fail", "reason": "exit 1: 3 tests failed", "evidence": []},
    ]
    payload["status"] = "fail"
    store = dagster_env.store()
    try:
        store.append(
            [
                registered("hello-web", digest),
                NewEvent(
                    stream="hello-web",
                    kind=EventKind.STAGE_COMPLETED,
                    actor="carol",
                    candidate=digest,
                    stage=1,
                    payload=payload,
                ),
            ]
        )
    finally:
        store.close()
    result = dagster_env.tick(ledger_mirror_sensor)
    checks = {
        e.check_name: (e.passed, e.description)
        for e in result.asset_events
        if type(e).__name__ == "AssetCheckEvaluation"
    }
    assert (False, "fail: exit 1: 3 tests failed") == checks["local_check_unit"]
    assert checks["manifests_valid"][0] and checks["local_health"][0]


def test_retention_keeps_newest_n_and_every_stable_and_rollback_target(dagster_env: DagsterEnv) -> None:
    digests = _seed(dagster_env)  # v1, v2, v3 registered first; v2 stable, v1 rollback target, v3 rolled back
    first = dagster_env.tick(ledger_mirror_sensor, persist=True, ledger=_ledger(dagster_env, keep=2))
    assert isinstance(first, SensorResult)
    # three candidates, keep 2: v1 leaves the window but stays (it is the rollback target)
    keys = set(dagster_env.instance.get_dynamic_partitions("candidates"))
    assert {partition_key("hello-web", d) for d in digests.values()} == keys

    newer = [digest_of(f"newer-{i}") for i in range(4)]
    store = dagster_env.store()
    try:
        store.append([registered("hello-web", d) for d in newer])
    finally:
        store.close()
    second = dagster_env.tick(
        ledger_mirror_sensor, cursor=first.cursor, persist=True, ledger=_ledger(dagster_env, keep=2)
    )
    assert isinstance(second, SensorResult)
    keys = set(dagster_env.instance.get_dynamic_partitions("candidates"))
    # kept: the two newest, v2 (stable), v1 (rollback target), v3 (once stable); the two older newcomers
    # never get a partition (out of the window when first seen)
    assert {partition_key("hello-web", d) for d in (*newer[-2:], *digests.values())} == keys
    assert not any(
        e.partition in {partition_key("hello-web", d) for d in newer[:2]} for e in second.asset_events
    )

    # one more: the oldest kept newcomer leaves the window and its partition is deleted
    store = dagster_env.store()
    try:
        store.append([registered("hello-web", digest_of("newest"))])
    finally:
        store.close()
    third = dagster_env.tick(
        ledger_mirror_sensor, cursor=second.cursor, persist=True, ledger=_ledger(dagster_env, keep=2)
    )
    assert isinstance(third, SensorResult)
    assert [partition_key("hello-web", newer[2])] == [
        k
        for r in third.dynamic_partitions_requests or []
        if type(r).__name__.startswith("Delete")
        for k in r.partition_keys
    ]
    keys = set(dagster_env.instance.get_dynamic_partitions("candidates"))
    assert partition_key("hello-web", newer[2]) not in keys and partition_key("hello-web", newer[3]) in keys
    store = dagster_env.store()
    try:  # the ledger keeps everything
        assert 8 == sum(1 for e in store.read_stream("hello-web") if e.kind == EventKind.CANDIDATE_REGISTERED)
    finally:
        store.close()


def _ledger(env: DagsterEnv, *, keep: int) -> Any:
    from assets.resources import LedgerResource

    return LedgerResource(url=env.ledger_url, partitions_keep=keep)


def test_gate_and_mirror_ticks_never_list_the_partitions(dagster_env: DagsterEnv, monkeypatch: Any) -> None:
    """A tick looks requested keys up one by one: listing every partition fails the test."""
    from dagster import build_sensor_context

    digest = digest_of("gate")
    store = dagster_env.store()
    try:
        store.append([registered("hello-web", digest), stage_result("hello-web", digest, 1, "pass")])
    finally:
        store.close()

    def listing(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a sensor tick listed every partition")

    monkeypatch.setattr(dagster_env.instance, "get_dynamic_partitions", listing)
    results = [
        sensor(
            build_sensor_context(
                instance=dagster_env.instance,
                definitions=dagster_env.definitions(),
                resources=dagster_env.resources(),
            )
        )
        for sensor in (stage_gate_sensor, ledger_mirror_sensor)
    ]
    gate, mirror = results
    assert isinstance(gate, SensorResult) and isinstance(mirror, SensorResult)
    assert [partition_key("hello-web", digest)] == [r.partition_key for r in gate.run_requests]
    assert re.fullmatch(r'\{"seq":\d+\}', gate.cursor or "")
