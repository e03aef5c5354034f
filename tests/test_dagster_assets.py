"""Assets and gates of the Dagster code location, materialized in process against a real registry, a
real SQLite ledger, real helm and a committed copy of hello-web (Stage 1 runs for real)."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("dagster")

from dagster import AssetKey, materialize

from assets import GATES
from assets.candidates import candidate
from assets.gates import STAGE1_GATES, approval_in_force
from assets.stages import promotion_approval, stage1_validation, stage2_canary
from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.gates import names_for
from railiance_ledger.ledger.projections import partition_key
from sensors import new_digest_sensor
from tests.fixtures.dagster import DagsterEnv, git

ASSET_CHECKS = {
    "stage1_validation": [
        "source_revision_identified",
        "artifact_deterministic",
        "candidate_immutable",
        "manifests_valid",
        "secrets_by_reference",
        "local_health",
        "migrations_classified",
        "observability_declared",
    ],
    "stage2_canary": [
        "canary_form_declared",
        "canary_distinguishable",
        "stage1_passed",
        "cluster_ready",
        "digest_in_registry",
        "server_dry_run",
        "routing_prerequisites",
        "dependencies_healthy",
        "rollback_target_known",
        "monitoring_available",
        "declared_references",
        "observation_window",
        "operator_approval",
        "canary_applied",
        "not_rolled_back",
    ],
    "canary_acceptance": [
        "canary_pods_ready",
        "canary_pods_stable",
        "canary_health",
        "canary_error_rate",
        "canary_latency",
        "canary_saturation",
        "canary_statistical_comparison",
        "canary_routing",
        "canary_side_effects",
        "canary_logs_clean",
        "rollback_ready",
        "canary_release_identity",
        "operator_approval",
        "statehub_note",
    ],
    "promotion_approval": ["approval_in_force"],
    "stage3_promotion": [
        "stage2_accepted",
        "previous_stable_recorded",
        "backup_posture_current",
        "migrations_approved",
        "human_approval",
        "rollback_available",
        "statehub_configured",
        "promotion_applied",
        "stable_routing_points_at_candidate",
        "post_promotion_smoke",
        "not_rolled_back",
    ],
}
"""The asset checks of each stage asset, by their stable names, in report order (the UI shows these)."""


def test_asset_checks_derive_from_the_gate_catalogue_under_their_stable_names() -> None:
    """Every stage asset carries its catalogue gates as asset checks; the names and order never drift."""
    by_asset: dict[str, list[str]] = {}
    for checks in GATES:
        for key in checks.check_keys:
            by_asset.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    # GATES lists them per stage, then the rollback checks (stage 2's, stage 3's) at the end
    assert {k: sorted(v) for k, v in ASSET_CHECKS.items()} == {k: sorted(v) for k, v in by_asset.items()}
    assert [n for n in ASSET_CHECKS["stage3_promotion"] if n != "not_rolled_back"] == [
        n for n in by_asset["stage3_promotion"] if n != "not_rolled_back"
    ]


def _registered_key(env: DagsterEnv, registry_helper: Any) -> tuple[str, str]:
    digest = registry_helper.push_image(env.repository, "v1.0.0")
    env.tick(new_digest_sensor)
    return partition_key("hello-web", digest), digest


def _materialization(result: Any, asset: str) -> Any:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(asset)]
    return mat.materialization


def _checks(result: Any) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.description or "") for e in result.get_asset_check_evaluations()}


def _events(env: DagsterEnv) -> list[Any]:
    store = env.store()
    try:
        return store.read_stream("hello-web")
    finally:
        store.close()


def test_stage1_materializes_document_seq_hash_and_passing_gates(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """candidate + stage1_validation for a sensor-registered digest: Stage 1 passes; the materialization carries the
    stage-result document with the ledger seq and hash of its stage.completed; every gate passes."""
    key, digest = _registered_key(dagster_env, registry_helper)

    result = materialize(
        [candidate, stage1_validation, *STAGE1_GATES],
        partition_key=key,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
    )

    assert result.success
    completed = [e for e in _events(dagster_env) if e.kind == EventKind.STAGE_COMPLETED][-1]
    meta = _materialization(result, "stage1_validation").metadata
    doc = meta["document"].value
    assert (completed.seq, completed.hash) == (meta["ledger_seq"].value, meta["ledger_hash"].value)
    assert ("pass", digest, {"seq": completed.seq, "hash": completed.hash}) == (
        doc["status"],
        doc["candidate"]["digest"],
        doc["ledger"],
    )
    assert {**doc, "ledger": None} == completed.payload
    assert str(completed.seq) in meta["ledger_seqs"].value.split(",")
    assert {name: True for name in names_for(1)} == {k: v[0] for k, v in _checks(result).items()}
    assert _checks(result)["manifests_valid"][1].startswith("pass: ")
    cand_meta = _materialization(result, "candidate").metadata
    assert (digest, "dagster-sensor") == (cand_meta["digest"].value, cand_meta["registered_by"].value)


def test_stage1_failure_records_failing_document_and_fails_closed(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """An unclassified migration: the failing document is an observation (never a green "Materialized"
    partition), the step fails, every Stage 1 gate is evaluated from the document in the run (the
    migrations_classified gate red with the document's reason), and stage2_canary does not run."""
    app = dagster_env.apps_dir / "hello-web"
    toml = app / "railiance" / "app.toml"
    toml.write_text(
        re.sub(r'^classification = "reversible".*\n', "", toml.read_text(), count=1, flags=re.MULTILINE)
    )
    git(app, "commit", "-q", "-am", "unclassified migrations")
    key, _digest = _registered_key(dagster_env, registry_helper)

    result = materialize(
        [candidate, stage1_validation, stage2_canary, *STAGE1_GATES],
        partition_key=key,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
        raise_on_error=False,
    )

    assert not result.success
    assert [] == [
        m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey("stage1_validation")
    ]
    assert key not in dagster_env.instance.get_materialized_partitions(AssetKey("stage1_validation"))
    logged = [e.dagster_event for e in dagster_env.instance.all_logs(result.run_id) if e.dagster_event]
    [obs] = [
        e.event_specific_data.asset_observation
        for e in logged
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.event_specific_data.asset_observation.asset_key == AssetKey("stage1_validation")
    ]
    doc = obs.metadata["document"].value
    assert "fail" == doc["status"]
    assert obs.metadata["recorded_at"].value and obs.metadata["operator"].value
    failure = next(e for e in logged if e.event_type_value == "STEP_FAILURE")
    assert "migrations_classified" in str(failure.event_specific_data.error.message)
    checks = {
        e.event_specific_data.check_name: (e.event_specific_data.passed, e.event_specific_data.description)
        for e in logged
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert set(names_for(1)) <= set(checks)
    passed, description = checks["migrations_classified"]
    reason = next(c["reason"] for c in doc["checks"] if c["name"] == "migrations_classified")
    assert (False, f"fail: {reason}") == (passed, description)
    assert [] == [
        m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey("stage2_canary")
    ]
    assert not any(e.kind == EventKind.STAGE_STARTED and e.stage == 2 for e in _events(dagster_env))


def test_approval_refuses_self_approval_and_records_another_operator(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """The approve asset obeys the CLI's rules: the registrar cannot approve (the run fails with the reason);
    a different operator's approval lands in the ledger with that identity and passes approval_in_force."""
    key, digest = _registered_key(dagster_env, registry_helper)
    materialize(
        [candidate, stage1_validation],
        partition_key=key,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
    )

    def approve_as(operator: str) -> Any:
        cfg = {  # the canary's approval: Stage 1 has passed, so the candidate has reached Stage 2
            "operator": operator,
            "stage": 2,
            "rollback_target": "manual: helm rollback hello-web to the last good revision",
        }
        return materialize(
            [promotion_approval, approval_in_force],
            partition_key=key,
            resources=dagster_env.resources(),
            instance=dagster_env.instance,
            raise_on_error=False,
            run_config={"ops": {"promotion_approval": {"config": cfg}}},
        )

    refused = approve_as("dagster-sensor")
    assert not refused.success
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "separation of duties" in str(failure.event_specific_data.error.message)
    assert [] == [e for e in _events(dagster_env) if e.kind == EventKind.APPROVAL_GRANTED]

    approved = approve_as("alice")
    assert approved.success
    [grant] = [e for e in _events(dagster_env) if e.kind == EventKind.APPROVAL_GRANTED]
    assert ("alice", digest, 2) == (grant.actor, grant.candidate, grant.stage)
    meta = _materialization(approved, "promotion_approval").metadata
    assert ("alice", grant.seq) == (meta["operator"].value, meta["ledger_seq"].value)
    assert (True, True) == (
        _checks(approved)["approval_in_force"][0],
        "alice" in _checks(approved)["approval_in_force"][1],
    )


def test_candidate_config_guard_refuses_another_partition(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """A run whose config names a different candidate than its partition fails before anything is recorded."""
    key, _digest = _registered_key(dagster_env, registry_helper)
    before = len(_events(dagster_env))

    result = materialize(
        [stage1_validation],
        partition_key=key,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
        raise_on_error=False,
        run_config={"ops": {"stage1_validation": {"config": {"candidate": "hello-web@000000000000"}}}},
    )

    assert not result.success
    assert before == len(_events(dagster_env))


def test_promote_without_a_cluster_fails_clearly_and_records_nothing(
    dagster_env: DagsterEnv, registry_helper: Any
) -> None:
    """The promote job needs a Kubernetes cluster: without a loadable kubeconfig the run fails saying so,
    before anything is appended to the ledger."""
    from assets.stages import stage3_promotion

    key, _digest = _registered_key(dagster_env, registry_helper)
    before = len(_events(dagster_env))

    result = materialize(
        [stage3_promotion],
        partition_key=key,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
        raise_on_error=False,
    )

    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "Stage 3 needs a Kubernetes cluster" in str(failure.event_specific_data.error.message)
    assert before == len(_events(dagster_env))


def test_rollback_job_requested_by_guard_does_nothing_once_canary_closed(dagster_env: DagsterEnv) -> None:
    """A guard-requested rollback whose candidate's canary is no longer open succeeds without touching anything."""
    from definitions import build_definitions

    before = len(_events(dagster_env))
    job = build_definitions(dagster_env.resources()).get_job_def("rollback")

    result = job.execute_in_process(
        instance=dagster_env.instance,
        run_config={
            "ops": {
                "rollback_workload": {
                    "config": {
                        "workload": "hello-web",
                        "reason": "canary guard: approval revoked",
                        "candidate": "hello-web@0123456789ab",
                    }
                }
            }
        },
    )

    assert result.success
    assert {"rolled_back": None} == result.output_for_node("rollback_workload")
    assert before == len(_events(dagster_env))


def test_lineage_job_agrees_with_projection(dagster_env: DagsterEnv) -> None:
    """The lineage job reports each workload's lineage exactly as projections.lineage (the CLI's source)."""
    from definitions import build_definitions
    from railiance_ledger.ledger.projections import lineage
    from tests.fixtures.ledger import digest_of, full_lifecycle

    a, b = digest_of("a"), digest_of("b")
    store = dagster_env.store()
    try:
        store.append(full_lifecycle("hello-web", a, None, revision=1))
        store.append(full_lifecycle("hello-web", b, a, revision=2))
        expected = lineage(store, "hello-web").as_dict()
    finally:
        store.close()
    job = build_definitions(dagster_env.resources()).get_job_def("lineage")

    result = job.execute_in_process(
        instance=dagster_env.instance,
        run_config={"ops": {"lineage_report": {"config": {"workload": "hello-web"}}}},
    )

    assert result.success
    report = result.output_for_node("lineage_report")
    assert expected == report["hello-web"]
    assert a == report["hello-web"]["rollback_target"]["digest"]


def test_dagster_logs_go_through_the_redaction_path() -> None:
    """Every line a run or sensor logs passes the one redaction function (no token reaches the event log)."""
    from assets.resources import log_of

    lines: list[str] = []

    class _Log:
        def info(self, text: str) -> None:
            lines.append(text)

        warning = error = info

    class _Context:
        log = _Log()

    token = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    log_of(_Context()).warning(f"registry answered 401 for Authorization: token {token}")
    assert 1 == len(lines) and token not in lines[0] and "[REDACTED:" in lines[0]
