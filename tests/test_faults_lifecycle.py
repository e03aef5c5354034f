"""Faults injected at each step of deploy, promote and rollback (issue 11, item 3).

The real control plane with the fault proxy (``tests/harness/faultproxy.py``) between every client
and the apiserver: the ``Kube`` adapter and the real ``helm`` binary both use the proxied kubeconfig,
so a rule on one apiserver call of one step (method + path, taken from the request log of a clean
run) fails exactly that step: an error status, a dropped connection, or an answer slower than the
adapter's timeout. The services run as the CLI runs them, inside the workload's lease
(``lifecycle.actions.acting``).

Each case asserts: the ledger ends with a failed result plus a completed rollback, or an explicit
``rollback.incomplete`` naming what remains; the ledger verifies; the cluster is what the ledger
says (canary release, routing and the stable's image read back); while a rollback is incomplete,
every action but ``rollback`` refuses (exit 3), and a rollback that completes unblocks the workload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.errors import AdapterNotFound, WorkloadBlocked
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.ledger.verify import verify
from railiance_ledger.lifecycle.actions import acting, action_state
from tests.fixtures.stage3 import NS, Stage3Env

pytestmark = pytest.mark.slow

W = "hello-web"
ENDS = (EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_INCOMPLETE)


@dataclass(frozen=True)
class Step:
    """One apiserver call a step makes: ``method`` on ``path`` (a regex on the raw path)."""

    name: str
    method: str
    path: str
    expect: str
    """``completed`` (the rollback's own calls avoid this one) or ``incomplete`` (they need it too)."""
    query: str = ""
    """A regex on the query string (helm's calls carry ``fieldManager=helm``)."""


FAULTS = {
    "error": {"status": 500},
    "drop": {"drop": True},
    # Slower than the adapter's timeout (1 s here); never forwarded, so a write cannot land late.
    "slow": {"latency": 3.0, "status": 504},
    "error-once": {"status": 500, "times": 1},
}

DEPLOY = {
    "helm-install-record": Step(
        "helm install creates its release record", "POST", r"/namespaces/hello-web/secrets$", "completed"
    ),
    "helm-install-apply": Step(
        "helm install applies the canary Deployment",
        "PATCH",
        r"/deployments/hello-web-canary$",
        "completed",
        query="fieldManager=helm",
    ),
    "helm-install-lookup": Step(
        "helm looks up the release (helm uninstall starts with the same call)",
        "GET",
        r"/namespaces/hello-web/secrets$",
        "incomplete",
        query="name%3Dhello-web-canary",
    ),
    "routing-apply": Step(
        "the canary Ingress is applied", "PATCH", r"/ingresses/hello-web-canary$", "completed"
    ),
    "routing-read-back": Step(
        "routing is read back", "GET", r"/namespaces/hello-web/ingresses$", "completed"
    ),
}
DEPLOY_CASES = [
    ("helm-install-record", "error"),
    ("helm-install-record", "drop"),
    ("helm-install-apply", "error"),
    ("helm-install-lookup", "error"),
    ("routing-apply", "error"),
    ("routing-apply", "drop"),
    ("routing-apply", "slow"),
    ("routing-read-back", "error"),
    ("routing-read-back", "slow"),
]

PROMOTE = {
    "weighted-shift": Step(
        "all traffic shifted to the candidate", "PATCH", r"/ingresses/hello-web-canary$", "completed"
    ),
    "helm-upgrade": Step(
        "helm upgrades the stable release", "PATCH", r"/deployments/hello-web$", "completed"
    ),
    "helm-upgrade-and-rollback": Step(
        "helm upgrade, and the helm rollback that follows it",
        "PATCH",
        r"/deployments/hello-web$",
        "incomplete",
    ),
}
PROMOTE["canary-removal"] = Step(
    "the canary Ingress is deleted after the upgrade (and again by the rollback)",
    "DELETE",
    r"/ingresses/hello-web-canary$",
    "incomplete",
)
PROMOTE_CASES = [
    ("weighted-shift", "error"),
    ("weighted-shift", "drop"),
    ("weighted-shift", "slow"),
    ("helm-upgrade", "error-once"),
    ("helm-upgrade-and-rollback", "error"),
    ("canary-removal", "error"),
]

ROLLBACK = {
    "helm-rollback-deployment": Step(
        "helm rollback patches the Deployment", "PATCH", r"/deployments/hello-web$", "incomplete"
    ),
    "helm-rollback-record": Step(
        "helm rollback records its revision", "POST", r"/namespaces/hello-web/secrets$", "incomplete"
    ),
}
ROLLBACK_CASES = [
    ("helm-rollback-deployment", "error"),
    ("helm-rollback-deployment", "drop"),
    ("helm-rollback-record", "error"),
]


@contextmanager
def leased(env: Stage3Env, action: str, operator: str = "alice") -> Iterator[None]:
    """Run the services inside the workload's lease, on the action's version-checked store."""
    with acting(env.store, W, action, operator) as act:
        plain, env.store = env.store, act.store
        try:
            yield
        finally:
            env.store = plain


def inject(env: Stage3Env, step: Step, fault: str) -> None:
    spec = dict(FAULTS[fault])
    if fault == "slow":
        env.kube.timeout = 1.0
    env.cluster.faults.add(
        step.path, methods=[step.method], query=step.query, message=f"injected: {step.name}", **spec
    )


def heal(env: Stage3Env) -> None:
    env.cluster.faults.clear()
    env.kube.timeout = 10.0


def after(env: Stage3Env, seq: int) -> list[RecordedEvent]:
    return [e for e in env.store.read_stream(W) if e.seq > seq]


def rollback_end(events: list[RecordedEvent]) -> RecordedEvent:
    ends = [e for e in events if e.kind in ENDS]
    assert ends, [e.kind for e in events]
    return ends[-1]


def assert_failed_result(events: list[RecordedEvent], stage: int, digest: str) -> None:
    results = [e for e in events if e.kind == EventKind.STAGE_COMPLETED and e.stage == stage]
    assert results and results[-1].candidate == digest, [e.kind for e in events]
    assert results[-1].payload["status"] == "fail"


def assert_blocked_until_resolved(env: Stage3Env, end: RecordedEvent) -> None:
    """Every action but rollback refuses while ``end`` (a rollback.incomplete) stands."""
    blocker = action_state(env.store, W).blocker
    assert blocker is not None and blocker.seq == end.seq
    assert blocker.remaining and "railiance rollback" in blocker.manual_command
    for action in ("deploy", "observe", "promote", "approve"):
        with pytest.raises(WorkloadBlocked, match=f"seq {end.seq}"), acting(env.store, W, action, "alice"):
            pytest.fail("a blocked workload must refuse")


def assert_unblocked(env: Stage3Env) -> None:
    assert action_state(env.store, W).blocker is None
    with acting(env.store, W, "deploy", "alice"):
        pass


def canary_gone(env: Stage3Env) -> bool:
    try:
        env.helm.history(release="hello-web-canary", namespace=NS)
        release = True
    except AdapterNotFound:
        release = False
    return (
        not release
        and env.cluster.get("deployments", NS, "hello-web-canary") is None
        and env.cluster.get("ingresses", NS, "hello-web-canary") is None
    )


def canary_weight(env: Stage3Env) -> int | None:
    """The live canary Ingress's weight, or None when there is no canary routing."""
    ing = env.cluster.get("ingresses", NS, "hello-web-canary")
    if ing is None:
        return None
    annotations = ing["metadata"].get("annotations") or {}
    return int(annotations.get("nginx.ingress.kubernetes.io/canary-weight", "0"))


@pytest.mark.parametrize(("step", "fault"), DEPLOY_CASES, ids=[f"{s}-{f}" for s, f in DEPLOY_CASES])
def test_a_fault_at_a_deploy_step_ends_in_a_failed_result_and_a_recorded_rollback(
    stage3_env: Stage3Env, step: str, fault: str
) -> None:
    env, where = stage3_env, DEPLOY[step]
    image = env.push("v1.0.0")
    assert env.stage1(image).exit_code == 0
    digest = image.rsplit("@", 1)[1]
    inject(env, where, fault)
    with leased(env, "deploy"):
        out = env.deploy(image)
    heal(env)
    assert out.exit_code == 1, out.document
    (intent,) = [e for e in env.store.read_stream(W) if e.kind == EventKind.STAGE_STARTED and e.stage == 2]
    assert intent.payload["phase"] == "deploying"  # recorded before anything was applied
    events = after(env, intent.seq)
    end = rollback_end(events)
    assert_failed_result(events, 2, digest)
    assert verify(env.store).ok
    assert env.cluster.get("ingresses", NS, "hello-web") is not None  # the stable routing untouched
    if where.expect == "completed":
        assert end.kind == EventKind.ROLLBACK_COMPLETED, end.payload
        assert canary_gone(env)
        assert_unblocked(env)
        return
    assert end.kind == EventKind.ROLLBACK_INCOMPLETE, end.payload
    remaining = " ".join(map(str, end.payload["remaining_cleanup"]))
    assert "helm uninstall hello-web-canary" in remaining, remaining
    assert "helm uninstall hello-web-canary --namespace hello-web" in end.payload["manual_command"]
    assert canary_weight(env) is None  # the routing was removed: no traffic on the canary
    assert_blocked_until_resolved(env, end)
    with leased(env, "rollback", "bob"):
        done = env.rollback(reason="finish removing the canary")
    assert (0, "canary-removed") == (done.exit_code, done.phase), done.document
    assert canary_gone(env)
    assert verify(env.store).ok
    assert_unblocked(env)


def ready(env: Stage3Env, tag: str) -> str:
    image = env.through_stage2(tag)
    env.approve(image, "bob")
    return image


@pytest.mark.parametrize(("step", "fault"), PROMOTE_CASES, ids=[f"{s}-{f}" for s, f in PROMOTE_CASES])
def test_a_fault_at_a_promote_step_ends_in_a_failed_result_and_a_recorded_rollback(
    stage3_env: Stage3Env, step: str, fault: str
) -> None:
    env, where = stage3_env, PROMOTE[step]
    image = ready(env, "v1.0.0")
    digest = image.rsplit("@", 1)[1]
    inject(env, where, fault)
    with leased(env, "promote"):
        out = env.promote(image)
    heal(env)
    assert out.exit_code == 1, out.document
    (intent,) = [e for e in env.store.read_stream(W) if e.kind == EventKind.STAGE_STARTED and e.stage == 3]
    events = after(env, intent.seq)
    end = rollback_end(events)
    assert_failed_result(events, 3, digest)
    assert not [e for e in events if e.kind == EventKind.PROMOTION_COMPLETED]
    assert verify(env.store).ok
    if step != "canary-removal":
        assert canary_weight(env) != 100  # never all traffic on a candidate that was not promoted
    stable = lineage(env.store, W).current_stable  # the ledger: nothing promoted, v0 (pre-ledger) serves
    assert stable is None or stable.digest == env.stable0.rsplit("@", 1)[1], stable
    if where.expect == "completed":
        assert end.kind == EventKind.ROLLBACK_COMPLETED, end.payload
        assert env.live_image() == env.stable0  # the previous stable serves, as recorded
        assert_unblocked(env)
        return
    assert end.kind == EventKind.ROLLBACK_INCOMPLETE, end.payload
    remaining = " ".join(map(str, [*end.payload["remaining_cleanup"], *end.payload["failures"]]))
    if step == "canary-removal":  # the stable is back; the canary Ingress the ledger names remains
        assert "Ingress/hello-web-canary" in remaining, remaining
        assert canary_weight(env) is not None and env.live_image() == env.stable0
    else:
        assert "helm rollback hello-web" in end.payload["manual_command"]
        history = env.helm.history(release="hello-web", namespace=NS)
        assert str(history[-1]["status"]).lower() != "deployed", history  # helm's record is what remains
    assert_blocked_until_resolved(env, end)
    with leased(env, "rollback", "bob"):
        done = env.rollback(reason="finish the automatic rollback")
    assert (0, "rolled-back") == (done.exit_code, done.phase), done.document
    assert env.live_image() == env.stable0
    assert canary_weight(env) is None
    assert verify(env.store).ok
    assert_unblocked(env)


@pytest.mark.parametrize(("step", "fault"), ROLLBACK_CASES, ids=[f"{s}-{f}" for s, f in ROLLBACK_CASES])
def test_a_fault_at_a_rollback_step_records_rollback_incomplete_not_a_completed_failure(
    stage3_env: Stage3Env, step: str, fault: str
) -> None:
    env, where = stage3_env, ROLLBACK[step]
    image = ready(env, "v1.0.0")
    with leased(env, "promote"):
        assert env.promote(image).exit_code == 0
    head = env.store.read_stream(W)[-1].seq
    inject(env, where, fault)
    with leased(env, "rollback"):
        out = env.rollback(reason="error budget burning")
    heal(env)
    assert (1, "incomplete") == (out.exit_code, out.phase), out.document
    events = after(env, head)
    end = rollback_end(events)
    assert end.kind == EventKind.ROLLBACK_INCOMPLETE and where.expect == "incomplete"
    assert not [e for e in events if e.kind == EventKind.ROLLBACK_COMPLETED]  # never "completed, failed"
    assert end.payload["failures"] and "helm rollback hello-web" in end.payload["manual_command"]
    assert verify(env.store).ok
    # The ledger still says v1 is the stable, and v1 is what runs.
    assert lineage(env.store, W).current_stable.digest == image.rsplit("@", 1)[1]
    assert env.live_image() == image
    assert_blocked_until_resolved(env, end)
    with leased(env, "rollback", "bob"):
        done = env.rollback(reason="error budget burning, again")
    assert (0, "rolled-back") == (done.exit_code, done.phase), done.document
    assert env.live_image() == env.stable0
    assert verify(env.store).ok
    assert_unblocked(env)


def test_a_fault_during_observes_automatic_rollback_records_rollback_incomplete(
    stage3_env: Stage3Env,
) -> None:
    """A crash-looping canary is rolled back by ``observe`` itself; helm uninstall cannot delete its
    Deployment: ``rollback.incomplete`` names the release, the result is recorded failed, the workload
    is blocked until a rollback completes."""
    env = stage3_env
    image = env.push("v1.0.0")
    assert env.stage1(image).exit_code == 0
    env.cluster.behaviours.set(image, "crashloop")
    with leased(env, "deploy"):
        assert env.deploy(image).exit_code == 0
    inject(
        env,
        Step(
            "helm uninstall deletes the canary Deployment",
            "DELETE",
            r"/deployments/hello-web-canary$",
            "incomplete",
        ),
        "error",
    )
    with leased(env, "observe"):
        out = env.observe()
    heal(env)
    assert (1, True) == (out.exit_code, out.rolled_back), out.document
    (intent,) = [e for e in env.store.read_stream(W) if e.kind == EventKind.STAGE_STARTED and e.stage == 2]
    events = after(env, intent.seq)
    end = rollback_end(events)
    assert end.kind == EventKind.ROLLBACK_INCOMPLETE, end.payload
    assert "helm uninstall hello-web-canary" in " ".join(map(str, end.payload["remaining_cleanup"]))
    assert_failed_result(events, 2, image.rsplit("@", 1)[1])
    assert verify(env.store).ok
    assert canary_weight(env) is None  # the routing came off first: no traffic on the canary
    assert env.cluster.get("deployments", NS, "hello-web-canary") is not None  # what the ledger names remains
    assert_blocked_until_resolved(env, end)
    with leased(env, "rollback", "bob"):
        done = env.rollback(reason="finish removing the canary")
    assert (0, "canary-removed") == (done.exit_code, done.phase), done.document
    assert canary_gone(env)
    assert verify(env.store).ok
    assert_unblocked(env)
