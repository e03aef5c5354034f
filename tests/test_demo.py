"""``make demo`` end to end: ``scripts/demo`` in a subprocess, then its ledger read back.

The demo starts its own control plane, registry, Prometheus, gateway and State Hub stand-in, tells
the story with the real ``railiance`` CLI and stops everything. This test checks what the story
claims against the ledger (not against the demo's printout): v1 promoted with bob's signed approval
and then the rollback target of v3; v2's canary failed and was rolled back at Stage 2, never
promoted; v3 promoted and then rolled back to v1; the hash chain verifies. And that nothing the
demo started outlives it: no process carrying this run's marker, no test network namespace.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.ledger.store import EventStore
from tests.harness.kube_real import binaries_dir
from tests.harness.netns import available as network_available

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"required on CI: {reason}")
    pytest.skip(reason)


def _marked_processes(marker: str) -> list[str]:
    """``pid cmdline`` of every live process whose environment carries ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (proc / "environ").read_bytes():
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        found.append(f"{proc.name} {cmdline.strip()}")
    return found


def run_demo(work: Path) -> tuple[int, str, str]:
    """``scripts/demo`` writing under ``work``, with a marker in its environment every process it
    starts inherits; returns (exit code, output, marker)."""
    if binaries_dir() is None:
        _skip_or_fail("control-plane binaries not built: run scripts/k8s-binaries")
    reason = network_available()
    if reason is not None:
        _skip_or_fail(f"the demo needs the test network: {reason}")
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAILIANCE_") and k != "KUBECONFIG"}
    env["RAILIANCE_DEMO_DIR"] = str(work)
    env["RAILIANCE_DEMO_TEST_MARK"] = marker
    proc = subprocess.run(
        [str(DEMO)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1400, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr, f"RAILIANCE_DEMO_TEST_MARK={marker}"


def test_demo_tells_the_whole_story_the_ledger_agrees_and_nothing_outlives_it(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    code, out, marker = run_demo(work)
    assert 0 == code, out[-6000:]

    # nothing the demo started outlives it: no process with its marker, no test network namespace
    assert [] == _marked_processes(marker)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    printed = re.findall(r"test network: netns (railiance-\d+)", out)
    assert printed, "the demo names its test network"
    assert printed[0] not in netns.split()

    facts = json.loads((work / "story.json").read_text())
    v = {name: info["digest"] for name, info in facts["versions"].items()}
    assert {"v0", "v1", "v2", "v3"} == set(v)

    # the story as printed: the commands it claims to run, and their outcomes
    assert re.search(r"\$ railiance deploy .*--image \$V2", out), out
    assert "$ railiance promote hello-web --image $V3" in out
    assert "$ railiance rollback hello-web --reason" in out
    v2_chapter = out[out.index("== v2") : out.index("== v3")]
    assert "Stage 2 fail:" in v2_chapter and "rolled back automatically" in v2_chapter

    ledger = f"sqlite:///{work / 'home' / 'ledger.db'}"
    store = EventStore.open(ledger)
    try:
        events = store.read_stream("hello-web")
        lin = lineage(store, "hello-web")
    finally:
        store.close()

    def of(version: str, kind: str, stage: int | None = None) -> list[Any]:
        return [
            e
            for e in events
            if e.candidate == v[version] and e.kind == kind and (stage is None or e.stage == stage)
        ]

    # v1: through Stage 3, approved by bob with a verified SSH signature
    (approval,) = of("v1", EventKind.APPROVAL_GRANTED, 3)
    assert ("bob", "bob") == (approval.actor, approval.payload["signature"]["principal"])
    assert 1 == len(of("v1", EventKind.PROMOTION_COMPLETED))
    # v2: the canary failed and was rolled back automatically at Stage 2; never promoted
    (v2_stage2,) = of("v2", EventKind.STAGE_COMPLETED, 2)
    assert "fail" == v2_stage2.payload["status"]
    assert of("v2", EventKind.ROLLBACK_COMPLETED, 2) and not of("v2", EventKind.PROMOTION_COMPLETED)
    assert not of("v2", EventKind.APPROVAL_GRANTED)
    # v3: promoted with v1 as its rollback target, then rolled back by the operator
    (v3_stage3,) = of("v3", EventKind.STAGE_COMPLETED, 3)
    assert ("pass", v["v1"]) == (v3_stage3.payload["status"], v3_stage3.payload["rollback_target"]["digest"])
    (v3_promotion,) = of("v3", EventKind.PROMOTION_COMPLETED)
    (v3_rollback,) = of("v3", EventKind.ROLLBACK_COMPLETED)
    assert v3_rollback.seq > v3_promotion.seq
    assert "v3 burns its error budget" in json.dumps(v3_rollback.payload)
    # production is v1 again; what a further rollback would return to is v0 (the declared previous stable)
    assert lin.current_stable is not None and v["v1"] == lin.current_stable.digest
    assert lin.rollback_target is not None and v["v0"] == lin.rollback_target.digest

    env = {k: x for k, x in os.environ.items() if not k.startswith("RAILIANCE_")}
    verify = subprocess.run(
        [str(ROOT / "bin" / "railiance"), "--ledger", ledger, "ledger", "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (0, True) == (verify.returncode, json.loads(verify.stdout).get("ok")), (
        verify.stdout + verify.stderr
    )
    status = subprocess.run(
        [str(ROOT / "bin" / "railiance"), "--ledger", ledger, "status", "hello-web", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    states = {c["digest"]: c["state"] for c in json.loads(status.stdout)["candidates"]}
    assert ("stable", "rolled-back", "rolled-back") == (states[v["v1"]], states[v["v2"]], states[v["v3"]])
