"""The CLI SIGKILLed at each step of deploy, promote and rollback (issue 11, item 3).

Real ``bin/railiance`` processes against the real control plane, helm, registry, Prometheus and State
Hub (the ``cli_stage2`` fixture). The pause point is deterministic: the fault proxy holds one
apiserver call of the step (``hold``: never forwarded), the test waits until the call arrived, then
SIGKILLs the CLI's process group (the CLI and the helm it runs), as a power loss would.

Then: the dead holder's lease is visible in ``status`` and still refuses other commands (exit 3,
naming the dead pid); once it has expired, the next action sees it and the intent the dead holder
recorded: any action but ``rollback`` records ``rollback.incomplete`` naming what remains and
refuses (exit 3); a ``rollback`` takes over and completes it, recording the stage's failed result.
The ledger verifies and the cluster is what the ledger says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from railiance_ledger.adapters.helm import Helm
from railiance_ledger.adapters.kube import Kube
from railiance_ledger.declaration.loader import load_declaration
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.errors import AdapterNotFound, WorkloadBlocked
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.actions import acting, action_state
from railiance_ledger.lifecycle.rollback import rollback
from tests.fixtures.cli import RAILIANCE, CliStage2
from tests.fixtures.stage2 import helm_binary
from tests.test_actions_race import ready_to_promote, release

pytestmark = pytest.mark.slow

W = "hello-web"
NS = "hello-web"
LATER = datetime.now(UTC) + timedelta(hours=3)
"""A moment after every lease a test takes has expired."""

# step -> (command, HTTP method, path regex, query regex): one apiserver call the step makes
CRASH_POINTS: dict[str, tuple[str, str, str, str]] = {
    "deploy-helm-install": ("deploy", "PATCH", r"/deployments/hello-web-canary$", "fieldManager=helm"),
    "deploy-canary-routing": ("deploy", "PATCH", r"/ingresses/hello-web-canary$", ""),
    "promote-weighted-shift": ("promote", "PATCH", r"/ingresses/hello-web-canary$", ""),
    "promote-helm-upgrade": ("promote", "PATCH", r"/deployments/hello-web$", "fieldManager=helm"),
    "rollback-helm-rollback": ("rollback", "PATCH", r"/deployments/hello-web$", "fieldManager=helm"),
}


def start(c: CliStage2, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RAILIANCE, *args],
        env=c.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=c.app.parent,
        start_new_session=True,  # its own process group: the CLI and the helm it runs die together
    )


def kill_at(c: CliStage2, point: str, args: tuple[str, ...]) -> int:
    """Run the CLI until the held call of ``point`` arrives, then SIGKILL it; return its pid."""
    _command, method, path, query = CRASH_POINTS[point]
    faults = c.cluster.faults
    rule = faults.add(path, methods=[method], query=query, latency=120.0, hold=True)
    proc = start(c, *args)
    try:
        deadline = time.monotonic() + 180
        while not any(f.id == rule.id and f.hits for f in faults.faults()):
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"the CLI ended before reaching {point}: {proc.returncode} {out}")
            assert time.monotonic() < deadline, f"{point} never reached"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    finally:
        faults.clear()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return proc.pid


@contextmanager
def store_of(c: CliStage2) -> Iterator[EventStore]:
    store = EventStore.open(c.ledger)
    try:
        yield store
    finally:
        store.close()


def adapters(c: CliStage2) -> tuple[Kube, Helm]:
    kube = Kube.from_kubeconfig(c.env["KUBECONFIG"], timeout=10.0)
    helm_env = {k: c.env[k] for k in ("KUBECONFIG", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")}
    return kube, Helm(helm_binary(), env=helm_env)


def cli(c: CliStage2, *args: str) -> tuple[int, str]:
    code, _doc, out = c.run(*args)
    return code, out


def canary_gone(c: CliStage2, helm: Helm) -> bool:
    try:
        helm.history(release="hello-web-canary", namespace=NS)
        return False
    except AdapterNotFound:
        pass
    return (
        c.cluster.get("deployments", NS, "hello-web-canary") is None
        and c.cluster.get("ingresses", NS, "hello-web-canary") is None
    )


def live_image(c: CliStage2) -> str:
    dep = c.cluster.get("deployments", NS, "hello-web")
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def prepare(c: CliStage2, point: str, registry_helper: Any, repository: str) -> tuple[str, tuple[str, ...]]:
    """The ledger and cluster just before ``point``'s command; the image and the command to kill."""
    command = CRASH_POINTS[point][0]
    image = release(c, "v1.0.0", registry_helper, repository)
    if command == "deploy":
        code, out = cli(c, "run", str(c.app), "--image", image, "--json")
        assert code == 0, out
        return image, ("deploy", "--stage", "2", str(c.app), "--image", image, "--json")
    ready_to_promote(c, image)
    if command == "promote":
        return image, ("promote", str(c.app), "--image", image, "--json")
    code, out = cli(c, "promote", str(c.app), "--image", image, "--json")
    assert code == 0, out
    return image, ("rollback", str(c.app), "--reason", "error budget burning", "--json")


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_a_cli_killed_at_a_step_leaves_an_intent_the_next_action_finishes(
    cli_stage2: CliStage2, registry_helper: Any, registry_repository: str, point: str
) -> None:
    c = cli_stage2
    command = CRASH_POINTS[point][0]
    image, args = prepare(c, point, registry_helper, registry_repository)
    with store_of(c) as store:
        before = store.read_stream(W)[-1].seq
    pid = kill_at(c, point, args)

    # The dead holder's lease is visible, not yet expired, and still refuses other commands.
    code, out = cli(c, "--json", "status", W)
    lease = json.loads(out)["lease"]
    assert code == 0 and lease["holder"].endswith(f":{pid}") and lease["expired"] is False, out
    code, out = cli(c, "approve", str(c.app), "--stage", "3", "--image", image, "--operator", "carol")
    assert code == 3 and f":{pid}" in out, out

    with store_of(c) as store:
        events = [e for e in store.read_stream(W) if e.seq > before]
        intent = [e for e in events if e.kind in (EventKind.STAGE_STARTED, EventKind.ROLLBACK_STARTED)]
        assert intent, [e.kind for e in events]  # the intent was recorded before the effect
        assert not [e for e in events if e.kind == EventKind.LEASE_RELEASED]

        # Once the lease has expired, any action but rollback records what the dead holder left open
        # (rollback.incomplete) and refuses.
        with (
            pytest.raises(WorkloadBlocked, match="after recording its intent"),
            acting(store, W, "observe", "bob", now=lambda: LATER),
        ):
            pytest.fail("the workload must be blocked")
        state = action_state(store, W)
        assert state.lease is None and state.blocker is not None
        assert f":{pid}" in state.blocker.reason and "railiance rollback" in state.blocker.manual_command
        code, out = cli(c, "--json", "status", W)
        assert code == 0 and json.loads(out)["blocked_by"]["seq"] == state.blocker.seq, out
        code, out = cli(c, "deploy", "--stage", "2", str(c.app), "--image", image)
        assert code == 3 and "incomplete rollback" in out, out

        # A rollback completes what was left (the CLI's service, in this process).
        kube, helm = adapters(c)
        with acting(store, W, "rollback", "bob") as act, httpx.Client(timeout=10.0) as http:
            done = rollback(
                store=act.store,
                decl=load_declaration(c.app),
                operator="bob",
                kube=kube,
                helm=helm,
                http=http,
                reason=f"finish what the killed {command} left",
                home=Path(c.env["RAILIANCE_HOME"]),
                ready_timeout=60.0,
            )
        assert done.exit_code == 0, done.document
        assert action_state(store, W).blocker is None
        tail = [e for e in store.read_stream(W) if e.seq > before]
        ends = [e for e in tail if e.kind in (EventKind.ROLLBACK_COMPLETED, EventKind.ROLLBACK_INCOMPLETE)]
        assert ends[-1].kind == EventKind.ROLLBACK_COMPLETED
        assert_failed_result(tail, command, image)
        lin = lineage(store, W)
    code, out = cli(c, "ledger", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"], out

    # The cluster is what the ledger says.
    assert canary_gone(c, helm) or command != "deploy"
    digest = image.rsplit("@", 1)[1]
    if command == "deploy":
        assert canary_gone(c, helm)
    else:
        assert lin.current_stable is None or lin.current_stable.digest != digest
        assert digest not in live_image(c)  # the killed promotion / the rollback's target: not v1
        assert c.cluster.get("ingresses", NS, "hello-web-canary") is None or command == "rollback"
    code, out = cli(c, "approve", str(c.app), "--stage", "3", "--image", image, "--operator", "carol")
    assert code != 3 or "incomplete rollback" not in out, out  # unblocked


def assert_failed_result(events: list[RecordedEvent], command: str, image: str) -> None:
    """A killed deploy or promote gets its failed stage result; a killed rollback has none to get."""
    if command == "rollback":
        return
    stage = 2 if command == "deploy" else 3
    results = [e for e in events if e.kind == EventKind.STAGE_COMPLETED and e.stage == stage]
    assert results and results[-1].payload["status"] == "fail", [e.kind for e in events]
    assert results[-1].candidate == image.rsplit("@", 1)[1]
