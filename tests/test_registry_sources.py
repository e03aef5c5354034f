"""Issue 16 items 1 and 2: the registry named by each image reference, the user's own credentials.

Pure: reference parsing with the Docker CLI's defaults; the docker config / auth file / credential
helper lookup. Real: two docker-registry processes at once, one with token auth whose credentials
come from a credential helper script named in a docker config (credHelpers), one plain; each
workload polled at its own registry.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.adapters.docker_credentials import DockerCredentialStore
from railiance_ledger.adapters.registries import RegistryPool, RegistrySettings, load_registry_settings
from railiance_ledger.domain.image_ref import ReferenceError, parse_reference
from railiance_ledger.errors import AdapterAuthError, AdapterUnavailable, InvalidInput
from tests.fixtures.registry import TOKEN_REGISTRY_CREDENTIALS, write_credential_helper

# ----------------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "registry", "path", "api"),
    [
        ("nginx", "docker.io", "library/nginx", "registry-1.docker.io"),
        ("nginx:1.27", "docker.io", "library/nginx", "registry-1.docker.io"),
        ("docker.io/nginx", "docker.io", "library/nginx", "registry-1.docker.io"),
        ("index.docker.io/team/app", "docker.io", "team/app", "registry-1.docker.io"),
        ("team/app", "docker.io", "team/app", "registry-1.docker.io"),
        ("registry.example:5000/team/app", "registry.example:5000", "team/app", "registry.example:5000"),
        ("localhost/app", "localhost", "app", "localhost"),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "localhost:5000"),
        ("127.0.0.1:5123/railiance/hello-web", "127.0.0.1:5123", "railiance/hello-web", "127.0.0.1:5123"),
        ("ghcr.io/org/app@sha256:" + "a" * 64, "ghcr.io", "org/app", "ghcr.io"),
    ],
)
def test_reference_defaults_as_the_docker_cli(text: str, registry: str, path: str, api: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.path, ref.api_host) == (registry, path, api)


def test_reference_tag_digest_and_credential_keys() -> None:
    ref = parse_reference("registry.example:5000/team/app:v1.2@sha256:" + "b" * 64)
    assert ref.tag == "v1.2" and ref.digest == "sha256:" + "b" * 64
    assert "registry.example:5000" in ref.credential_keys
    hub = parse_reference("nginx")
    assert (
        hub.credential_keys[0] == "https://index.docker.io/v1/"
        and hub.helper_server == hub.credential_keys[0]
    )


@pytest.mark.parametrize(
    "text",
    ["", "Team/App", "team//app", "team/app:", "team/app@sha256:xyz", "a b", "-team/app", "x" * 300],
)
def test_reference_refusals(text: str) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(text)


# ------------------------------------------------------------------------------ TLS / plain HTTP


def test_plain_http_only_declared_and_loopback(tmp_path: Path) -> None:
    pool = RegistryPool(credentials=DockerCredentialStore({}, home=tmp_path), env={})
    assert pool.base_url(parse_reference("registry.example:5000/a/b")) == "https://registry.example:5000"
    assert pool.base_url(parse_reference("127.0.0.1:5000/a/b")) == "https://127.0.0.1:5000"  # not declared
    assert pool.base_url(parse_reference("nginx")) == "https://registry-1.docker.io"
    declared = RegistryPool(
        settings={"127.0.0.1:5000": RegistrySettings(plain_http=True)},
        credentials=DockerCredentialStore({}, home=tmp_path),
        env={},
    )
    assert declared.base_url(parse_reference("127.0.0.1:5000/a/b")) == "http://127.0.0.1:5000"
    toml = tmp_path / "registries.toml"
    toml.write_text('[registries."registry.example:5000"]\nplain_http = true\n')
    with pytest.raises(InvalidInput, match="loopback"):
        load_registry_settings(toml)
    toml.write_text(
        '[registries."localhost:5000"]\nplain_http = true\n[registries."r.example"]\nca_bundle = "/x.pem"\n'
    )
    loaded = load_registry_settings(toml)
    assert loaded["localhost:5000"].plain_http and loaded["r.example"].ca_bundle == "/x.pem"
    toml.write_text('[registries."r.example"]\nverify = false\n')
    with pytest.raises(InvalidInput, match="takes plain_http, ca_bundle and mirror only"):
        load_registry_settings(toml)


def test_ca_bundle_is_loaded_per_registry(tmp_path: Path) -> None:
    certs = tmp_path / "certs.d" / "registry.example:5000"
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_text("not a certificate")
    pool = RegistryPool(
        credentials=DockerCredentialStore({}, home=tmp_path),
        env={"RAILIANCE_CERTS_D": str(tmp_path / "certs.d")},
    )
    with pytest.raises(InvalidInput, match="CA bundle .*ca.crt for registry registry.example:5000"):
        pool.for_reference(parse_reference("registry.example:5000/a/b"))
    pool.for_reference(parse_reference("other.example/a/b"))  # no bundle: system roots
    pool.close()


# ----------------------------------------------------------------------------------- credentials


def _docker_config(tmp_path: Path, data: dict[str, Any]) -> dict[str, str]:
    cfg = tmp_path / "docker"
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(cfg), "HOME": str(tmp_path), "PATH": str(tmp_path / "bin")}


def test_auths_entry_base64_and_hub_key(tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:pa:ss").decode()
    env = _docker_config(
        tmp_path,
        {"auths": {"registry.example:5000": {"auth": auth}, "https://index.docker.io/v1/": {"auth": auth}}},
    )
    store = DockerCredentialStore(env)
    creds = store.lookup(parse_reference("registry.example:5000/a/b"))
    assert creds is not None and (creds.username, creds.password) == ("alice", "pa:ss")
    assert store.lookup(parse_reference("nginx")) is not None
    assert store.lookup(parse_reference("other.example/a")) is None
    assert "pa:ss" not in repr(creds)


def test_cred_helpers_then_auths_then_creds_store(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_credential_helper(bin_dir, "one", {"registry.example:5000": ("h-user", "h-secret")})
    write_credential_helper(bin_dir, "store", {"other.example": ("s-user", "s-secret")})
    env = _docker_config(
        tmp_path,
        {
            "credHelpers": {"registry.example:5000": "one"},
            "auths": {"registry.example:5000": {"auth": base64.b64encode(b"x:y").decode()}},
            "credsStore": "store",
        },
    )
    store = DockerCredentialStore(env)
    helped = store.lookup(parse_reference("registry.example:5000/a"))
    assert helped is not None and (helped.username, helped.password) == ("h-user", "h-secret")
    stored = store.lookup(parse_reference("other.example/a"))
    assert stored is not None and stored.password == "s-secret"
    assert store.lookup(parse_reference("third.example/a")) is None  # helper: credentials not found
    assert (bin_dir / "one.calls").read_text().split() == ["registry.example:5000"]


def test_registry_auth_file_comes_first(tmp_path: Path) -> None:
    env = _docker_config(tmp_path, {"auths": {"r.example": {"username": "docker", "password": "d"}}})
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"podman:p").decode()}}})
    )
    creds = DockerCredentialStore({**env, "REGISTRY_AUTH_FILE": str(auth_file)}).lookup(
        parse_reference("r.example/a")
    )
    assert creds is not None and creds.username == "podman"


def test_broken_helper_and_config_errors_name_no_secret(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    leaky = bin_dir / "docker-credential-leaky"
    leaky.write_text("#!/bin/sh\necho 'token=SUPERSECRET-helper-output' >&2\nexit 3\n")
    leaky.chmod(0o755)
    env = _docker_config(tmp_path, {"credHelpers": {"r.example": "leaky", "q.example": "missing"}})
    with pytest.raises(AdapterAuthError) as failed:
        DockerCredentialStore(env).lookup(parse_reference("r.example/a"))
    assert "SUPERSECRET" not in str(failed.value) and "exited 3" in str(failed.value)
    with pytest.raises(AdapterUnavailable, match="not on PATH"):
        DockerCredentialStore(env).lookup(parse_reference("q.example/a"))
    bad = _docker_config(tmp_path, {"auths": {"r.example": {"auth": "!!notbase64-SUPERSECRET"}}})
    with pytest.raises(Exception) as malformed:
        DockerCredentialStore(bad).lookup(parse_reference("r.example/a"))
    assert "SUPERSECRET" not in str(malformed.value)


# ------------------------------------------------------------------------- two real registries


def test_two_registries_at_once_with_the_users_credentials(
    tmp_path: Path,
    registry_server: Any,
    registry_helper: Any,
    token_registry_server: Any,
    token_registry_helper: Any,
    registry_repository: str,
) -> None:
    """Workload A at the token-auth registry (credentials from a credential helper named in a docker
    config), workload B at the plain one; each polled at the registry its reference names."""
    from railiance_ledger.lifecycle.environment import open_registries
    from railiance_ledger.lifecycle.registry_poll import poll_registry
    from tests.fixtures.dagster import make_app

    user, password = TOKEN_REGISTRY_CREDENTIALS
    a_digest = token_registry_helper.push_image(registry_repository, "v1.0.0")
    b_digest = registry_helper.push_image(registry_repository, "v1.0.0")
    write_credential_helper(tmp_path / "bin", "railtest", {token_registry_server.host: (user, password)})
    env = _docker_config(tmp_path, {"credHelpers": {token_registry_server.host: "railtest"}})
    settings = tmp_path / "registries.toml"
    settings.write_text(
        f'[registries."{token_registry_server.host}"]\nplain_http = true\n'
        f'[registries."{registry_server.host}"]\nplain_http = true\n'
    )
    env["RAILIANCE_REGISTRIES"] = str(settings)
    apps = tmp_path / "apps"
    apps.mkdir()
    make_app(apps, name="app-a", repository=registry_repository)
    make_app(apps, name="app-b", repository=registry_repository)
    for name, host in (("app-a", token_registry_server.host), ("app-b", registry_server.host)):
        toml = apps / name / "railiance" / "app.toml"
        toml.write_text(toml.read_text().replace("registry.local/", f"{host}/"))
    from railiance_ledger.lifecycle.workloads import discover_workloads

    workloads, problems = discover_workloads(apps)
    assert not problems
    with open_registries(env) as pool:
        polls = poll_registry(pool, workloads)
    assert {p.workload: p.tags for p in polls} == {
        "app-a": {"v1.0.0": a_digest},
        "app-b": {"v1.0.0": b_digest},
    }
    assert (tmp_path / "bin" / "railtest.calls").read_text().split() == [token_registry_server.host]

    # Without the user's credentials the token registry refuses (the error names no secret).
    anonymous = {k: v for k, v in env.items() if k != "DOCKER_CONFIG"}
    with open_registries(anonymous) as pool:
        polls = poll_registry(pool, workloads)
    refused = next(p for p in polls if p.workload == "app-a")
    assert not refused.ok and "anonymously" in (refused.error or "") and password not in (refused.error or "")
    assert next(p for p in polls if p.workload == "app-b").ok


def test_tls_registry_trusted_only_with_its_ca_bundle(tmp_path: Path) -> None:
    """A registry over HTTPS with a private CA: refused without the bundle, read with it (from the
    registries file's ca_bundle, or a certs.d directory as the container tools keep them)."""
    pytest.importorskip("cryptography")
    from railiance_ledger.lifecycle.environment import open_registries
    from tests.harness.registry import RegistryHelper, make_tls, start_registry

    tls = make_tls(tmp_path / "tls")
    server = start_registry(tmp_path / "tls-registry", tls=tls)
    try:
        helper = RegistryHelper(server.url, verify=str(tls.ca))
        digest = helper.push_image("team/app", "v1.0.0")
        helper.close()
        ref = parse_reference(f"{server.host}/team/app")
        base_env = {"HOME": str(tmp_path), "RAILIANCE_CERTS_D": str(tmp_path / "no-certs.d")}
        with (
            open_registries(base_env) as pool,
            pytest.raises(AdapterUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"),
        ):
            pool.for_reference(ref).resolve_tag(repository="team/app", tag="v1.0.0")
        settings = tmp_path / "registries.toml"
        settings.write_text(f'[registries."{server.host}"]\nca_bundle = "{tls.ca}"\n')
        with open_registries({**base_env, "RAILIANCE_REGISTRIES": str(settings)}) as pool:
            assert pool.for_reference(ref).resolve_tag(repository="team/app", tag="v1.0.0") == digest
        certs_d = tmp_path / "certs.d" / server.host
        certs_d.mkdir(parents=True)
        (certs_d / "ca.crt").write_bytes(tls.ca.read_bytes())
        with open_registries({**base_env, "RAILIANCE_CERTS_D": str(tmp_path / "certs.d")}) as pool:
            assert pool.for_reference(ref).resolve_tag(repository="team/app", tag="v1.0.0") == digest
    finally:
        server.stop()
