"""The whole lifecycle through the real CLI (``bin/railiance`` in subprocesses), end to end.

v1 -> v2 -> v3, each: ``railiance run`` (Stage 1, real ``helm template``) on its own commit,
``deploy`` (``--stage 2`` for v1, the default for the others) and ``observe`` (the real Kubernetes control plane with the real helm, the real registry,
real Prometheus, the recording State Hub), ``approve --stage 3`` by a second operator, ``promote``;
then the dry runs of ``deploy``, ``promote`` and ``rollback`` (also ``--to`` v1) print their plans and change
nothing (the helm releases and the ledger's head are the same after them), ``rollback --to`` v3 is
refused naming v2 and v1, ``rollback`` from v3 restores exactly v2, ``rollback --to`` v1 then restores
v1, and ``ledger verify`` passes with every stage result, approval and rollback record in the ledger. Outside probes (smoke, rollback verification) enter
through ``RAILIANCE_INGRESS_URL``, a small HTTP server standing in for the ingress controller.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import lineage
from railiance_ledger.ledger.store import EventStore
from tests.fixtures.cli import CliStage2
from tests.fixtures.stage1 import git
from tests.fixtures.stage2 import helm_binary

pytestmark = pytest.mark.slow


class _Ingress(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def ingress() -> Iterator[str]:
    """An HTTP server answering 200 on every path: the production URL behind the ingress."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingress)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _release(c: CliStage2, tag: str, registry_helper: Any, repository: str) -> str:
    """Commit a change (a new source revision), push ``tag``, return the pinned image."""
    (c.app / "RELEASE").write_text(tag + "\n")
    git(c.app, "add", "-A")
    git(c.app, "commit", "-q", "-m", f"release {tag}")
    digest = registry_helper.push_image(repository, tag)
    return f"{c.image.split('@', 1)[0]}@{digest}"


def _helm_releases(c: CliStage2) -> list[tuple[str, str, int, str]]:
    """Every helm release in the cluster, in any state: (namespace, name, revision, status)."""
    states = ("--deployed", "--failed", "--pending", "--superseded", "--uninstalling")
    proc = subprocess.run(
        [helm_binary(), "list", "--all-namespaces", *states, "--output", "json"],
        env=c.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    return sorted(
        (r["namespace"], r["name"], int(r["revision"]), r["status"]) for r in json.loads(proc.stdout)
    )


def _ledger_head(c: CliStage2) -> int:
    store = EventStore.open(c.ledger)
    try:
        return store.head()[0]
    finally:
        store.close()


def _through_stage3(c: CliStage2, image: str, deploy_args: tuple[str, ...] = ()) -> dict[str, Any]:
    code, doc, out = c.run("run", str(c.app), "--image", image, "--json")
    assert (0, "pass") == (code, doc.get("status")), out
    code, doc, out = c.run("deploy", *deploy_args, str(c.app), "--image", image, "--json")
    assert (0, "deployed") == (code, doc.get("phase")), out
    code, doc, out = c.run("observe", str(c.app), "--image", image, "--json")
    assert (0, "pass") == (code, doc.get("status")), out
    code, doc, out = c.run(
        "approve", str(c.app), "--stage", "3", "--image", image, "--operator", "alice", "--json"
    )
    assert 1 == code and "separation of duties" in out, out  # alice registered and deployed it
    code, doc, out = c.run(
        "approve", str(c.app), "--stage", "3", "--image", image, "--operator", "bob", "--json"
    )
    assert 0 == code, out
    code, doc, out = c.run("promote", str(c.app), "--image", image, "--json")
    assert (0, "pass") == (code, doc.get("status")), out
    return doc


@pytest.mark.timeout(
    900
)  # three releases through Stage 3, the dry runs and two rollbacks on a loaded 2-core machine
def test_full_lifecycle_v1_v2_v3_then_rollback_through_the_cli(
    cli_stage2: CliStage2, registry_helper: Any, registry_repository: str, ingress: str
) -> None:
    c = cli_stage2
    c.env["RAILIANCE_INGRESS_URL"] = ingress
    images = [_release(c, tag, registry_helper, registry_repository) for tag in ("v1.0.0",)]
    _through_stage3(c, images[0], ("--stage", "2"))
    for tag in ("v2.0.0", "v3.0.0"):
        images.append(_release(c, tag, registry_helper, registry_repository))
        doc = _through_stage3(c, images[-1])
        assert images[-2].split("@", 1)[1] == (doc.get("rollback_target") or {}).get("digest"), doc
    v1, v2, v3 = images
    deploy = c.cluster.get("deployments", "hello-web", "hello-web")
    assert v3 in json.dumps(deploy["spec"]["template"])

    code, doc, out = c.run("lineage", "hello-web", "--json")
    assert 0 == code, out
    assert (v3.split("@")[1], v2.split("@")[1]) == (
        doc["current_stable"]["digest"],
        doc["rollback_target"]["digest"],
    )

    releases, head = _helm_releases(c), _ledger_head(c)
    assert ("hello-web", "hello-web") in {(ns, name) for ns, name, _, _ in releases}, releases
    for args in (
        ("deploy", str(c.app), "--image", v3),
        ("promote", str(c.app), "--image", v3),
        ("rollback", str(c.app), "--reason", "dry"),
        ("rollback", str(c.app), "--reason", "dry", "--to", v1),
    ):
        code, doc, out = c.run(*args, "--dry-run", "--json")
        assert (0, True) == (code, doc.get("dry_run")), out
        assert doc["objects"] and doc["routing"] and doc["rollback_target"], doc
        if "--to" in args:
            assert v1.split("@")[1] == doc["rollback_target"]["digest"], doc
        elif args[0] == "rollback":
            assert v2.split("@")[1] == doc["rollback_target"]["digest"], doc
    code, doc, out = c.run("rollback", str(c.app), "--reason", "dry", "--dry-run")
    assert 0 == code and "rollback target: " in out and "nothing was changed" in out, out
    code, doc, out = c.run("rollback", str(c.app), "--reason", "no", "--to", v3.split("@")[1], "--json")
    assert (2, "InvalidInput") == (code, doc.get("error")), out
    assert v2.split("@")[1] in doc["message"] and v1.split("@")[1] in doc["message"], doc
    assert (releases, head) == (_helm_releases(c), _ledger_head(c))

    code, doc, out = c.run("rollback", str(c.app), "--reason", "v3 error budget burning", "--json")
    assert 0 == code, out
    deploy = c.cluster.get("deployments", "hello-web", "hello-web")
    assert v2 in json.dumps(deploy["spec"]["template"]) and v3 not in json.dumps(deploy["spec"]["template"])

    store = EventStore.open(c.ledger)
    try:
        lin = lineage(store, "hello-web")
        assert (v2.split("@")[1], v1.split("@")[1]) == (lin.current_stable.digest, lin.rollback_target.digest)
        kinds = [e.kind for e in store.read_stream("hello-web")]
    finally:
        store.close()
    assert 3 == sum(1 for k in kinds if k == EventKind.PROMOTION_COMPLETED)
    assert 3 == sum(1 for k in kinds if k == EventKind.APPROVAL_GRANTED)
    assert {EventKind.ROLLBACK_STARTED, EventKind.ROLLBACK_COMPLETED} <= set(kinds)
    assert 9 <= sum(1 for k in kinds if k == EventKind.STAGE_COMPLETED)
    code, doc, out = c.run("ledger", "verify", "--json")
    assert (0, True) == (code, doc.get("ok")), out
    code, doc, out = c.run("status", "hello-web", "--json")
    states = {cand["digest"]: cand["state"] for cand in doc["candidates"]}
    assert ("stable", "rolled-back") == (states[v2.split("@")[1]], states[v3.split("@")[1]])
    code, doc, out = c.run("status", "hello-web")
    assert 0 == code, out
    assert f"stable: {v2} since " in out and f"rollback target: {v1}" in out, out
    assert "approved by bob at " in out and "v3 error budget burning" in out, out

    code, doc, out = c.run("rollback", str(c.app), "--reason", "back to v1", "--to", v1, "--json")
    assert 0 == code, out
    deploy = c.cluster.get("deployments", "hello-web", "hello-web")
    assert v1 in json.dumps(deploy["spec"]["template"]) and v2 not in json.dumps(deploy["spec"]["template"])
    code, doc, out = c.run("lineage", "hello-web", "--json")
    assert (v1.split("@")[1], [v1.split("@")[1]]) == (doc["current_stable"]["digest"], doc["stack"]), doc
    code, doc, out = c.run("ledger", "verify", "--json")
    assert (0, True) == (code, doc.get("ok")), out
