"""Platform dependencies before Stage 2 (issue 12, item 8), on the real control plane, helm, registry and
State Hub: a declared dependency without a health URL is "unknown", which fails ``dependencies_healthy``
unless an operator approval for the degraded dependency is recorded: a waiver of gate
``dependency:NAME``, SSH-signed by an allowed signer, naming that dependency.
"""

from __future__ import annotations

from typing import Any

import pytest

from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.waivers import record_waiver, waiver_to_sign
from tests.fixtures.signing import sign_as, test_keys
from tests.fixtures.stage2 import CanaryEnv, check_named, deploy_env, not_passed
from tests.harness import free_port

GATE = "dependency:postgres-main"


def args(env: CanaryEnv, gate: str = GATE, operator: str = "bob") -> dict[str, Any]:
    return {
        "store": env.store,
        "decl": env.decl(),
        "gate": gate,
        "operator": operator,
        "reason": "read replica only; writes queue until the primary is back",
        "candidate": env.digest,
        "stage": 2,
    }


def signed(env: CanaryEnv, gate: str = GATE, operator: str = "bob") -> Any:
    record = waiver_to_sign(**args(env, gate, operator))
    return record_waiver(signature=sign_as(test_keys(), operator, record), **args(env, gate, operator))


def nothing_applied(env: CanaryEnv) -> None:
    assert env.cluster.get("deployments", "hello-web", "hello-web-canary") is None


def test_a_dependency_without_health_url_is_unknown_and_blocks_until_a_signed_approval(
    canary_env: CanaryEnv,
) -> None:
    env = canary_env
    env.sub(r"(?m)^health_url = \"[^\"]*/health\"\n", "")  # postgres-main: nothing shows it healthy
    out = deploy_env(env)
    c = check_named(out.document, "dependencies_healthy")
    assert (1, "fail") == (out.exit_code, c["status"]), c
    assert "postgres-main: unknown (no health URL declared)" in c["reason"] and GATE in c["reason"]
    nothing_applied(env)

    # the approval must be signed, name a declared dependency, and be for Stage 2
    with pytest.raises(InvalidInput, match="must be signed"):
        record_waiver(**args(env))
    with pytest.raises(InvalidInput, match="not a declared dependency"):
        record_waiver(**args(env, gate="dependency:redis-cache"))
    with pytest.raises(InvalidInput, match="before Stage 2"):
        record_waiver(**{**args(env), "stage": 3})
    # a blanket dependencies_healthy waiver covers an unhealthy dependency, not an unknown one
    record_waiver(**args(env, gate="dependencies_healthy"))
    again = deploy_env(env)
    assert (1, "fail") == (again.exit_code, check_named(again.document, "dependencies_healthy")["status"])
    nothing_applied(env)

    approval = signed(env)
    assert approval.payload["signature"]["principal"] == "bob"
    done = deploy_env(env)
    c = check_named(done.document, "dependencies_healthy")
    assert (0, "waived", approval.event_id) == (done.exit_code, c["status"], c["waiver"]), not_passed(
        done.document
    )
    assert "degraded with operator approval" in c["reason"] and "postgres-main" in c["reason"]


def test_an_unreachable_dependency_passes_only_with_its_own_signed_approval(canary_env: CanaryEnv) -> None:
    env = canary_env
    env.edit(f"{env.app_url}/health", f"http://127.0.0.1:{free_port()}/health")
    out = deploy_env(env)
    c = check_named(out.document, "dependencies_healthy")
    assert (1, "fail") == (out.exit_code, c["status"]) and "postgres-main" in c["reason"], c
    nothing_applied(env)
    approval = signed(env)
    done = deploy_env(env)
    c = check_named(done.document, "dependencies_healthy")
    assert (0, "waived", approval.event_id) == (done.exit_code, c["status"], c["waiver"]), not_passed(
        done.document
    )
