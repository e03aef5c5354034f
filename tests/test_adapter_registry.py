"""OciRegistry against a real docker-registry (distribution 2.8), plain and with token auth.

``httpx.MockTransport`` appears only for answers a real registry cannot be made to give (5xx, a
malformed body, 403, a digest header that lies); everything else talks to the real server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from railiance_ledger.adapters.registry import MANIFEST_MEDIA_TYPES, OciRegistry
from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
    InvalidDigest,
)
from tests.fixtures.registry import TOKEN_REGISTRY_CREDENTIALS
from tests.harness import SilentServer, free_port
from tests.harness.registry import RegistryHelper, RegistryServer

UNKNOWN_DIGEST = "sha256:" + "0" * 64


@pytest.fixture
def registry(registry_server: RegistryServer, registry_http_client: httpx.Client) -> OciRegistry:
    """The adapter pointed at the plain session registry."""
    return OciRegistry(registry_http_client, registry_server.url)


def assert_names_operation_and_address(error: AdapterError, operation: str, address: str) -> None:
    """Every adapter error names system, operation and address in its text."""
    text = str(error)
    assert "registry" == error.system
    assert operation in text, text
    assert address in text, text


# -- real registry: the happy paths -------------------------------------------------------------------


def test_resolve_tag_returns_digest_of_oci_manifest(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    pushed = registry_helper.push_image(registry_repository, "v1.0.0", media_type="oci")
    assert pushed == registry.resolve_tag(repository=registry_repository, tag="v1.0.0")


def test_resolve_tag_returns_digest_of_docker_v2_manifest(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    pushed = registry_helper.push_image(registry_repository, "v1.0.0", media_type="docker")
    assert pushed == registry.resolve_tag(repository=registry_repository, tag="v1.0.0")


def test_resolve_tag_returns_digest_of_oci_index(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    image = registry_helper.push_image(registry_repository, "amd64")
    index = registry_helper.push_index(registry_repository, "multi", [image])
    assert index == registry.resolve_tag(repository=registry_repository, tag="multi")
    assert image != index


def test_resolve_tag_hashes_body_when_digest_header_missing(
    registry_server: RegistryServer, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    """A registry (or proxy) that drops Docker-Content-Digest still yields the digest of the bytes."""
    pushed = registry_helper.push_image(registry_repository, "v1")

    def strip_digest(response: httpx.Response) -> None:
        response.headers.pop("Docker-Content-Digest", None)

    with httpx.Client(timeout=5.0, event_hooks={"response": [strip_digest]}) as client:
        assert pushed == OciRegistry(client, registry_server.url).resolve_tag(
            repository=registry_repository, tag="v1"
        )


def test_digest_exists_true_for_pushed_manifest_false_for_unknown(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    pushed = registry_helper.push_image(registry_repository, "v1")
    assert registry.digest_exists(repository=registry_repository, digest=pushed) is True
    assert registry.digest_exists(repository=registry_repository, digest=UNKNOWN_DIGEST) is False


def test_digest_exists_refuses_malformed_digest(registry: OciRegistry, registry_repository: str) -> None:
    with pytest.raises(InvalidDigest):
        registry.digest_exists(repository=registry_repository, digest="sha256:abc")


def test_list_tags_filters_with_pattern(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    for tag in ("v1.0.0", "v1.1.0", "latest", "v2.0.0-rc1"):
        registry_helper.push_image(registry_repository, tag)
    assert {"v1.0.0", "v1.1.0", "latest", "v2.0.0-rc1"} == set(
        registry.list_tags(repository=registry_repository)
    )
    assert ["v1.0.0", "v1.1.0"] == sorted(
        registry.list_tags(repository=registry_repository, pattern=r"^v\d+\.\d+\.\d+$")
    )


def test_list_tags_with_small_page_size_returns_every_tag(
    registry_server: RegistryServer,
    registry_http_client: httpx.Client,
    registry_helper: RegistryHelper,
    registry_repository: str,
) -> None:
    """distribution 2.8 ignores ``?n=`` on tags/list; asking for pages must still return everything."""
    tags = {f"v0.0.{i}" for i in range(5)}
    for tag in tags:
        registry_helper.push_image(registry_repository, tag, payload=b"same layer")
    adapter = OciRegistry(registry_http_client, registry_server.url, page_size=2)
    assert tags == set(adapter.list_tags(repository=registry_repository))


class PaginatingProxy:
    """Serves ``/v2/<repo>/tags/list`` in ``?n=`` pages with ``Link: <...>; rel="next"`` (as distribution
    3 does), reading the full list from the real registry behind it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                proxy.requests.append(self.path)
                parts = urlsplit(self.path)
                full = httpx.get(proxy.upstream + parts.path, timeout=5.0).json()
                query = parse_qs(parts.query)
                n = int(query.get("n", ["1000"])[0])
                last = query.get("last", [""])[0]
                remaining = [t for t in sorted(full["tags"]) if t > last]
                page = remaining[:n]
                body = json.dumps({"name": full["name"], "tags": page}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if len(remaining) > n:
                    link = parts.path + "?" + urlencode({"n": n, "last": page[-1]})
                    self.send_header("Link", f'<{link}>; rel="next"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def paginating_proxy(registry_server: RegistryServer) -> Iterator[PaginatingProxy]:
    proxy = PaginatingProxy(registry_server.url)
    yield proxy
    proxy.close()


def test_list_tags_follows_link_pagination(
    paginating_proxy: PaginatingProxy,
    registry_http_client: httpx.Client,
    registry_helper: RegistryHelper,
    registry_repository: str,
) -> None:
    tags = [f"v1.0.{i}" for i in range(7)]
    for tag in tags:
        registry_helper.push_image(registry_repository, tag, payload=b"shared")
    adapter = OciRegistry(registry_http_client, paginating_proxy.url, page_size=3)
    assert sorted(tags) == adapter.list_tags(repository=registry_repository)
    assert 3 == len(paginating_proxy.requests)
    assert ["v1.0.5", "v1.0.6"] == adapter.list_tags(repository=registry_repository, pattern=r"[56]$")


def test_moved_tag_resolves_to_new_digest(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    first = registry_helper.push_image(registry_repository, "stable")
    second = registry_helper.push_image(registry_repository, "v2")
    assert first == registry.resolve_tag(repository=registry_repository, tag="stable")
    registry_helper.move_tag(registry_repository, "stable", second)
    assert second == registry.resolve_tag(repository=registry_repository, tag="stable")
    third = registry_helper.move_tag(registry_repository, "stable", None)
    assert third == registry.resolve_tag(repository=registry_repository, tag="stable")
    assert len({first, second, third}) == 3


def test_deleted_tag_is_gone(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    registry_helper.push_image(registry_repository, "keep")
    digest = registry_helper.push_image(registry_repository, "doomed")
    registry_helper.delete_tag(registry_repository, "doomed")
    assert ["keep"] == registry.list_tags(repository=registry_repository)
    assert registry.digest_exists(repository=registry_repository, digest=digest) is False
    with pytest.raises(AdapterNotFound) as caught:
        registry.resolve_tag(repository=registry_repository, tag="doomed")
    assert_names_operation_and_address(
        caught.value, "resolve_tag", f"/v2/{registry_repository}/manifests/doomed"
    )


def test_tags_with_digests_resolves_every_matching_tag(
    registry: OciRegistry, registry_helper: RegistryHelper, registry_repository: str
) -> None:
    expected = {f"v1.{i}.0": registry_helper.push_image(registry_repository, f"v1.{i}.0") for i in range(6)}
    registry_helper.push_image(registry_repository, "latest", media_type="docker")
    assert expected == registry.tags_with_digests(repository=registry_repository, pattern=r"^v\d+\.\d+\.\d+$")


# -- real registry with token auth ---------------------------------------------------------------------


def test_bearer_token_flow_fetches_token_once_per_scope(
    token_registry_server: RegistryServer,
    token_registry_helper: RegistryHelper,
    registry_http_client: httpx.Client,
    registry_repository: str,
) -> None:
    digest = token_registry_helper.push_image(registry_repository, "v1.0.0")
    username, password = TOKEN_REGISTRY_CREDENTIALS
    adapter = OciRegistry(
        registry_http_client, token_registry_server.url, username=username, password=password
    )
    assert token_registry_server.token_server is not None
    before = token_registry_server.token_server.requests
    assert digest == adapter.resolve_tag(repository=registry_repository, tag="v1.0.0")
    assert ["v1.0.0"] == adapter.list_tags(repository=registry_repository)
    assert adapter.digest_exists(repository=registry_repository, digest=digest)
    assert {"v1.0.0": digest} == adapter.tags_with_digests(repository=registry_repository)
    assert 1 == token_registry_server.token_server.requests - before


def test_static_bearer_token_is_sent_as_is(
    token_registry_server: RegistryServer,
    token_registry_helper: RegistryHelper,
    registry_http_client: httpx.Client,
    registry_repository: str,
) -> None:
    digest = token_registry_helper.push_image(registry_repository, "v1")
    assert token_registry_server.token_server is not None
    token = token_registry_server.token_server.issue(
        subject="ci", scopes=[f"repository:{registry_repository}:pull"]
    )
    adapter = OciRegistry(registry_http_client, token_registry_server.url, token=token)
    assert digest == adapter.resolve_tag(repository=registry_repository, tag="v1")


def test_token_registry_without_credentials_raises_auth_error(
    token_registry_server: RegistryServer,
    token_registry_helper: RegistryHelper,
    registry_http_client: httpx.Client,
    registry_repository: str,
) -> None:
    """Anonymous tokens carry no access, so the registry still answers 401 after the token flow."""
    token_registry_helper.push_image(registry_repository, "v1")
    adapter = OciRegistry(registry_http_client, token_registry_server.url)
    with pytest.raises(AdapterAuthError) as caught:
        adapter.resolve_tag(repository=registry_repository, tag="v1")
    assert_names_operation_and_address(
        caught.value,
        f"resolve_tag {registry_repository}:v1",
        f"{token_registry_server.url}/v2/{registry_repository}",
    )
    assert "401" in str(caught.value)


def test_token_registry_with_wrong_password_raises_auth_error_without_leaking_it(
    token_registry_server: RegistryServer, registry_http_client: httpx.Client, registry_repository: str
) -> None:
    adapter = OciRegistry(
        registry_http_client, token_registry_server.url, username="ci", password="hunter2-wrong"
    )
    with pytest.raises(AdapterAuthError) as caught:
        adapter.list_tags(repository=registry_repository)
    assert_names_operation_and_address(caught.value, "list_tags", "/token")
    assert "hunter2-wrong" not in str(caught.value)


def test_static_token_that_is_refused_raises_auth_error(
    token_registry_server: RegistryServer, registry_http_client: httpx.Client, registry_repository: str
) -> None:
    adapter = OciRegistry(registry_http_client, token_registry_server.url, token="not-a-jwt")
    with pytest.raises(AdapterAuthError) as caught:
        adapter.list_tags(repository=registry_repository)
    assert "not-a-jwt" not in str(caught.value)


# -- failures ------------------------------------------------------------------------------------------


def test_connection_refused_raises_unavailable(registry_http_client: httpx.Client) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    adapter = OciRegistry(registry_http_client, url)
    with pytest.raises(AdapterUnavailable) as caught:
        adapter.resolve_tag(repository="railiance/hello-web", tag="v1")
    assert_names_operation_and_address(caught.value, "resolve_tag railiance/hello-web:v1", url)


def test_server_that_never_answers_raises_timeout() -> None:
    with SilentServer() as silent, httpx.Client(timeout=0.3) as client:
        adapter = OciRegistry(client, silent.url)
        with pytest.raises(AdapterTimeout) as caught:
            adapter.list_tags(repository="railiance/hello-web")
    assert_names_operation_and_address(caught.value, "list_tags railiance/hello-web", silent.url)


@pytest.mark.parametrize("operation", ["resolve_tag", "list_tags"])
def test_unknown_repository_raises_not_found(
    registry: OciRegistry, registry_server: RegistryServer, operation: str
) -> None:
    call: Callable[[], object] = (
        (lambda: registry.resolve_tag(repository="railiance/nope", tag="v1"))
        if operation == "resolve_tag"
        else (lambda: registry.list_tags(repository="railiance/nope"))
    )
    with pytest.raises(AdapterNotFound) as caught:
        call()
    assert_names_operation_and_address(caught.value, operation, f"{registry_server.url}/v2/railiance/nope/")
    assert (
        "NAME_UNKNOWN" in str(caught.value)
        or "MANIFEST_UNKNOWN" in str(caught.value)
        or "404" in str(caught.value)
    )


def mock_registry(handler: Callable[[httpx.Request], httpx.Response]) -> OciRegistry:
    """The adapter over ``httpx.MockTransport``: only for answers a real registry will not give."""
    return OciRegistry(httpx.Client(transport=httpx.MockTransport(handler)), "http://registry.test")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b'{"errors":[{"code":"UNKNOWN","message":"storage driver failed"}]}', AdapterUnavailable),
        (503, b"upstream unavailable", AdapterUnavailable),
        (429, b"", AdapterUnavailable),
        (
            403,
            b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}',
            AdapterAuthError,
        ),
        (200, b"{not json", AdapterProtocolError),
        (200, b'{"name": "railiance/hello-web"}', AdapterProtocolError),
        (200, b'{"name": "railiance/hello-web", "tags": [1, 2]}', AdapterProtocolError),
        (400, b'{"errors":[{"code":"PAGINATION_NUMBER_INVALID"}]}', AdapterProtocolError),
    ],
)
def test_list_tags_translates_bad_answers(status: int, body: bytes, expected: type[AdapterError]) -> None:
    adapter = mock_registry(lambda request: httpx.Response(status, content=body))
    with pytest.raises(expected) as caught:
        adapter.list_tags(repository="railiance/hello-web")
    assert_names_operation_and_address(
        caught.value, "list_tags railiance/hello-web", "http://registry.test/v2/railiance/hello-web/tags/list"
    )


def test_resolve_tag_refuses_digest_header_that_does_not_match_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Docker-Content-Digest": "sha256:" + "a" * 64, "Content-Type": MANIFEST_MEDIA_TYPES[0]}
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Type": MANIFEST_MEDIA_TYPES[0]})
        return httpx.Response(200, headers=headers, content=b'{"schemaVersion": 2}')

    with pytest.raises(AdapterProtocolError) as caught:
        mock_registry(handler).resolve_tag(repository="railiance/hello-web", tag="v1")
    assert "does not match" in str(caught.value)


def test_resolve_tag_sends_every_manifest_media_type_in_accept() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Accept"])
        return httpx.Response(200, headers={"Docker-Content-Digest": UNKNOWN_DIGEST})

    assert UNKNOWN_DIGEST == mock_registry(handler).resolve_tag(repository="railiance/hello-web", tag="v1")
    assert all(media_type in seen[0] for media_type in MANIFEST_MEDIA_TYPES)
