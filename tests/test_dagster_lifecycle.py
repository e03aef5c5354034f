"""Stage 2 and Stage 3 through Dagster, for real: the code location's jobs executed in process on a
persistent instance, with the same resource classes the code location uses pointed at the real
Kubernetes control plane (its kubeconfig, CA inlined; the real helm installs, upgrades, uninstalls and rolls back
releases in it), the real OCI registry, the session Prometheus scraping a fresh stable/canary metrics
pair, the recording State Hub and a SQLite ledger (``tests.fixtures.dagster.dagster_lifecycle``).

What is asserted is read back from the Dagster instance (materialization metadata, stored asset check
evaluations) and from the ledger and the cluster, never from the job's in-memory result alone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("dagster")

from dagster import AssetKey, AssetRecordsFilter, SensorResult

from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.gates import GatePhase, names_for
from railiance_ledger.ledger.projections import lineage, partition_key
from railiance_ledger.ledger.verify import verify
from sensors import canary_guard_sensor, new_digest_sensor, stage_gate_sensor
from tests.fixtures.dagster import DagsterLifecycleEnv
from tests.fixtures.stage3 import NS

REQUIRED_CHECKS = names_for(1)
PRECHECKS = names_for(2, GatePhase.PRECHECK)
ACCEPTANCE_CHECKS = names_for(2, GatePhase.ACCEPTANCE)
STAGE3_PRECHECKS = names_for(3, GatePhase.PRECHECK)
PROMOTION_CHECKS = names_for(3, GatePhase.PROMOTION)

pytestmark = pytest.mark.slow


def _digest(image: str) -> str:
    return image.rsplit("@", 1)[1]


def _requests(result: Any) -> list[tuple[str | None, str | None]]:
    return [(r.job_name, r.partition_key) for r in getattr(result, "run_requests", None) or []]


def _cfg(asset: str, **config: Any) -> dict[str, Any]:
    return {"ops": {asset: {"config": config}}}


def _failed(checks: dict[str, tuple[bool | None, str]]) -> dict[str, str]:
    return {name: why for name, (ok, why) in checks.items() if not ok}


def _candidate_through_stage1(d: DagsterLifecycleEnv, tag: str = "v1.0.0") -> tuple[str, str]:
    """Push ``tag``; the digest sensor registers it and requests Stage 1, which the ``stage1`` job runs."""
    env = d.stage3
    image = env.push(tag)
    key = partition_key("hello-web", _digest(image))
    registered = d.tick(new_digest_sensor)
    assert (key, f"{key}:stage1") in [(r.partition_key, r.run_key) for r in registered.run_requests]
    s1 = d.run("stage1", key)
    assert s1.success
    assert "pass" == d.materialization("stage1_validation", key).metadata["status"].value
    assert {} == _failed(d.checks("stage1_validation", REQUIRED_CHECKS, key))
    return image, key


def _deploy(d: DagsterLifecycleEnv, key: str, operator: str = "alice") -> Any:
    result = d.run("canary", key, _cfg("stage2_canary", operator=operator))
    meta = d.materialization("stage2_canary", key).metadata
    assert result.success, meta.get("document")
    return meta


def test_stage2_and_stage3_jobs_against_the_control_plane_then_rollback(
    dagster_lifecycle: DagsterLifecycleEnv,
) -> None:
    """stage1 -> canary -> observe -> approve (another operator) -> promote -> lineage -> rollback, each a job
    run on the instance, each next stage requested by stage_gate_sensor only once the ledger says so."""
    d, env = dagster_lifecycle, dagster_lifecycle.stage3
    image, key = _candidate_through_stage1(d)

    gate = d.tick(stage_gate_sensor)
    assert [("canary", key)] == _requests(gate)

    # ---- Stage 2 deploy: the deploy document (phase deployed), every precheck and canary_applied, from the instance
    meta = _deploy(d, key)
    doc = meta["document"].value
    assert ("deployed", "pass", image) == (doc["phase"], meta["status"].value, doc["candidate"]["image"])
    [started] = [e for e in d.ledger_events(EventKind.STAGE_STARTED) if e.stage == 2]
    routed = d.ledger_events(EventKind.ROUTING_CHANGED)[-1]
    assert (
        (routed.seq, routed.hash)
        == (meta["ledger_seq"].value, meta["ledger_hash"].value)
        == (doc["ledger"]["seq"], doc["ledger"]["hash"])
    )
    assert {started.seq, routed.seq} <= {int(s) for s in meta["ledger_seqs"].value.split(",")}
    checks = d.checks("stage2_canary", (*PRECHECKS, "canary_applied"), key)
    assert {} == _failed(checks)
    assert (
        checks["routing_prerequisites"][1].startswith("pass: ")
        and "localhost resolves" in checks["routing_prerequisites"][1]
    )
    assert (
        image
        == env.cluster.get("deployments", NS, "hello-web-canary")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
    )

    gate = d.tick(stage_gate_sensor, cursor=gate.cursor)
    assert [("observe", key)] == _requests(gate)
    assert f"{key}:observe:{started.seq}" == gate.run_requests[0].run_key

    # ---- Stage 2 observation: real samples from Prometheus over the 4 s window, the acceptance gates
    observed = d.run("observe", key, _cfg("canary_acceptance", operator="alice"))
    meta = d.materialization("canary_acceptance", key).metadata
    assert observed.success, meta["document"].value
    completed = [e for e in d.ledger_events(EventKind.STAGE_COMPLETED) if e.stage == 2][-1]
    assert ("pass", False, "4/4") == (meta["status"].value, meta["rolled_back"].value, meta["samples"].value)
    assert (completed.seq, completed.hash) == (meta["ledger_seq"].value, meta["ledger_hash"].value)
    doc = meta["document"].value
    assert {k: v for k, v in completed.payload.items() if k != "ledger"} == {
        k: doc[k] for k in completed.payload if k != "ledger"
    }
    acceptance = d.checks("canary_acceptance", ACCEPTANCE_CHECKS, key)
    assert {} == _failed(acceptance)
    assert str(completed.seq) in str(
        d.check_history("canary_acceptance", "canary_error_rate", key)[0]
        .evaluation.metadata["ledger_seq"]
        .value
    )
    assert 4 == sum(1 for e in d.ledger_events(EventKind.CANARY_SAMPLE) if e.candidate == _digest(image))

    gate = d.tick(stage_gate_sensor, cursor=gate.cursor)
    assert [("promote", key)] == _requests(gate)

    # ---- the approval: the deployer may not approve; another operator does
    refused = d.run("approve", key, _cfg("promotion_approval", operator="alice"))
    assert not refused.success
    approved = d.run("approve", key, _cfg("promotion_approval", operator="bob"))
    assert approved.success
    [grant] = d.ledger_events(EventKind.APPROVAL_GRANTED)
    meta = d.materialization("promotion_approval", key).metadata
    assert ("bob", 3, grant.seq, "approved") == (
        grant.actor,
        grant.stage,
        meta["ledger_seq"].value,
        meta["status"].value,
    )
    assert (True, True) == (
        d.checks("promotion_approval", ["approval_in_force"], key)["approval_in_force"][0],
        "bob" in d.checks("promotion_approval", ["approval_in_force"], key)["approval_in_force"][1],
    )

    # ---- Stage 3: the prechecks, the stable release replaced by the candidate, smoke through the ingress
    promoted = d.run("promote", key, _cfg("stage3_promotion", operator="alice"))
    meta = d.materialization("stage3_promotion", key).metadata
    assert promoted.success, meta["document"].value
    doc = meta["document"].value
    [promotion] = d.ledger_events(EventKind.PROMOTION_COMPLETED)
    s3 = [e for e in d.ledger_events(EventKind.STAGE_COMPLETED) if e.stage == 3][-1]
    assert ("pass", False, _digest(image)) == (
        meta["status"].value,
        meta["rolled_back"].value,
        promotion.candidate,
    )
    assert (
        (s3.seq, s3.hash)
        == (meta["ledger_seq"].value, meta["ledger_hash"].value)
        == (doc["ledger"]["seq"], doc["ledger"]["hash"])
    )
    assert list(STAGE3_PRECHECKS) == [c["name"] for c in doc["checks"]][: len(STAGE3_PRECHECKS)]
    assert {} == _failed(d.checks("stage3_promotion", (*STAGE3_PRECHECKS, *PROMOTION_CHECKS), key))
    assert (False, "not required") == (
        doc["approval"]["required"],
        doc["approval"]["decision"],
    )  # not critical
    assert all(s["ok"] for s in promotion.payload.get("smoke") or doc.get("smoke") or [{"ok": True}])
    assert image == env.live_image() and [image] == env.served_images()
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None

    # ---- lineage: the job's report and the materialized rollback target agree with the projection
    store = d.store()
    try:
        expected = lineage(store, "hello-web").as_dict()
    finally:
        store.close()
    assert (_digest(image), _digest(env.stable0)) == (
        expected["current_stable"]["digest"],
        expected["rollback_target"]["digest"],
    )
    report = d.run("lineage", None, _cfg("lineage_report", workload="hello-web"))
    assert report.success
    assert expected == report.output_for_node("lineage_report")["hello-web"]
    as_json = json.loads(json.dumps(expected, default=str))  # what metadata holds (tuples become lists)
    assert as_json["rollback_target"] == meta["rollback_target"].value
    [obs] = d.instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey("stage3_promotion"), asset_partitions=[key]), limit=1
    ).records
    assert as_json["rollback_target"] == obs.asset_observation.metadata["rollback_target"].value
    assert as_json == obs.asset_observation.metadata["lineage"].value

    # ---- rollback: production returns to the previous stable (v0.9.0, installed before the ledger)
    rolled = d.run(
        "rollback",
        None,
        _cfg(
            "rollback_workload", workload="hello-web", operator="carol", reason="p95 latency doubled after v1"
        ),
    )
    assert rolled.success
    out = rolled.output_for_node("rollback_workload")["document"]
    done = d.ledger_events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (_digest(image), _digest(env.stable0), "carol") == (
        done.candidate,
        done.payload["final_stable"],
        done.actor,
    )
    assert out["verification"]["manifests"]["ok"] and out["verification"]["check"]["ok"]
    assert env.stable0 == env.live_image() and [env.stable0] == env.served_images()
    store = d.store()
    try:
        after = lineage(store, "hello-web")
        assert _digest(env.stable0) == after.current_stable.digest
        assert verify(store).ok
    finally:
        store.close()
    [obs] = d.instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey("stage3_promotion"), asset_partitions=[key]), limit=1
    ).records
    assert done.seq == obs.asset_observation.metadata["ledger_seq"].value
    assert "deployed" == env.helm.history(release="hello-web", namespace=NS)[-1]["status"]


def test_crashlooping_canary_fails_closed_is_rolled_back_and_nothing_downstream_is_requested(
    dagster_lifecycle: DagsterLifecycleEnv,
) -> None:
    """A crash-looping canary image: the observe job rolls it back in the cluster, its gates fail (read back
    from the instance), the ledger records the rejection, and stage_gate_sensor requests no promotion."""
    d, env = dagster_lifecycle, dagster_lifecycle.stage3
    image, key = _candidate_through_stage1(d)
    env.cluster.behaviours.set(image, "crashloop")
    _deploy(d, key)
    gate = d.tick(stage_gate_sensor)
    assert [("observe", key)] == _requests(gate)

    observed = d.run("observe", key, _cfg("canary_acceptance", operator="alice"))

    assert d.materialization("canary_acceptance", key) is None  # a failed stage is never green
    meta = d.observation("canary_acceptance", key).metadata
    doc = meta["document"].value
    assert ("fail", True) == (meta["status"].value, meta["rolled_back"].value)
    assert not observed.success  # the stage failed the run (fail closed), its gates red
    reasons = {c["name"]: c["reason"] for c in doc["checks"]}
    assert "crash-looping" in reasons["immediate_rollback"]
    failed = _failed(d.checks("canary_acceptance", ACCEPTANCE_CHECKS, key))
    assert "canary_pods_ready" in failed and failed["canary_pods_ready"].startswith("fail: ")
    completed = [e for e in d.ledger_events(EventKind.STAGE_COMPLETED) if e.stage == 2][-1]
    assert ("fail", completed.seq) == (completed.payload["status"], meta["ledger_seq"].value)
    assert EventKind.ROLLBACK_COMPLETED in [e.kind for e in d.ledger_events()]
    # removed from the cluster: no canary Deployment, Ingress or helm release; the stable untouched
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None
    assert env.cluster.get("ingresses", NS, "hello-web-canary") is None
    assert [] == [h for h in _helm_history(env, "hello-web-canary") if h.get("status") == "deployed"]
    assert env.stable0 == env.live_image()

    after = d.tick(stage_gate_sensor, cursor=gate.cursor)
    assert [] == [r for r in _requests(after) if r[1] == key]
    from_scratch = d.tick(stage_gate_sensor)
    assert "promote" not in [job for job, _key in _requests(from_scratch)]
    assert [] == _requests(d.tick(canary_guard_sensor))  # the window already closed: nothing left to guard
    assert 3 not in [e.stage for e in d.ledger_events(EventKind.STAGE_STARTED)]  # Stage 3 never started


def _helm_history(env: Any, release: str) -> list[dict[str, Any]]:
    from railiance_ledger.errors import AdapterError

    try:
        return list(env.helm.history(release=release, namespace=NS))
    except AdapterError:
        return []


def test_canary_guard_requests_one_rollback_after_a_revocation_in_the_window(
    dagster_lifecycle: DagsterLifecycleEnv,
) -> None:
    """A Stage 2 approval revoked while the canary is being observed: canary_guard_sensor requests exactly
    one rollback run for that partition, the next evaluation none; the requested run removes the canary."""
    from railiance_ledger.lifecycle.approvals import revoke

    d, env = dagster_lifecycle, dagster_lifecycle.stage3
    image, key = _candidate_through_stage1(d)
    assert d.run("approve", key, _cfg("promotion_approval", operator="bob", stage=2)).success
    _deploy(d, key)
    quiet = d.tick(canary_guard_sensor)
    assert [] == _requests(quiet)

    store = d.store()
    try:
        revoked = revoke(
            store=store,
            decl=env.decl(),
            operator="carol",
            reason="change freeze",
            image=image,
            statehub=env.statehub,
        )
    finally:
        store.close()

    result = d.tick(canary_guard_sensor, cursor=quiet.cursor)
    assert isinstance(result, SensorResult)
    [req] = result.run_requests
    cfg = req.run_config["ops"]["rollback_workload"]["config"]
    assert (key, "hello-web", f"{key}:rollback:{revoked.seq}") == (
        cfg["candidate"],
        cfg["workload"],
        req.run_key,
    )
    assert (req.job_name in (None, "rollback")) and key == req.tags["railiance/partition"]
    assert f"seq {revoked.seq}" in cfg["reason"]
    assert [] == _requests(d.tick(canary_guard_sensor, cursor=result.cursor))

    rolled = d.run("rollback", None, req.run_config)
    assert rolled.success
    out = rolled.output_for_node("rollback_workload")["document"]
    assert ("canary-removed", "pass") == (out["phase"], out["status"])
    assert "helm uninstall hello-web-canary" in out["action"]
    assert env.cluster.get("deployments", NS, "hello-web-canary") is None
    assert env.stable0 == env.live_image()
    done = d.ledger_events(EventKind.ROLLBACK_COMPLETED)[-1]
    assert (_digest(image), "dagster") == (done.candidate, done.actor)
    assert [] == _requests(
        d.tick(canary_guard_sensor)
    )  # the window is closed: a lost cursor asks for nothing
    again = d.run("rollback", None, req.run_config)  # the same request delivered twice does nothing
    assert again.success and {"rolled_back": None} == again.output_for_node("rollback_workload")


def test_promotion_whose_smoke_fails_fails_the_run_after_its_automatic_rollback(
    dagster_lifecycle: DagsterLifecycleEnv,
) -> None:
    """The smoke path answers 500 through the ingress: Stage 3 rolls production back by itself; the promote run
    fails on the post_promotion_smoke gate (the prechecks alone passed, so without that gate it went green)."""
    d, env = dagster_lifecycle, dagster_lifecycle.stage3
    _image, key = _candidate_through_stage1(d)
    _deploy(d, key)
    assert d.run("observe", key).success
    env.app.statuses["/"] = 500  # the smoke path breaks; /healthz (the rollback verification) stays healthy

    promoted = d.run("promote", key, _cfg("stage3_promotion", operator="alice"))

    assert not promoted.success
    assert d.materialization("stage3_promotion", key) is None  # a rolled-back promotion is never green
    meta = d.observation("stage3_promotion", key).metadata
    assert ("fail", True) == (meta["status"].value, meta["rolled_back"].value)
    checks = d.checks("stage3_promotion", (*STAGE3_PRECHECKS, *PROMOTION_CHECKS), key)
    assert ["post_promotion_smoke"] == list(_failed(checks))
    assert "HTTP 500" in checks["post_promotion_smoke"][1]
    assert env.stable0 == env.live_image()
    assert [] == d.ledger_events(EventKind.PROMOTION_COMPLETED)
