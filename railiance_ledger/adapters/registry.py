"""OCI registry adapter: resolve tags to immutable digests, check digests, list tags.

Speaks the OCI distribution API (``/v2/``) through an injected ``httpx.Client``; timeouts, proxies
and TLS come from that client. ``repository`` is always the path inside the registry
(``railiance/hello-web``), never a full image reference.

Authentication follows the registry token protocol: a request answered 401 with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` fetches a token from the realm (with
basic auth when credentials were given, anonymously otherwise), caches it per scope until it
expires, and retries the request once. A ``Basic`` challenge is answered with the credentials. A
static bearer token, when given, is sent as is and never exchanged.

Every failure leaves as an ``AdapterError`` naming system ``registry``, the operation and the URL
(never credentials or tokens):

    connect error                  -> AdapterUnavailable
    timeout                        -> AdapterTimeout
    401/403 after authenticating   -> AdapterAuthError
    404 where it is an error       -> AdapterNotFound
    5xx, 429                       -> AdapterUnavailable
    malformed JSON, missing fields -> AdapterProtocolError
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from railiance_ledger.domain.digests import is_digest
from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
    InvalidDigest,
    InvalidInput,
)
from railiance_ledger.ports import RegistryPort

Registry = RegistryPort
"""Old name of :class:`railiance_ledger.ports.RegistryPort` (still imported by the Dagster support code)."""

__all__ = ["MANIFEST_MEDIA_TYPES", "ImageConfig", "ManifestInfo", "OciRegistry", "Registry"]

SYSTEM = "registry"

MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

_REPOSITORY_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_DEFAULT_TOKEN_TTL = 60.0  # seconds; the token spec's default when expires_in is absent
_TOKEN_SKEW = 5.0
_MAX_PAGES = 10_000


@dataclass(frozen=True)
class _Challenge:
    scheme: str
    params: Mapping[str, str]


def _parse_challenge(header: str) -> _Challenge | None:
    """Parse ``WWW-Authenticate: Bearer realm="...",service="...",scope="..."``."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _CHALLENGE_PARAM_RE.finditer(rest)
    }
    return _Challenge(scheme=scheme.lower(), params=params)


def _redact_url(url: str) -> str:
    """``url`` without user info, so credentials never reach a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _registry_error_text(response: httpx.Response) -> str:
    """The registry's ``errors[0].code: message`` when the body carries one, else a short excerpt."""
    try:
        body = response.json()
        first = body["errors"][0]
        text = f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except Exception:  # noqa: BLE001 - any unparsable error body falls back to raw text
        try:
            text = response.text[:200].strip()
        except Exception:  # noqa: BLE001 - HEAD responses and undecodable bodies
            text = ""
    return text


@dataclass(frozen=True)
class ManifestInfo:
    """What a manifest is: its digest and media type; an index's platform manifests; an image's config."""

    digest: str
    media_type: str
    platforms: tuple[tuple[str, str], ...] = ()
    """``(os/architecture[/variant], manifest digest)`` of each entry of an index; empty for an image."""
    config_digest: str | None = None

    @property
    def is_index(self) -> bool:
        """True for an OCI image index or a Docker manifest list."""
        return bool(self.platforms) or self.media_type in (
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image configuration the lifecycle reads: platform and labels."""

    manifest_digest: str
    platform: str
    labels: Mapping[str, str]


class OciRegistry:
    """``Registry`` over the OCI distribution HTTP API, with bearer-token or basic authentication."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        identity_token: str | None = None,
        page_size: int | None = None,
        max_workers: int = 8,
    ) -> None:
        """Use ``client`` to talk to the registry at ``base_url`` (``http(s)://host[:port]``).

        ``username``/``password`` are used for the token flow (basic auth to the realm) or a basic
        challenge; ``token`` is a static bearer token sent with every request. ``page_size`` asks
        for ``?n=`` pages when listing tags; ``max_workers`` bounds concurrent tag resolution.
        """
        if token is not None and (username is not None or password is not None):
            raise InvalidInput("give either username/password or a static token, not both")
        self._client = client
        self._base = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._static_token = token
        self._identity_token = identity_token
        self._page_size = page_size
        self._max_workers = max(1, max_workers)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic_preferred = False
        self._lock = threading.Lock()

    # -- public API ----------------------------------------------------------------------------------

    def resolve_tag(self, *, repository: str, tag: str) -> str:
        """The digest ``repository:tag`` points at now.

        HEADs the manifest (all OCI and Docker v2 manifest and index types accepted) and reads
        ``Docker-Content-Digest``; when the header is missing it GETs the manifest and hashes the
        body, the digest by definition. A missing tag or repository raises ``AdapterNotFound``.
        """
        operation = f"resolve_tag {repository}:{tag}"
        self._check_repository(repository, operation)
        if not _TAG_RE.match(tag):
            raise InvalidInput(f"{operation}: {tag!r} is not a valid tag")
        url = f"{self._base}/v2/{repository}/manifests/{tag}"
        scope = self._pull_scope(repository)
        head = self._send("HEAD", url, operation=operation, scope=scope, headers={"Accept": _ACCEPT})
        if head.status_code == 200:
            digest = str(head.headers.get("Docker-Content-Digest", ""))
            if is_digest(digest):
                return digest
        # No usable digest header, or a HEAD error without a body to explain it: GET decides.
        response = self._send("GET", url, operation=operation, scope=scope, headers={"Accept": _ACCEPT})
        if response.status_code != 200:
            self._raise_status(response, operation, url)
        body = response.content
        if not body:
            raise AdapterProtocolError(
                "empty manifest body", system=SYSTEM, operation=operation, address=self._display(url)
            )
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        header = response.headers.get("Docker-Content-Digest", "")
        if header and header.startswith("sha256:") and header != computed:
            raise AdapterProtocolError(
                f"Docker-Content-Digest {header} does not match the manifest body ({computed})",
                system=SYSTEM,
                operation=operation,
                address=self._display(url),
            )
        return computed

    def digest_exists(self, *, repository: str, digest: str) -> bool:
        """True when ``repository@digest`` exists (HEAD 200), False on 404; anything else raises."""
        operation = f"digest_exists {repository}@{digest}"
        self._check_repository(repository, operation)
        if not is_digest(digest):
            raise InvalidDigest(f"{operation}: malformed digest {digest!r}; expected sha256:<64 hex>")
        url = f"{self._base}/v2/{repository}/manifests/{digest}"
        response = self._send(
            "HEAD", url, operation=operation, scope=self._pull_scope(repository), headers={"Accept": _ACCEPT}
        )
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        self._raise_status(response, operation, url)

    def inspect(self, *, repository: str, reference: str) -> ManifestInfo:
        """The manifest ``repository:reference`` (tag or digest) names: digest, type, platforms.

        For an image index (OCI index or Docker manifest list) ``platforms`` lists each platform
        manifest (``os/architecture[/variant]`` -> digest); for an image manifest it is empty and
        ``config_digest`` names its config blob.
        """
        operation = f"inspect {repository}:{reference}"
        self._check_repository(repository, operation)
        if not (is_digest(reference) or _TAG_RE.match(reference)):
            raise InvalidInput(f"{operation}: {reference!r} is neither a tag nor a digest")
        url = f"{self._base}/v2/{repository}/manifests/{reference}"
        response = self._send(
            "GET", url, operation=operation, scope=self._pull_scope(repository), headers={"Accept": _ACCEPT}
        )
        if response.status_code != 200:
            self._raise_status(response, operation, url)
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if is_digest(reference) and reference != digest:
            raise AdapterProtocolError(
                f"manifest body hashes to {digest}, not {reference}",
                system=SYSTEM,
                operation=operation,
                address=self._display(url),
            )
        body = self._json(response, operation, url)
        if not isinstance(body, dict):
            raise AdapterProtocolError(
                "manifest is not a JSON object",
                system=SYSTEM,
                operation=operation,
                address=self._display(url),
            )
        media_type = str(body.get("mediaType") or response.headers.get("Content-Type", "").split(";")[0])
        platforms: list[tuple[str, str]] = []
        config_digest: str | None = None
        if isinstance(body.get("manifests"), list):
            for entry in body["manifests"]:
                if not isinstance(entry, dict) or not is_digest(str(entry.get("digest", ""))):
                    continue
                raw_plat = entry.get("platform")
                plat: dict[str, Any] = raw_plat if isinstance(raw_plat, dict) else {}
                name = "/".join(
                    str(plat[k]) for k in ("os", "architecture", "variant") if isinstance(plat.get(k), str)
                )
                platforms.append((name or "unknown/unknown", str(entry["digest"])))
        else:
            config = body.get("config")
            if isinstance(config, dict) and is_digest(str(config.get("digest", ""))):
                config_digest = str(config["digest"])
        return ManifestInfo(
            digest=digest, media_type=media_type, platforms=tuple(platforms), config_digest=config_digest
        )

    def image_config(
        self, *, repository: str, digest: str, platform: str | None = None, info: ManifestInfo | None = None
    ) -> ImageConfig:
        """The image configuration of ``repository@digest``: platform and labels.

        For an index, the config of the ``platform`` manifest (else the first ``linux`` one, else the
        first) is read. The config blob's digest is checked against its body.
        """
        operation = f"image_config {repository}@{digest}"
        if info is None or info.digest != digest:
            info = self.inspect(repository=repository, reference=digest)
        if info.platforms:
            chosen = next((d for p, d in info.platforms if platform and p == platform), None)
            chosen = chosen or next((d for p, d in info.platforms if p.startswith("linux/")), None)
            chosen = chosen or info.platforms[0][1]
            info = self.inspect(repository=repository, reference=chosen)
        if info.config_digest is None:
            raise AdapterProtocolError(
                f"manifest {info.digest} names no config blob",
                system=SYSTEM,
                operation=operation,
                address=self._display(f"{self._base}/v2/{repository}/manifests/{digest}"),
            )
        url = f"{self._base}/v2/{repository}/blobs/{info.config_digest}"
        response = self._send("GET", url, operation=operation, scope=self._pull_scope(repository))
        if response.status_code != 200:
            self._raise_status(response, operation, url)
        if "sha256:" + hashlib.sha256(response.content).hexdigest() != info.config_digest:
            raise AdapterProtocolError(
                "config blob does not match its digest",
                system=SYSTEM,
                operation=operation,
                address=self._display(url),
            )
        body = self._json(response, operation, url)
        body = body if isinstance(body, dict) else {}
        raw_inner = body.get("config")
        inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
        raw = inner.get("Labels")
        raw_labels: dict[str, Any] = raw if isinstance(raw, dict) else {}
        labels = {str(k): str(v) for k, v in raw_labels.items() if isinstance(v, str)}
        plat = "/".join(
            str(body[k]) for k in ("os", "architecture", "variant") if isinstance(body.get(k), str)
        )
        return ImageConfig(manifest_digest=info.digest, platform=plat, labels=labels)

    def list_tags(self, *, repository: str, pattern: str | None = None) -> list[str]:
        """Every tag of ``repository`` in registry order, following ``Link: <...>; rel="next"`` pages.

        ``pattern`` is a regular expression applied with ``re.search`` (anchor it, as app.toml's
        ``tag_pattern`` does, for an exact match). An unknown repository raises ``AdapterNotFound``.
        """
        operation = f"list_tags {repository}"
        self._check_repository(repository, operation)
        matcher = self._compile(pattern, operation)
        url: str | None = f"{self._base}/v2/{repository}/tags/list"
        params: dict[str, str] | None = {"n": str(self._page_size)} if self._page_size else None
        scope = self._pull_scope(repository)
        tags: list[str] = []
        seen_urls: set[str] = set()
        while url is not None:
            if len(seen_urls) >= _MAX_PAGES or url in seen_urls:
                raise AdapterProtocolError(
                    "tag list pagination does not terminate",
                    system=SYSTEM,
                    operation=operation,
                    address=self._display(url),
                )
            seen_urls.add(url)
            response = self._send("GET", url, operation=operation, scope=scope, params=params)
            if response.status_code != 200:
                self._raise_status(response, operation, url)
            page = self._json(response, operation, url)
            raw_tags = page.get("tags") if isinstance(page, dict) else None
            if (
                not isinstance(page, dict)
                or "tags" not in page
                or not (
                    raw_tags is None
                    or (isinstance(raw_tags, list) and all(isinstance(t, str) for t in raw_tags))
                )
            ):
                raise AdapterProtocolError(
                    "tag list without a 'tags' list of strings",
                    system=SYSTEM,
                    operation=operation,
                    address=self._display(url),
                )
            tags.extend(raw_tags or [])
            next_url = response.links.get("next", {}).get("url")
            url = str(response.url.join(next_url)) if next_url else None
            params = None  # the next link carries its own query
        unique = list(dict.fromkeys(tags))
        return [t for t in unique if matcher is None or matcher.search(t)]

    def tags_with_digests(self, *, repository: str, pattern: str | None = None) -> dict[str, str]:
        """Tag -> digest for every tag matching ``pattern``, resolved concurrently (bounded).

        A tag deleted between listing and resolving is left out; any other failure raises.
        """
        tags = self.list_tags(repository=repository, pattern=pattern)
        if not tags:
            return {}

        def resolve(tag: str) -> tuple[str, str | None]:
            try:
                return tag, self.resolve_tag(repository=repository, tag=tag)
            except AdapterNotFound:
                return tag, None

        with ThreadPoolExecutor(
            max_workers=min(self._max_workers, len(tags)), thread_name_prefix="registry-resolve"
        ) as pool:
            results = list(pool.map(resolve, tags))
        return {tag: digest for tag, digest in results if digest is not None}

    # -- HTTP and authentication ---------------------------------------------------------------------

    @staticmethod
    def _pull_scope(repository: str) -> str:
        return f"repository:{repository}:pull"

    def _display(self, url: str) -> str:
        return _redact_url(url)

    @staticmethod
    def _check_repository(repository: str, operation: str) -> None:
        if not _REPOSITORY_RE.match(repository):
            raise InvalidInput(
                f"{operation}: {repository!r} is not a valid repository path "
                "(lowercase path inside the registry, e.g. railiance/hello-web)"
            )

    @staticmethod
    def _compile(pattern: str | None, operation: str) -> re.Pattern[str] | None:
        if pattern is None:
            return None
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(
                f"{operation}: tag pattern {pattern!r} is not a regular expression: {exc}"
            ) from exc

    def _basic_header(self) -> str:
        raw = f"{self._username or ''}:{self._password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _auth_header(self, scope: str) -> str | None:
        if self._static_token is not None:
            return f"Bearer {self._static_token}"
        with self._lock:
            cached = self._tokens.get(scope)
            basic = self._basic_preferred
        if cached is not None and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        if basic and self._username is not None:
            return self._basic_header()
        return None

    def _send(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        scope: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request with authentication; 401/403 left after authenticating raise ``AdapterAuthError``."""
        request_headers = dict(headers or {})
        authorization = self._auth_header(scope)
        if authorization:
            request_headers["Authorization"] = authorization
        response = self._transport(method, url, operation=operation, headers=request_headers, params=params)
        if response.status_code == 401 and self._static_token is None:
            challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            retry = False
            if challenge is not None and challenge.scheme == "bearer" and challenge.params.get("realm"):
                token = self._fetch_token(challenge, scope=scope, operation=operation)
                request_headers["Authorization"] = f"Bearer {token}"
                retry = True
            elif challenge is not None and challenge.scheme == "basic" and self._username is not None:
                request_headers["Authorization"] = self._basic_header()
                with self._lock:
                    self._basic_preferred = True
                retry = True
            if retry:
                response = self._transport(
                    method, url, operation=operation, headers=request_headers, params=params
                )
        if response.status_code in (401, 403):
            detail = _registry_error_text(response) or f"HTTP {response.status_code}"
            who = "with the given credentials" if (self._username or self._static_token) else "anonymously"
            raise AdapterAuthError(
                f"HTTP {response.status_code} {who} ({detail})",
                system=SYSTEM,
                operation=operation,
                address=self._display(url),
                hint="check the registry credentials and that they grant pull on this repository",
            )
        return response

    def _fetch_token(self, challenge: _Challenge, *, scope: str, operation: str) -> str:
        """Ask the challenge's realm for a token for its scope; cache it under ``scope``."""
        realm = challenge.params["realm"]
        query = {k: v for k, v in challenge.params.items() if k in ("service", "scope") and v}
        query.setdefault("scope", scope)
        auth = httpx.BasicAuth(self._username, self._password or "") if self._username is not None else None
        address = self._display(realm)
        token_operation = f"{operation} (token request)"
        try:
            if self._identity_token is not None:  # OAuth2 refresh-token grant (docker login's identity token)
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": self._identity_token,
                    "client_id": "railiance",
                    **query,
                }
                response = self._client.post(realm, data=form)
            elif auth:
                response = self._client.get(realm, params=query, auth=auth)
            else:
                response = self._client.get(realm, params=query)
        except httpx.HTTPError as exc:
            self._raise_transport(exc, token_operation, realm)
        if response.status_code in (401, 403):
            raise AdapterAuthError(
                f"token service refused the credentials (HTTP {response.status_code})",
                system=SYSTEM,
                operation=token_operation,
                address=address,
                hint="check the registry username and password",
            )
        if response.status_code != 200:
            self._raise_status(response, token_operation, realm)
        body = self._json(response, token_operation, realm)
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AdapterProtocolError(
                "token response without 'token' or 'access_token'",
                system=SYSTEM,
                operation=token_operation,
                address=address,
            )
        ttl = body.get("expires_in", _DEFAULT_TOKEN_TTL)
        ttl = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else _DEFAULT_TOKEN_TTL
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(ttl - _TOKEN_SKEW, 1.0))
        return token

    def _transport(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        headers: dict[str, str],
        params: dict[str, str] | None,
    ) -> httpx.Response:
        try:
            return self._client.request(method, url, headers=headers, params=params)
        except httpx.HTTPError as exc:
            self._raise_transport(exc, operation, url)
        except httpx.InvalidURL as exc:
            raise AdapterUnavailable(
                f"invalid URL: {exc}", system=SYSTEM, operation=operation, address=self._display(url)
            ) from exc

    def _raise_transport(self, exc: httpx.HTTPError, operation: str, url: str) -> NoReturn:
        address = self._display(url)
        if isinstance(exc, httpx.TimeoutException):
            raise AdapterTimeout(
                f"no answer in time ({type(exc).__name__})",
                system=SYSTEM,
                operation=operation,
                address=address,
                hint="the registry is slow or hung; retry later",
            ) from exc
        if isinstance(exc, httpx.ConnectError):
            raise AdapterUnavailable(
                f"cannot connect ({exc})",
                system=SYSTEM,
                operation=operation,
                address=address,
                hint="is the registry running at this address?",
            ) from exc
        raise AdapterUnavailable(
            f"{type(exc).__name__}: {exc}", system=SYSTEM, operation=operation, address=address
        ) from exc

    def _raise_status(self, response: httpx.Response, operation: str, url: str) -> NoReturn:
        status = response.status_code
        detail = _registry_error_text(response)
        text = f"HTTP {status}" + (f" ({detail})" if detail else "")
        address = self._display(url)
        error: type[AdapterError]
        if status == 404:
            error = AdapterNotFound
        elif status in (401, 403):
            error = AdapterAuthError
        elif status >= 500 or status == 429:
            error = AdapterUnavailable
        else:
            error = AdapterProtocolError
        raise error(text, system=SYSTEM, operation=operation, address=address)

    def _json(self, response: httpx.Response, operation: str, url: str) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AdapterProtocolError(
                f"malformed JSON ({exc})", system=SYSTEM, operation=operation, address=self._display(url)
            ) from exc


if TYPE_CHECKING:
    _registry_port: type[RegistryPort] = OciRegistry  # mypy: OciRegistry implements the registry port
