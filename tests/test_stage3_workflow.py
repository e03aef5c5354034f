"""``[promotion] form = "workflow"`` (issue 12 item 10): Stage 3 runs the operator-approved rollout
workflow the declaration names, records its id and output, and judges it by the same rollout
read-back, routing and smoke as a release replace. Real control plane, helm and registry; the
workflow is a real process patching the stable Deployment through the official Kubernetes client."""

from __future__ import annotations

import sys
from pathlib import Path

from railiance_ledger.domain.events import EventKind
from tests.fixtures.stage3 import Stage3Env
from tests.test_stage3_promote import check, failed

WORKFLOW = '''\
"""A rollout workflow: point the hello-web Deployment at $CANDIDATE_IMAGE (argv[1]: kubeconfig)."""
import os, sys
from kubernetes import client, config

mode = sys.argv[2] if len(sys.argv) > 2 else "roll"
print(f"workflow {os.environ['WORKFLOW_ID']}: {mode} {os.environ['CANDIDATE_DIGEST']}", flush=True)
if mode == "fail":
    print("blue/green switch refused by the change window", flush=True)
    sys.exit(3)
if mode == "roll":
    config.load_kube_config(sys.argv[1])
    apps = client.AppsV1Api()
    ns, name = os.environ["NAMESPACE"], os.environ["RELEASE"]
    dep = apps.read_namespaced_deployment(name, ns)
    container = dep.spec.template.spec.containers[0].name
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": container, "image": os.environ["CANDIDATE_IMAGE"]}]}}}}
    apps.patch_namespaced_deployment(name, ns, patch)
'''


def _use_workflow(env: Stage3Env, mode: str) -> None:
    script = env.app_dir / "railiance" / "rollout.py"
    script.write_text(WORKFLOW)
    kubeconfig = Path(env.cluster.kubeconfig_path)
    env.append_toml(
        f'[promotion]\nform = "workflow"\nworkflow = ["{sys.executable}", "rollout.py", "{kubeconfig}", "{mode}"]\n'
    )


def test_workflow_rolls_out_the_candidate_and_is_recorded(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _use_workflow(env, "roll")
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1)

    assert 0 == out.exit_code, failed(out.document)
    applied = check(out.document, "promotion_applied")
    assert "workflow `" in applied["reason"] and "exit 0" in applied["reason"], applied
    assert env.live_image() == v1
    done = env.events(EventKind.PROMOTION_COMPLETED)[-1].payload
    # a weighted canary takes all the host's traffic first, then the workflow replaces the stable
    assert ("weighted-shift-then-workflow", 0) == (done["form"], done["workflow"]["exit_code"])
    assert done["workflow"]["workflow_id"] == done["workflow_id"]
    assert done["workflow_id"] in done["workflow"]["output_tail"]


def test_failing_workflow_fails_the_promotion_with_its_output(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _use_workflow(env, "fail")
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1)

    assert 1 == out.exit_code
    applied = check(out.document, "promotion_applied")
    assert "fail" == applied["status"] and "exit 3" in applied["reason"], applied
    assert any("change window" in e["detail"] for e in applied["evidence"]), applied
    assert env.live_image() == env.stable0
    assert [] == env.events(EventKind.PROMOTION_COMPLETED)


def test_workflow_that_changes_nothing_is_caught_by_the_read_back(stage3_env: Stage3Env) -> None:
    """Exit 0 proves nothing: the stable Deployment never rolls out on the candidate, so the promotion
    fails and the previous stable stays."""
    env = stage3_env
    _use_workflow(env, "noop")
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1, ready_timeout=5.0)

    assert 1 == out.exit_code
    assert "fail" == check(out.document, "promotion_applied")["status"]
    assert env.live_image() == env.stable0
