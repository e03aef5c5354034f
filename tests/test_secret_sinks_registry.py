"""Registry credentials and the webhook secret reach no sink (issue 16 item 2, test_secret_sinks.py style).

Inputs: a docker config ``auths`` entry and a credential helper's answer for the token-auth registry,
the bearer tokens its token server issues, the webhook's shared secret. Sinks: the raw bytes of
the ledger database, the push spool's raw bytes, the sensors' results (cursor, tags, metadata,
skip reasons), every log record, and the errors raised when the registry refuses.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from railiance_ledger.domain.events import EventKind
from sensors import new_digest_sensor
from tests.fixtures.dagster import DagsterEnv, make_app
from tests.fixtures.registry import TOKEN_REGISTRY_CREDENTIALS, WEBHOOK_SECRET, write_credential_helper

USER, PASSWORD = TOKEN_REGISTRY_CREDENTIALS
TOKEN_PREFIX = base64.urlsafe_b64encode(b'{"typ": "JWT"').decode()[:12]  # every issued token starts so


def _secrets() -> list[str]:
    return [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), TOKEN_PREFIX, WEBHOOK_SECRET]


def _no_secret(blob: str | bytes, where: str) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    leaked = [s for s in _secrets() if s in text]
    assert not leaked, f"{where}: {leaked}"


@pytest.fixture
def token_env(
    tmp_path: Path,
    dagster_instance: Any,
    token_registry_server: Any,
    registry_repository: str,
    monkeypatch: pytest.MonkeyPatch,
) -> DagsterEnv:
    host = token_registry_server.host
    settings = tmp_path / "registries.toml"
    settings.write_text(f'[registries."{host}"]\nplain_http = true\n')
    monkeypatch.setenv("RAILIANCE_REGISTRIES", str(settings))
    for name in ("RAILIANCE_REGISTRY_URL", "RAILIANCE_REGISTRY_USERNAME", "RAILIANCE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    apps = tmp_path / "apps"
    apps.mkdir()
    app = make_app(apps, name="hello-web", repository=registry_repository)
    toml = app / "railiance" / "app.toml"
    toml.write_text(toml.read_text().replace("registry.local/", f"{host}/"))
    from railiance_ledger.ledger.store import EventStore

    EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    return DagsterEnv(
        apps_dir=apps,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        registry_url="",
        repository=registry_repository,
        instance=dagster_instance,
        tmp_path=tmp_path,
    )


def _res() -> dict[str, Any]:
    from assets.resources import RegistryResource

    return {"registry": RegistryResource(url=None, timeout=5.0)}


def _result_text(result: Any) -> str:
    parts = [repr(getattr(result, "skip_message", "")), str(getattr(result, "cursor", ""))]
    for req in getattr(result, "run_requests", None) or []:
        parts.append(json.dumps(req.tags))
    for ev in getattr(result, "asset_events", None) or []:
        parts.append(repr(ev.metadata))
    return "\n".join(parts)


@pytest.mark.parametrize("where", ["auths", "helper"])
def test_registry_credentials_reach_no_sink(
    where: str,
    token_env: DagsterEnv,
    token_registry_server: Any,
    token_registry_helper: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = token_registry_server.host
    docker = tmp_path / "docker"
    docker.mkdir()
    if where == "auths":
        config = {"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    else:
        write_credential_helper(tmp_path / "bin", "railtest", {host: (USER, PASSWORD)})
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        config = {"credHelpers": {host: "railtest"}}
    (docker / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    digest = token_registry_helper.push_image(
        token_env.repository, "v1.0.0", labels={"org.opencontainers.image.revision": "a" * 40}
    )
    caplog.set_level(logging.DEBUG)

    result = token_env.tick(new_digest_sensor, **_res())

    assert [digest] == [r.tags["railiance/digest"] for r in result.run_requests]
    with token_env.store() as store:
        [reg] = [e for e in store.read_stream("hello-web") if e.kind == EventKind.CANDIDATE_REGISTERED]
    assert reg.payload["revision"] == "a" * 40  # the label was read with the user's credentials
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    _no_secret(raw, "raw ledger bytes")
    _no_secret(_result_text(result), "sensor result")
    _no_secret(caplog.text, "log records")

    # The registry refusing wrong credentials: the skip reason and logs name no secret.
    wrong = {"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}-wrong".encode()).decode()}}}
    (docker / "config.json").write_text(json.dumps(wrong))
    refused = token_env.tick(new_digest_sensor, cursor='{"hello-web": {}}', **_res())
    text = _result_text(refused)
    assert "refused" in text or "401" in text or "UNAUTHORIZED" in text.upper()
    _no_secret(text, "refusal")
    assert f"{PASSWORD}-wrong" not in text + caplog.text


def test_webhook_secret_and_bodies_reach_no_sink(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from railiance_ledger.adapters.push_spool import PushSpool
    from railiance_ledger.adapters.webhook_server import WebhookServer

    caplog.set_level(logging.DEBUG)
    spool = PushSpool(tmp_path / "spool.db")
    server = WebhookServer(spool, secret=WEBHOOK_SECRET).start()
    try:
        envelope = {
            "events": [
                {
                    "id": "ev-1",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": "sha256:" + "c" * 64,
                        "repository": "team/app",
                        "tag": "v1.0.0",
                        "url": f"http://{USER}:{PASSWORD}@127.0.0.1:5000/v2/team/app/manifests/sha256:{'c' * 64}",
                    },
                    "request": {"host": "127.0.0.1:5000", "useragent": f"docker token={PASSWORD}"},
                    "actor": {"name": USER},
                }
            ]
        }
        ok = httpx.post(server.url, json=envelope, headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
        assert ok.status_code == 200
        bad = httpx.post(server.url, json=envelope, headers={"Authorization": f"Bearer {WEBHOOK_SECRET}x"})
        assert bad.status_code == 401
    finally:
        server.stop()
    assert [n.digest for n in spool.since(0)] == ["sha256:" + "c" * 64]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("spool.db*"))
    _no_secret(raw, "spool bytes")
    assert PASSWORD.encode() not in raw
    _no_secret(caplog.text, "receiver logs")
