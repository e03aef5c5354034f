"""End to end under ``dagster dev -w workspace.yaml``: a digest pushed to the registry becomes a candidate, the
sensor launches Stage 1, and both the ledger and Dagster's event log (GraphQL) show the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.gates import names_for
from railiance_ledger.ledger.projections import partition_key
from tests.fixtures.dagster import DevEnv

pytestmark = pytest.mark.slow

T = TypeVar("T")

RUNS = """
query Runs($key: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}) {
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}"""

MATERIALIZATIONS = """
query Mats($asset: [String!]!, $key: String!) {
  assetOrError(assetKey: {path: $asset}) {
    ... on Asset {
      assetMaterializations(partitions: [$key]) {
        runId partition
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
      }
    }
  }
}"""

CHECKS = """
query Checks {
  assetNodes(assetKeys: [{path: ["stage1_validation"]}]) {
    assetChecksOrError {
      ... on AssetChecks { checks { name partitionStatuses {
        ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions } } } }
    }
  }
}"""


def wait_for(
    what: str, probe: Callable[[], T | None], dev_log: Callable[[], str], timeout: float = 120.0
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the dagster dev log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n--- dagster dev log ---\n{dev_log()[-6000:]}")


def ledger_events(env: DevEnv, workload: str) -> list[Any]:
    store = env.store()
    try:
        return store.read_stream(workload)
    finally:
        store.close()


def test_pushed_digest_runs_stage1_and_ledger_and_event_log_agree(
    dagster_dev_env: DevEnv, registry_helper: Any
) -> None:
    """push -> new_digest_sensor registers (source sensor) and launches `stage1` for the partition -> run succeeds;
    the ledger's stage.completed and the stage1_validation materialization carry the same seq and hash, and
    every Stage 1 gate (with the declared local check) succeeded for that partition."""
    env = dagster_dev_env
    workload = "e2e-web"
    digest = registry_helper.push_image(env.repositories[workload], "v1.0.0")
    key = partition_key(workload, digest)

    def completed() -> Any:
        return next(
            (
                e
                for e in ledger_events(env, workload)
                if e.kind == EventKind.STAGE_COMPLETED and e.candidate == digest
            ),
            None,
        )

    done = wait_for("Stage 1 in the ledger", completed, env.dev.log_text)
    reg = next(e for e in ledger_events(env, workload) if e.kind == EventKind.CANDIDATE_REGISTERED)
    assert (digest, "sensor", "dagster-sensor") == (reg.candidate, reg.payload["source"], reg.actor)
    assert "pass" == done.payload["status"]

    def finished_run() -> Any:
        runs = env.dev.graphql(RUNS, {"key": key})["runsOrError"]["results"]
        return [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]

    [run] = wait_for("the stage1 run to finish", finished_run, env.dev.log_text)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert ("stage1", "SUCCESS", f"{key}:stage1", digest) == (
        run["jobName"],
        run["status"],
        tags.get("dagster/run_key"),
        tags.get("railiance/digest"),
    )

    mats = env.dev.graphql(MATERIALIZATIONS, {"asset": ["stage1_validation"], "key": key})["assetOrError"]
    [mat] = mats["assetMaterializations"]
    meta = {m["label"]: m.get("intValue", m.get("text")) for m in mat["metadataEntries"]}
    assert (run["runId"], done.seq, done.hash, "pass") == (
        mat["runId"],
        meta["ledger_seq"],
        meta["ledger_hash"],
        meta["status"],
    )

    checks = env.dev.graphql(CHECKS)["assetNodes"][0]["assetChecksOrError"]["checks"]
    succeeded = {
        c["name"]: key in (c["partitionStatuses"] or {}).get("succeededPartitions", []) for c in checks
    }
    # the eight required gates, artifact_traceable, and the app's declared local check `unit`
    assert {**{name: True for name in names_for(1)}, "local_check_unit": True} == succeeded

    candidates = env.dev.graphql(MATERIALIZATIONS, {"asset": ["candidate"], "key": key})["assetOrError"]
    assert candidates["assetMaterializations"], "the candidate asset shows the registration"


def test_cli_action_is_mirrored_into_the_event_log(dagster_dev_env: DevEnv) -> None:
    """A candidate registered with the CLI (outside Dagster) appears as a runless materialization of `candidate`."""
    import subprocess
    import sys

    env = dagster_dev_env
    digest = "sha256:" + "cd" * 32
    app = env.apps_dir / "cli-web"
    out = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [
            sys.executable,
            "-m",
            "railiance_ledger.cli",
            "--ledger",
            env.ledger_url,
            "candidate",
            "add",
            str(app),
            "--image",
            f"registry.local/{env.repositories['cli-web']}@{digest}",
            "--operator",
            "carol",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == out.returncode, out.stderr
    key = partition_key("cli-web", digest)

    def mirrored() -> Any:
        node = env.dev.graphql(MATERIALIZATIONS, {"asset": ["candidate"], "key": key})["assetOrError"]
        return node.get("assetMaterializations") if node else None

    [mat] = wait_for("the mirrored registration", mirrored, env.dev.log_text, timeout=60)
    meta = {m["label"]: m.get("intValue", m.get("text")) for m in mat["metadataEntries"]}
    assert ("", "carol", "candidate.registered") == (mat["runId"], meta["actor"], meta["kind"])
