"""Sensors of the Dagster code location, evaluated with ``build_sensor_context(instance, definitions)``
against a real registry (docker-registry) and a real SQLite ledger."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("dagster")

from dagster import SensorResult, SkipReason

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.ledger.projections import partition_key
from sensors import canary_guard_sensor, ledger_mirror_sensor, new_digest_sensor, stage_gate_sensor
from tests.fixtures.dagster import DagsterEnv, closed_port_url
from tests.fixtures.ledger import stage_result


def registrations(env: DagsterEnv, workload: str = "hello-web") -> list[Any]:
    store = env.store()
    try:
        return [e for e in store.read_stream(workload) if e.kind == EventKind.CANDIDATE_REGISTERED]
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ new digests


def test_new_digest_registers_one_candidate_and_requests_stage1(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """A new digest under a watched tag: one candidate.registered (source sensor), one partition, one Stage 1 run."""
    digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    registry_helper.push_image(dagster_env.repository, "latest")  # not matched by image.tag_pattern

    result = dagster_env.tick(new_digest_sensor)

    assert isinstance(result, SensorResult)
    key = partition_key("hello-web", digest)
    assert [(key, f"{key}:stage1", "stage1")] == [
        (r.partition_key, r.run_key, r.job_name or "stage1") for r in result.run_requests
    ]
    regs = registrations(dagster_env)
    assert [(digest, "sensor", "v1.0.0", "dagster-sensor")] == [
        (e.candidate, e.payload["source"], e.payload["tag"], e.actor) for e in regs
    ]
    assert {"hello-web": {"v1.0.0": digest}} == json.loads(result.cursor or "{}")
    assert [key] == list(dagster_env.instance.get_dynamic_partitions("candidates"))
    [mat] = result.asset_events
    assert (["candidate"], key, str(regs[0].seq)) == (
        mat.asset_key.path,
        mat.partition,
        mat.metadata["ledger_seqs"].value,
    )


def test_same_digest_again_requests_nothing(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """The next tick with the cursor sees the same digest: no new candidate, no run request."""
    registry_helper.push_image(dagster_env.repository, "v1.0.0")
    first = dagster_env.tick(new_digest_sensor)

    second = dagster_env.tick(new_digest_sensor, cursor=first.cursor)

    assert [] == list(second.run_requests)
    assert 1 == len(registrations(dagster_env))
    assert first.cursor == second.cursor


def test_same_digest_without_cursor_is_not_registered_twice(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """A lost cursor re-reads every tag; registration is idempotent, so nothing is requested again."""
    registry_helper.push_image(dagster_env.repository, "v1.0.0")
    dagster_env.tick(new_digest_sensor)

    again = dagster_env.tick(new_digest_sensor, cursor=None)

    assert ([], 1) == (list(again.run_requests), len(registrations(dagster_env)))


def test_moved_tag_gives_new_candidate(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """Moving a watched tag to a new image registers the new digest and requests its Stage 1."""
    first_digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    first = dagster_env.tick(new_digest_sensor)
    moved = registry_helper.move_tag(dagster_env.repository, "v1.0.0")

    second = dagster_env.tick(new_digest_sensor, cursor=first.cursor)

    assert moved != first_digest
    assert [partition_key("hello-web", moved)] == [r.partition_key for r in second.run_requests]
    assert [first_digest, moved] == [e.candidate for e in registrations(dagster_env)]
    assert {"hello-web": {"v1.0.0": moved}} == json.loads(second.cursor or "{}")


def test_two_tags_one_digest_give_one_candidate(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """Two watched tags on the same manifest are one candidate and one Stage 1 run."""
    digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    registry_helper.move_tag(dagster_env.repository, "v1.0.1", digest)

    result = dagster_env.tick(new_digest_sensor)

    assert [partition_key("hello-web", digest)] == [r.partition_key for r in result.run_requests]
    assert 1 == len(registrations(dagster_env))


def test_registry_outage_is_a_skip_with_the_reason(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """Nothing listening at the registry URL: a SkipReason naming the registry, cursor and ledger untouched."""
    from assets.resources import RegistryResource

    url = closed_port_url()
    result = dagster_env.tick(
        new_digest_sensor, cursor='{"hello-web": {}}', registry=RegistryResource(url=url, timeout=1.0)
    )

    assert isinstance(result, SkipReason)
    assert url in (result.skip_message or "") and "unavailable" in (result.skip_message or "")
    assert [] == registrations(dagster_env)


def test_many_workloads_polled_each_with_own_cursor(
    dagster_env: DagsterEnv, registry_helper: Any, registry_repository: str
) -> None:
    """Every declared workload is polled; each has its own entry in the cursor."""
    other_repo = registry_repository + "-other"
    dagster_env.add_app("other-web", other_repo)
    d1 = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    d2 = registry_helper.push_image(other_repo, "v2.0.0")

    result = dagster_env.tick(new_digest_sensor)

    assert {partition_key("hello-web", d1), partition_key("other-web", d2)} == {
        r.partition_key for r in result.run_requests
    }
    assert {"hello-web": {"v1.0.0": d1}, "other-web": {"v2.0.0": d2}} == json.loads(result.cursor or "{}")


def test_unpushed_repository_is_not_an_outage(dagster_env: DagsterEnv) -> None:
    """A declared repository with nothing pushed yet: no candidates, no error, an empty cursor entry."""
    result = dagster_env.tick(new_digest_sensor)

    assert isinstance(result, SensorResult)
    assert ([], {"hello-web": {}}) == (list(result.run_requests), json.loads(result.cursor or "{}"))


# ------------------------------------------------------------------------------------------ stage gates


def _append(env: DagsterEnv, *events: NewEvent) -> list[Any]:
    store = env.store()
    try:
        return store.append(list(events))
    finally:
        store.close()


def _register(env: DagsterEnv, registry_helper: Any, tag: str = "v1.0.0") -> str:
    digest = registry_helper.push_image(env.repository, tag)
    env.tick(new_digest_sensor)
    return digest


def test_gate_requests_canary_after_stage1_pass(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """Stage 1 passed for the digest: a canary run for that digest's partition, once."""
    digest = _register(dagster_env, registry_helper)
    before = dagster_env.tick(stage_gate_sensor)
    _append(dagster_env, stage_result("hello-web", digest, 1, "pass"))

    result = dagster_env.tick(stage_gate_sensor, cursor=getattr(before, "cursor", None))

    key = partition_key("hello-web", digest)
    assert [("canary", key, f"{key}:canary")] == [
        (r.job_name, r.partition_key, r.run_key) for r in result.run_requests
    ]
    assert json.loads(result.cursor)["seq"] > 0


def test_gate_empty_ledger_is_a_skip(dagster_env: DagsterEnv) -> None:
    """No events after the cursor: a skip that says so."""
    result = dagster_env.tick(stage_gate_sensor)
    assert isinstance(result, SkipReason)
    assert "no ledger events after seq 0" == result.skip_message


# ------------------------------------------------------------------------------------------ canary guard


def test_guard_requests_rollback_when_approval_revoked_during_window(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """approval.revoked while the candidate's canary window is open: one rollback run for the workload."""
    digest = _register(dagster_env, registry_helper)
    _append(
        dagster_env,
        stage_result("hello-web", digest, 1, "pass"),
        NewEvent(
            stream="hello-web",
            kind=EventKind.STAGE_STARTED,
            actor="dagster",
            candidate=digest,
            stage=2,
            payload={"phase": "deployed"},
        ),
    )
    first = dagster_env.tick(canary_guard_sensor)
    assert [] == list(getattr(first, "run_requests", []) or [])

    [revoked] = _append(
        dagster_env,
        NewEvent(
            stream="hello-web",
            kind=EventKind.APPROVAL_REVOKED,
            actor="bob",
            candidate=digest,
            stage=2,
            payload={"reason": "bad"},
        ),
    )
    result = dagster_env.tick(canary_guard_sensor, cursor=first.cursor)

    [req] = result.run_requests
    cfg = req.run_config["ops"]["rollback_workload"]["config"]
    assert ("rollback", "hello-web", partition_key("hello-web", digest)) == (
        req.job_name or "rollback",
        cfg["workload"],
        cfg["candidate"],
    )
    assert f"seq {revoked.seq}" in cfg["reason"]


# ------------------------------------------------------------------------------------------ mirror


def test_mirror_reports_cli_events_as_runless_asset_events(dagster_env: DagsterEnv) -> None:
    """A candidate added and a Stage 1 result recorded by the CLI show up as runless materializations (with
    the Stage 1 gate evaluations) on the candidate's partition; Dagster's own events are not repeated."""
    from click.testing import CliRunner

    from railiance_ledger.cli import app

    digest = "sha256:" + "ab" * 32
    app_dir = dagster_env.apps_dir / "hello-web"
    dagster_env.store().close()  # the ledger exists: the CLI refuses a --ledger URL naming none
    run = CliRunner().invoke(
        app,
        [
            "--ledger",
            dagster_env.ledger_url,
            "candidate",
            "add",
            str(app_dir),
            "--image",
            f"registry.local/{dagster_env.repository}@{digest}",
            "--operator",
            "carol",
        ],
    )
    assert 0 == run.exit_code, run.output
    _append(dagster_env, stage_result("hello-web", digest, 1, "pass"))

    result = dagster_env.tick(ledger_mirror_sensor)

    key = partition_key("hello-web", digest)
    mats = [
        (type(e).__name__, e.asset_key.path[-1], getattr(e, "partition", None))
        for e in result.asset_events
        if type(e).__name__ != "AssetCheckEvaluation" and e.asset_key.path[-1] != "production"
    ]
    assert [
        ("AssetMaterialization", "candidate", key),
        ("AssetMaterialization", "stage1_validation", key),
    ] == mats
    checks = {
        e.check_name: e.passed for e in result.asset_events if type(e).__name__ == "AssetCheckEvaluation"
    }
    assert {"manifests_valid": True, "local_health": True} == {k: v for k, v in checks.items() if v}
    assert key in dagster_env.instance.get_dynamic_partitions("candidates")
    assert "carol" == result.asset_events[0].metadata["actor"].value

    again = dagster_env.tick(ledger_mirror_sensor, cursor=result.cursor)
    assert isinstance(again, SkipReason)


def test_mirror_skips_events_dagster_already_shows(dagster_env: DagsterEnv, registry_helper: Any) -> None:
    """A sensor-registered candidate (already materialized by new_digest_sensor) is not mirrored again."""
    from dagster import AssetMaterialization

    digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    result = dagster_env.tick(new_digest_sensor)
    for event in result.asset_events:  # what the daemon persists for a sensor's runless events
        assert isinstance(event, AssetMaterialization)
        dagster_env.instance.report_runless_asset_event(event)

    mirrored = dagster_env.tick(ledger_mirror_sensor)

    assert [] == [
        e for e in getattr(mirrored, "asset_events", []) if e.partition == partition_key("hello-web", digest)
    ]


def test_mirror_never_repeats_events_of_a_busy_partition(dagster_env: DagsterEnv) -> None:
    """A partition with more Dagster records than one page (a long observation window's samples) is read
    whole: replaying the ledger from the start mirrors nothing twice."""
    digest = "sha256:" + "cd" * 32
    reg = NewEvent(
        stream="hello-web",
        kind=EventKind.CANDIDATE_REGISTERED,
        actor="carol",
        candidate=digest,
        payload={"image": f"registry.local/{dagster_env.repository}@{digest}"},
    )
    samples = [
        NewEvent(
            stream="hello-web", kind=EventKind.NOTE_POSTED, actor="carol", candidate=digest, payload={"i": i}
        )
        for i in range(140)
    ]
    _append(dagster_env, reg, *samples)
    first = dagster_env.tick(ledger_mirror_sensor)
    assert isinstance(first, SensorResult)
    assert 141 == len([e for e in first.asset_events if e.asset_key.path[-1] != "production"])
    for event in first.asset_events:  # what the daemon persists for a sensor's runless events
        dagster_env.instance.report_runless_asset_event(event)

    replay = dagster_env.tick(ledger_mirror_sensor)  # no cursor: from seq 0 again
    assert [] == list(getattr(replay, "asset_events", None) or [])
