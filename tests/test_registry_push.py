"""Issue 16 items 3 and 4: push notifications from the real docker-registry, and image indexes.

Each test runs its own registry whose ``notifications.endpoints`` (in the registry's own config)
point at a ``WebhookServer`` storing into a spool; the Dagster sensors are evaluated with
``build_sensor_context`` on a real instance. Timings are not asserted here (bench/sensor_tick.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import SensorResult, SkipReason

from railiance_ledger.domain.events import EventKind
from railiance_ledger.ledger.projections import partition_key
from sensors import new_digest_sensor, registry_push_sensor
from tests.fixtures.dagster import DagsterEnv, make_app
from tests.fixtures.registry import WEBHOOK_SECRET, NotifyingRegistry
from tests.harness import wait_until

REVISION_LABEL = "org.opencontainers.image.revision"


@pytest.fixture
def push_env(
    tmp_path: Path,
    dagster_instance: Any,
    notifying_registry: NotifyingRegistry,
    registry_repository: str,
    monkeypatch: pytest.MonkeyPatch,
) -> DagsterEnv:
    """hello-web declared at ``<notifying registry host>/<repo>`` (plain HTTP declared for that
    loopback host in a registries file), the spool in the environment, no registry override."""
    host = notifying_registry.server.host
    settings = tmp_path / "registries.toml"
    settings.write_text(f'[registries."{host}"]\nplain_http = true\n')
    monkeypatch.setenv("RAILIANCE_REGISTRIES", str(settings))
    monkeypatch.setenv("RAILIANCE_WEBHOOK_SPOOL", str(notifying_registry.spool.path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    for name in ("RAILIANCE_REGISTRY_URL", "RAILIANCE_REGISTRY_USERNAME", "RAILIANCE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    apps = tmp_path / "apps"
    apps.mkdir()
    app = make_app(apps, name="hello-web", repository=registry_repository)
    toml = app / "railiance" / "app.toml"
    toml.write_text(toml.read_text().replace("registry.local/", f"{host}/"))
    from railiance_ledger.ledger.store import EventStore

    EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    env = DagsterEnv(
        apps_dir=apps,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        registry_url="",
        repository=registry_repository,
        instance=dagster_instance,
        tmp_path=tmp_path,
    )
    return env


def _resources(env: DagsterEnv) -> dict[str, Any]:
    from assets.resources import RegistryResource

    return {"registry": RegistryResource(url=None, timeout=5.0)}


def _launch(env: DagsterEnv, result: Any) -> Any:
    """Create a run for each run request, as the daemon does (a test context launches nothing)."""
    from dagster._core.test_utils import create_run_for_test

    for req in getattr(result, "run_requests", None) or []:
        create_run_for_test(
            env.instance, job_name="stage1", tags={**req.tags, "dagster/partition": req.partition_key}
        )
    return result


def _registrations(env: DagsterEnv) -> list[Any]:
    with env.store() as store:
        return [e for e in store.read_stream("hello-web") if e.kind == EventKind.CANDIDATE_REGISTERED]


def _wait_for_notice(reg: NotifyingRegistry, digest: str) -> Any:
    found: list[Any] = []

    def arrived() -> bool:
        found[:] = [n for n in reg.spool.since(0) if n.digest == digest and n.tag]
        return bool(found)

    wait_until(arrived, timeout=30.0, what=f"a push notification for {digest}")
    return found[0]


def _head(env: DagsterEnv) -> str:
    from tests.fixtures.stage1 import git

    return git(env.apps_dir / "hello-web", "rev-parse", "HEAD").strip()


def test_a_push_registers_the_candidate_and_requests_stage1(
    push_env: DagsterEnv, notifying_registry: NotifyingRegistry
) -> None:
    revision = _head(push_env)
    digest = notifying_registry.helper.push_image(
        push_env.repository,
        "v1.0.0",
        labels={
            REVISION_LABEL: revision,
            "org.opencontainers.image.source": "https://forge.example/railiance-apps/hello-web",
        },
    )
    notice = _wait_for_notice(notifying_registry, digest)
    assert notice.host == notifying_registry.server.host and notice.tag == "v1.0.0"

    result = _launch(push_env, push_env.tick(registry_push_sensor, **_resources(push_env)))

    assert isinstance(result, SensorResult)
    key = partition_key("hello-web", digest)
    assert [key] == [r.partition_key for r in result.run_requests]
    assert result.run_requests[0].tags["railiance/source"] == "webhook"
    [reg] = _registrations(push_env)
    assert reg.candidate == digest and reg.payload["source"] == "webhook"
    assert reg.payload["revision"] == revision and reg.payload["revision_source"] == "image-label"
    assert reg.payload["source_url"] == "https://forge.example/railiance-apps/hello-web"

    # The cursor moves on: the next tick reads nothing; the polling sensor finds it registered.
    again = push_env.tick(registry_push_sensor, cursor=result.cursor, **_resources(push_env))
    assert isinstance(again, SkipReason) or not again.run_requests
    polled = push_env.tick(new_digest_sensor, **_resources(push_env))
    assert not getattr(polled, "run_requests", None)
    assert 1 == len(_registrations(push_env))


def test_replayed_and_forged_notifications_register_nothing_twice(
    push_env: DagsterEnv, notifying_registry: NotifyingRegistry
) -> None:
    digest = notifying_registry.helper.push_image(push_env.repository, "v1.0.0")
    notice = _wait_for_notice(notifying_registry, digest)
    first = _launch(push_env, push_env.tick(registry_push_sensor, **_resources(push_env)))
    assert 1 == len(first.run_requests)
    stored_before = len(notifying_registry.spool.since(0))

    envelope = {
        "events": [
            {
                "id": notice.id,
                "action": "push",
                "target": {
                    "mediaType": notice.media_type,
                    "digest": digest,
                    "repository": push_env.repository,
                    "tag": "v1.0.0",
                },
                "request": {"host": notice.host},
            }
        ]
    }
    url = notifying_registry.receiver.url
    replay = httpx.post(
        url, content=json.dumps(envelope), headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    )
    assert replay.status_code == 200 and replay.text.strip() == "stored 0"
    forged = httpx.post(
        url, content=json.dumps(envelope), headers={"Authorization": "Bearer wrong-secret-xxxxxxxx"}
    )
    assert forged.status_code == 401
    unsigned = httpx.post(url, content=json.dumps(envelope))
    assert unsigned.status_code == 401
    assert (
        httpx.post(
            url, content=b"{not json", headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}
        ).status_code
        == 400
    )
    assert len(notifying_registry.spool.since(0)) == stored_before

    # A new event id for the same digest (a second delivery), read again from a lost cursor.
    envelope["events"][0]["id"] = "replayed-with-a-new-id"
    assert (
        httpx.post(url, content=json.dumps(envelope), headers={"Authorization": WEBHOOK_SECRET}).status_code
        == 200
    )
    again = push_env.tick(registry_push_sensor, cursor=None, **_resources(push_env))
    assert not getattr(again, "run_requests", None)
    assert 1 == len(_registrations(push_env))


def test_receiver_down_during_a_push_polling_catches_it(
    push_env: DagsterEnv, notifying_registry: NotifyingRegistry
) -> None:
    notifying_registry.receiver.stop()
    digest = notifying_registry.helper.push_image(push_env.repository, "v1.0.0")
    assert not [n for n in notifying_registry.spool.since(0) if n.digest == digest]

    polled = _launch(push_env, push_env.tick(new_digest_sensor, **_resources(push_env)))

    assert [partition_key("hello-web", digest)] == [r.partition_key for r in polled.run_requests]
    [reg] = _registrations(push_env)
    assert reg.payload["source"] == "sensor"

    # The registry keeps retrying; once the receiver is back the late notification registers nothing.
    notifying_registry.start_receiver()
    _wait_for_notice(notifying_registry, digest)
    late = push_env.tick(registry_push_sensor, **_resources(push_env))
    assert not getattr(late, "run_requests", None)
    assert 1 == len(_registrations(push_env))


def test_an_image_index_registers_the_index_digest_with_its_platforms(
    push_env: DagsterEnv, notifying_registry: NotifyingRegistry
) -> None:
    helper = notifying_registry.helper
    revision = _head(push_env)
    amd = helper.push_image(push_env.repository, labels={REVISION_LABEL: revision}, platform="linux/amd64")
    arm = helper.push_image(push_env.repository, labels={REVISION_LABEL: revision}, platform="linux/arm64/v8")
    index = helper.push_index(
        push_env.repository, "v2.0.0", [amd, arm], platforms=["linux/amd64", "linux/arm64/v8"]
    )
    _wait_for_notice(notifying_registry, index)

    result = push_env.tick(registry_push_sensor, **_resources(push_env))

    assert [partition_key("hello-web", index)] == [r.partition_key for r in result.run_requests]
    [reg] = _registrations(push_env)
    assert reg.candidate == index
    assert reg.payload["platforms"] == {"linux/amd64": amd, "linux/arm64/v8": arm}
    assert reg.payload["revision"] == revision


def test_webhook_serve_command(tmp_path: Path) -> None:
    """``railiance webhook serve``: the secret from the environment only, stores what it is sent, exit 2
    without a secret."""
    import os
    import signal
    import subprocess
    import sys

    from tests.harness import free_port

    exe = str(Path(sys.executable).parent / "railiance")
    env = {k: v for k, v in os.environ.items() if k != "RAILIANCE_WEBHOOK_SECRET"}
    env["RAILIANCE_HOME"] = str(tmp_path / "home")
    missing = subprocess.run(
        [exe, "webhook", "serve", "--listen", "127.0.0.1:0"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "RAILIANCE_WEBHOOK_SECRET" in missing.stderr

    port = free_port()
    spool = tmp_path / "events.db"
    proc = subprocess.Popen(
        [exe, "webhook", "serve", "--listen", f"127.0.0.1:{port}", "--spool", str(spool)],
        env={**env, "RAILIANCE_WEBHOOK_SECRET": WEBHOOK_SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}/registry/events" in line, line + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        envelope = {
            "events": [
                {
                    "id": "cli-1",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "digest": "sha256:" + "d" * 64,
                        "repository": "team/app",
                        "tag": "v1.0.0",
                    },
                    "request": {"host": "127.0.0.1:5000"},
                },
                {
                    "id": "cli-2",
                    "action": "pull",
                    "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json"},
                },
            ]
        }
        answer = httpx.post(
            f"http://127.0.0.1:{port}/registry/events",
            json=envelope,
            headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
        )
        assert answer.status_code == 200 and answer.text.strip() == "stored 1"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    from railiance_ledger.adapters.push_spool import PushSpool

    [notice] = PushSpool(spool).since(0)
    assert (notice.id, notice.host, notice.repository, notice.tag) == (
        "cli-1",
        "127.0.0.1:5000",
        "team/app",
        "v1.0.0",
    )


def test_registered_without_a_run_gets_one_from_the_push_sensor(
    push_env: DagsterEnv, notifying_registry: NotifyingRegistry
) -> None:
    """The receiver's fast path registered the push but could not launch Stage 1 (Dagster down): the
    push sensor reads the same spool and requests the run, once."""
    from railiance_ledger.lifecycle.registry_push import FastPath

    digest = notifying_registry.helper.push_image(push_env.repository, "v1.0.0")
    notice = _wait_for_notice(notifying_registry, digest)
    fast = FastPath(
        apps_dir=push_env.apps_dir,
        ledger_url=push_env.ledger_url,
        dagster=None,
        operator="webhook",
        any_host=False,
        env=dict(os.environ),
    )
    fast([notice])
    [reg] = _registrations(push_env)
    assert reg.payload["source"] == "webhook"

    result = _launch(push_env, push_env.tick(registry_push_sensor, **_resources(push_env)))
    assert [partition_key("hello-web", digest)] == [r.partition_key for r in result.run_requests]
    again = push_env.tick(registry_push_sensor, cursor=None, **_resources(push_env))
    assert not getattr(again, "run_requests", None)
    assert 1 == len(_registrations(push_env))
