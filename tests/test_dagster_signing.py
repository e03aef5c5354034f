"""The Dagster approve job takes the armored SSH signature (issue 14, item 3).

The launchpad's ``signature`` field carries what ``ssh-keygen -Y sign`` made over the record
``railiance approve ... --payload`` prints. The materialization shows the verified principal
(``signed_by``), not the typed operator name. Without a signature, a workload that requires one
refuses the approval and the run fails with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dagster")

from dagster import AssetKey, materialize

from assets.candidates import candidate
from assets.stages import promotion_approval, stage1_validation
from railiance_ledger.adapters.sshsig import sign_bytes
from railiance_ledger.declaration.loader import load_declaration
from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.signing import NAMESPACE
from railiance_ledger.ledger.projections import partition_key
from railiance_ledger.lifecycle.approvals import approval_to_sign
from sensors import new_digest_sensor
from tests.fixtures.dagster import DagsterEnv, git

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing"
)

TARGET = "manual: helm rollback hello-web to the last good revision"


def test_launchpad_signature_records_the_verified_principal(
    dagster_env: DagsterEnv, registry_helper: Any, tmp_path: Path
) -> None:
    app = dagster_env.apps_dir / "hello-web"
    key = tmp_path / "id_alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], check=True)
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    (app / "railiance" / "allowed_signers").write_text(f'alice namespaces="{NAMESPACE}" {public}\n')
    toml = app / "railiance" / "app.toml"
    toml.write_text(
        toml.read_text().replace(
            "[approval]\n", '[approval]\nallowed_signers = "allowed_signers"\nrequire_signatures = true\n', 1
        )
    )
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "signed approvals")

    digest = registry_helper.push_image(dagster_env.repository, "v1.0.0")
    dagster_env.tick(new_digest_sensor)
    key_name = partition_key("hello-web", digest)
    materialize(
        [candidate, stage1_validation],
        partition_key=key_name,
        resources=dagster_env.resources(),
        instance=dagster_env.instance,
    )

    def run(signature: str) -> Any:
        # the canary's approval (stage 2): Stage 1 has passed, so the candidate has reached it
        cfg = {"operator": "alice", "rollback_target": TARGET, "signature": signature, "stage": 2}
        return materialize(
            [promotion_approval],
            partition_key=key_name,
            resources=dagster_env.resources(),
            instance=dagster_env.instance,
            raise_on_error=False,
            run_config={"ops": {"promotion_approval": {"config": cfg}}},
        )

    unsigned = run("")
    assert not unsigned.success
    failure = next(e for e in unsigned.all_events if e.event_type_value == "STEP_FAILURE")
    assert "must be signed" in str(failure.event_specific_data.error.message)

    store = dagster_env.store()
    try:
        record = approval_to_sign(
            store=store,
            decl=load_declaration(app),
            operator="alice",
            stage=2,
            image=None,  # the newest registered candidate: this partition's
            rollback_target=TARGET,
        )
    finally:
        store.close()
    signed = run(sign_bytes(record, key))
    assert signed.success
    [mat] = [
        m for m in signed.get_asset_materialization_events() if m.asset_key == AssetKey("promotion_approval")
    ]
    meta = mat.materialization.metadata
    assert meta["signed_by"].value == "alice"
    assert len(meta["signing_key_sha256"].value) == 64
    store = dagster_env.store()
    try:
        [grant] = [e for e in store.read_stream("hello-web") if e.kind == EventKind.APPROVAL_GRANTED]
    finally:
        store.close()
    assert grant.payload["signature"]["principal"] == "alice"
