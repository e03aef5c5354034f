"""Attestations next to the image as cosign stores them: tag ``sha256-<hex>.att`` in the image's repository.

The tag names an OCI image manifest whose layers are DSSE envelopes (media type
``application/vnd.dsse.envelope.v1+json``), each annotated with its in-toto ``predicateType`` and
with cosign's (empty) ``dev.cosignproject.cosign/signature`` annotation, so ``cosign download
attestation`` / ``cosign verify-attestation`` and other OCI tooling find them. Pushing adds our
envelopes to the layers already there (another tool's attestations are kept), skipping an identical
layer; reading returns every DSSE layer's bytes.

The OCI distribution API is spoken directly over ``httpx`` (blob upload ``POST`` then monolithic
``PUT ?digest=``, manifest ``PUT`` by tag); basic credentials are sent when given, and a bearer
challenge (``WWW-Authenticate: Bearer realm=...``) is answered with a token fetched with them.
Every failure is an ``AdapterError`` naming the operation and the (credential-free) URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from railiance_ledger.errors import AdapterError, AdapterUnavailable

__all__ = [
    "ATTESTATION_SUFFIX",
    "COSIGN_SIGNATURE_ANNOTATION",
    "DSSE_MEDIA_TYPE",
    "OCI_MANIFEST",
    "OciAttestations",
    "PushedAttestation",
    "attestation_tag",
]

ATTESTATION_SUFFIX = ".att"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def attestation_tag(digest: str) -> str:
    """cosign's attestation tag for the image ``digest``: ``sha256-<hex>.att``."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.replace(":", "-", 1) + ATTESTATION_SUFFIX


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PushedAttestation:
    """Where the attestations now are: repository, tag, the manifest's digest and the layer digests."""

    repository: str
    tag: str
    manifest_digest: str
    layers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "repository": self.repository,
            "tag": self.tag,
            "manifest_digest": self.manifest_digest,
            "layers": list(self.layers),
        }


class OciAttestations:
    """Push and read cosign-layout attestations in one OCI registry."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._basic = (
            "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            if username
            else None
        )
        self._bearer: dict[str, str] = {}

    # ------------------------------------------------------------------ the API

    def push(self, *, repository: str, digest: str, envelopes: list[tuple[bytes, str]]) -> PushedAttestation:
        """Add ``envelopes`` (DSSE JSON bytes, predicate type) to the ``.att`` tag of ``digest``."""
        tag = attestation_tag(digest)
        existing = self._manifest(repository, tag)
        layers: list[dict[str, Any]] = list(existing.get("layers") or []) if existing else []
        have = {layer.get("digest") for layer in layers}
        for data, predicate_type in envelopes:
            blob = self._upload(repository, data)
            if blob in have:
                continue
            have.add(blob)
            layers.append(
                {
                    "mediaType": DSSE_MEDIA_TYPE,
                    "digest": blob,
                    "size": len(data),
                    "annotations": {COSIGN_SIGNATURE_ANNOTATION: "", "predicateType": predicate_type},
                }
            )
        config = json.dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        config_digest = self._upload(repository, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": layers,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        url = f"{self.base_url}/v2/{repository}/manifests/{tag}"
        response = self._send(
            "PUT", url, "push attestation manifest", repository, content=manifest, content_type=OCI_MANIFEST
        )
        if response.status_code not in (200, 201):
            self._fail(response, "push attestation manifest", url)
        return PushedAttestation(
            repository=repository,
            tag=tag,
            manifest_digest=response.headers.get("Docker-Content-Digest") or _sha256(manifest),
            layers=tuple(str(layer["digest"]) for layer in layers),
        )

    def fetch(self, *, repository: str, digest: str) -> list[tuple[bytes, str]]:
        """Every DSSE envelope at the ``.att`` tag of ``digest``, with its predicate type (``[]``: none)."""
        manifest = self._manifest(repository, attestation_tag(digest))
        if manifest is None:
            return []
        out: list[tuple[bytes, str]] = []
        for layer in manifest.get("layers") or []:
            if layer.get("mediaType") != DSSE_MEDIA_TYPE:
                continue
            blob = str(layer.get("digest"))
            url = f"{self.base_url}/v2/{repository}/blobs/{blob}"
            response = self._send("GET", url, "read attestation", repository)
            if response.status_code != 200:
                self._fail(response, "read attestation", url)
            if _sha256(response.content) != blob:
                raise AdapterError(
                    f"attestation layer {blob} does not match its digest",
                    system="registry",
                    operation="read attestation",
                    address=url,
                )
            out.append((response.content, str((layer.get("annotations") or {}).get("predicateType", ""))))
        return out

    # ------------------------------------------------------------------ the protocol

    def _manifest(self, repository: str, tag: str) -> dict[str, Any] | None:
        url = f"{self.base_url}/v2/{repository}/manifests/{tag}"
        response = self._send("GET", url, "read attestation manifest", repository, accept=OCI_MANIFEST)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._fail(response, "read attestation manifest", url)
        try:
            data = response.json()
        except ValueError as exc:
            raise AdapterError(
                f"the manifest is not JSON: {exc}", system="registry", operation="read", address=url
            ) from exc
        return data if isinstance(data, dict) else None

    def _upload(self, repository: str, data: bytes) -> str:
        digest = _sha256(data)
        head = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        if self._send("HEAD", head, "push attestation", repository).status_code == 200:
            return digest
        start = f"{self.base_url}/v2/{repository}/blobs/uploads/"
        response = self._send("POST", start, "push attestation", repository)
        if response.status_code != 202 or "Location" not in response.headers:
            self._fail(response, "push attestation (start upload)", start)
        location = response.headers["Location"]
        if location.startswith("/"):
            location = self.base_url + location
        sep = "&" if "?" in location else "?"
        done = self._send(
            "PUT",
            f"{location}{sep}digest={digest}",
            "push attestation",
            repository,
            content=data,
            content_type="application/octet-stream",
        )
        if done.status_code not in (201, 204):
            self._fail(done, "push attestation (upload)", start)
        return digest

    def _send(
        self,
        method: str,
        url: str,
        operation: str,
        repository: str,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        auth = self._bearer.get(repository) or self._basic
        for _ in range(2):
            if auth:
                headers["Authorization"] = auth
            try:
                response = self._client.request(method, url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise AdapterUnavailable(
                    f"{type(exc).__name__}: {exc}", system="registry", operation=operation, address=url
                ) from exc
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code != 401 or not challenge.lower().startswith("bearer "):
                return response
            auth = self._token(challenge, repository, operation)
            self._bearer[repository] = auth
        return response

    def _token(self, challenge: str, repository: str, operation: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise AdapterError("bearer challenge without realm", system="registry", operation=operation)
        params["scope"] = f"repository:{repository}:pull,push"
        headers = {"Authorization": self._basic} if self._basic else {}
        try:
            response = self._client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise AdapterUnavailable(
                f"{type(exc).__name__}: {exc}", system="registry", operation=operation, address=realm
            ) from exc
        if response.status_code != 200:
            self._fail(response, f"{operation} (token)", realm)
        body = response.json()
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise AdapterError("the token endpoint returned no token", system="registry", operation=operation)
        return f"Bearer {token}"

    @staticmethod
    def _fail(response: httpx.Response, operation: str, url: str) -> NoReturn:
        raise AdapterError(
            f"HTTP {response.status_code}: {response.text[:300]}",
            system="registry",
            operation=operation,
            address=url,
        )
