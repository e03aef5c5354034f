"""A real OCI registry for tests: Debian ``docker-registry`` (distribution 2.8) on loopback.

``RegistryServer`` runs ``/usr/bin/docker-registry serve <config.yml>`` with filesystem storage in
a temporary directory and deletes enabled. With ``token_auth=True`` it also runs a ``TokenServer``:
a small ``http.server`` thread that plays the registry's authorization service, issuing RS256
JWS tokens signed by a freshly generated key whose self-signed certificate is the registry's
``rootcertbundle`` (the distribution token-auth protocol, end to end).

``RegistryHelper`` pushes images through the real blob upload API (POST, then PUT ``?digest=``),
then PUTs the manifest; it moves and deletes tags. It talks raw HTTP with its own small bearer
``httpx.Auth`` so that tests of the adapter never lean on the adapter to set up their data.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.harness import HarnessError, ManagedProcess, free_port, wait_until

REGISTRY_BIN = "/usr/bin/docker-registry"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"

SERVICE = "railiance-test-registry"
ISSUER = "railiance-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Token service


@dataclass
class TokenServer:
    """The registry's authorization service: ``GET /token?service=...&scope=...`` with basic auth.

    ``users`` maps username to password; anonymous requests get a token with no access, as the
    reference implementation does, so the registry then answers 401/403. ``requests`` counts token
    requests (tests assert the adapter caches tokens).
    """

    users: dict[str, str] = field(default_factory=lambda: {"ci": "ci-secret"})
    port: int = 0
    requests: int = 0
    ttl_seconds: int = 300
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _key: Any = None
    cert_pem: bytes = b""
    kid: str = ""

    @property
    def realm(self) -> str:
        """The realm URL the registry puts in its ``WWW-Authenticate`` challenge."""
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenServer:
        """Generate the signing key and certificate, then serve on a free loopback port."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = libtrust_key_id(spki)

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/token":
                    self.send_error(404)
                    return
                server.requests += 1
                query = parse_qs(parts.query)
                subject = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    try:
                        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    except ValueError:
                        user, password = "", ""
                    if server.users.get(user) != password or not user:
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
                        return
                    subject = user
                scopes = query.get("scope", [])
                token = server.issue(subject=subject, scopes=scopes if subject else [])
                body = json.dumps(
                    {
                        "token": token,
                        "access_token": token,
                        "expires_in": server.ttl_seconds,
                        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def issue(self, *, subject: str, scopes: list[str]) -> str:
        """A signed JWS granting every action asked for in ``scopes`` (``repository:NAME:ACTIONS``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access: list[dict[str, Any]] = []
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind and name:
                    access.append(
                        {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}
                    )
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.ttl_seconds,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def stop(self) -> None:
        """Stop serving; idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def libtrust_key_id(spki_der: bytes) -> str:
    """The ``kid`` distribution 2.8 derives for a trusted root key (libtrust ``KeyID``).

    base32 of the first 240 bits of sha256(DER SubjectPublicKeyInfo), in 12 colon-separated groups.
    """
    encoded = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


# --------------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate for ``127.0.0.1`` signed by it (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """Write a fresh CA (``ca.pem``) and a ``127.0.0.1``/``localhost`` server certificate signed by it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "railiance test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server-key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# --------------------------------------------------------------------------------------------------
# Registry process


@dataclass
class RegistryServer:
    """``docker-registry serve`` on ``127.0.0.1:<port>`` with storage under ``workdir``."""

    workdir: Path
    port: int = 0
    token_server: TokenServer | None = None
    process: ManagedProcess | None = None
    notify_url: str | None = None
    """Where the registry POSTs its notification events (``notifications.endpoints``), if anywhere."""
    notify_secret: str = ""
    """The shared secret it sends as ``Authorization: Bearer <secret>``."""
    tls: TlsFiles | None = None
    """When set, the registry serves HTTPS with this certificate (``url`` is then ``https://``)."""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5123`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    def config_yaml(self) -> str:
        """The registry configuration this server runs with."""
        storage = self.workdir / "storage"
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
            *(
                ["  tls:", f"    certificate: {self.tls.cert}", f"    key: {self.tls.key}"]
                if self.tls is not None
                else []
            ),
            "health:",
            "  storagedriver:",
            "    enabled: false",
        ]
        if self.token_server is not None:
            bundle = self.workdir / "token-root.pem"
            bundle.write_bytes(self.token_server.cert_pem)
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_server.realm}",
                f"    service: {SERVICE}",
                f"    issuer: {ISSUER}",
                f"    rootcertbundle: {bundle}",
            ]
        if self.notify_url:
            lines += [
                "notifications:",
                "  endpoints:",
                "    - name: railiance",
                f"      url: {self.notify_url}",
                "      headers:",
                f"        Authorization: [Bearer {self.notify_secret}]",
                "      timeout: 2s",
                "      threshold: 3",
                "      backoff: 500ms",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> RegistryServer:
        """Write the config, start the registry in its own process group, wait for ``/v2/``."""
        if not Path(REGISTRY_BIN).exists():
            raise HarnessError(f"{REGISTRY_BIN} not found: run scripts/bootstrap --test-deps")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = self.workdir / "config.yml"
        config.write_text(self.config_yaml())
        self.process = ManagedProcess(
            [REGISTRY_BIN, "serve", str(config)], log_path=self.workdir / "registry.log"
        )
        ready_statuses = {401} if self.token_server is not None else {200}
        process = self.process

        def ready() -> bool:
            process.check_alive("docker-registry")
            verify: Any = str(self.tls.ca) if self.tls is not None else True
            return httpx.get(self.url + "/v2/", timeout=1.0, verify=verify).status_code in ready_statuses

        try:
            wait_until(ready, timeout=timeout, what=f"docker-registry at {self.url}/v2/")
        except HarnessError as exc:
            self.stop()
            raise HarnessError(f"{exc}\n{process.log_tail()}") from exc
        return self

    def stop(self) -> None:
        """Stop the registry process group (and the token server if any); idempotent."""
        if self.process is not None:
            self.process.stop()
        if self.token_server is not None:
            self.token_server.stop()


def start_registry(
    workdir: Path,
    *,
    port: int = 0,
    token_auth: bool = False,
    notify_url: str | None = None,
    notify_secret: str = "",
    tls: TlsFiles | None = None,
) -> RegistryServer:
    """Start a registry (optionally with its token server, optionally notifying ``notify_url`` of
    every event with ``Authorization: Bearer <notify_secret>``) and return it running."""
    token_server = TokenServer().start() if token_auth else None
    attempts = 1 if port else 3  # a free port can be taken by someone else before the child binds it
    try:
        for attempt in range(attempts):
            try:
                return RegistryServer(
                    workdir=workdir,
                    port=port,
                    token_server=token_server,
                    notify_url=notify_url,
                    notify_secret=notify_secret,
                    tls=tls,
                ).start()
            except HarnessError as exc:
                if attempt == attempts - 1 or "address already in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        if token_server is not None:
            token_server.stop()
        raise


# --------------------------------------------------------------------------------------------------
# Client-side helper


class BearerChallengeAuth(httpx.Auth):
    """Minimal client side of the registry token flow, for the helper's own requests."""

    def __init__(self, username: str, password: str) -> None:
        self._basic = httpx.BasicAuth(username, password)
        self._tokens: dict[str, str] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send; on a Bearer challenge fetch a token from the realm and send once more."""
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.startswith("Bearer "):
            return
        params = dict(part.split("=", 1) for part in _split_challenge(challenge[7:]))
        params = {k: v.strip('"') for k, v in params.items()}
        realm = params.pop("realm")
        token_request = httpx.Request("GET", realm, params=params)
        token_request = next(self._basic.auth_flow(token_request))
        token_response = yield token_request
        token_response.read()
        token = token_response.json()["token"]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def _split_challenge(text: str) -> Iterator[str]:
    depth, start = False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            depth = not depth
        elif ch == "," and not depth:
            yield text[start:i].strip()
            start = i + 1
    if text[start:].strip():
        yield text[start:].strip()


class RegistryHelper:
    """Puts test images into a real registry: blobs through the upload API, then the manifest."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        verify: str | bool = True,
    ) -> None:
        auth = (
            BearerChallengeAuth(username, password) if username is not None and password is not None else None
        )
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0, auth=auth, verify=verify)

    def close(self) -> None:
        """Close the helper's HTTP client."""
        self.client.close()

    # -- blobs -------------------------------------------------------------------------------------

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload: ``POST /v2/<repo>/blobs/uploads/`` then ``PUT <location>?digest=``."""
        digest = sha256_digest(data)
        started = self.client.post(f"/v2/{repository}/blobs/uploads/")
        _expect(started, 202, "start blob upload")
        location = httpx.URL(self.base_url).join(started.headers["Location"])
        finished = self.client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _expect(finished, 201, "finish blob upload")
        return digest

    # -- manifests ---------------------------------------------------------------------------------

    def push_image(
        self,
        repository: str,
        tag: str | None = None,
        *,
        media_type: Literal["oci", "docker"] = "oci",
        payload: bytes | None = None,
        labels: dict[str, str] | None = None,
        platform: str = "linux/amd64",
    ) -> str:
        """Push a one-layer image (config + layer blobs, then manifest) and return its digest.

        Without ``tag`` the manifest is pushed by digest only. Without ``payload`` the layer is
        unique, so every call makes a new digest. ``labels`` go in the config's ``config.Labels``
        (e.g. ``org.opencontainers.image.revision``); ``platform`` is ``os/architecture[/variant]``.
        """
        layer = payload if payload is not None else f"layer {uuid.uuid4()}".encode()
        os_name, _, arch = platform.partition("/")
        arch, _, variant = arch.partition("/")
        config = json.dumps(
            {
                "architecture": arch,
                "os": os_name,
                **({"variant": variant} if variant else {}),
                "config": {"Labels": labels} if labels else {},
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
            },
            sort_keys=True,
        ).encode()
        config_digest = self.upload_blob(repository, config)
        layer_digest = self.upload_blob(repository, layer)
        if media_type == "oci":
            manifest_type, config_type, layer_type = OCI_MANIFEST, OCI_CONFIG, OCI_LAYER
        else:
            manifest_type, config_type, layer_type = DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(layer)}],
            },
            indent=2,
        ).encode()
        return self.put_manifest(repository, tag or sha256_digest(manifest), manifest, manifest_type)

    def push_index(
        self, repository: str, tag: str, manifests: list[str], platforms: list[str] | None = None
    ) -> str:
        """Push an OCI image index over already-pushed OCI manifests (by digest); return its digest.

        ``platforms[i]`` (``os/architecture[/variant]``, default ``linux/amd64``) is manifest i's platform.
        """
        entries = []
        for i, digest in enumerate(manifests):
            raw, media_type = self.get_manifest(repository, digest)
            plat = platforms[i] if platforms else "linux/amd64"
            os_name, _, arch = plat.partition("/")
            arch, _, variant = arch.partition("/")
            entries.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(raw),
                    "platform": {
                        "architecture": arch,
                        "os": os_name,
                        **({"variant": variant} if variant else {}),
                    },
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return self.put_manifest(repository, tag, index, OCI_INDEX)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """``PUT /v2/<repo>/manifests/<reference>``; return the digest of ``body``."""
        response = self.client.put(
            f"/v2/{repository}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        _expect(response, 201, f"put manifest {repository}:{reference}")
        digest = sha256_digest(body)
        if response.headers.get("Docker-Content-Digest", digest) != digest:
            raise HarnessError(f"registry digest {response.headers['Docker-Content-Digest']} != {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The raw manifest bytes and media type for a tag or digest."""
        response = self.client.get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
        )
        _expect(response, 200, f"get manifest {repository}:{reference}")
        return response.content, response.headers["Content-Type"].split(";")[0]

    def digest_of(self, repository: str, tag: str) -> str:
        """The digest a tag points at now (sha256 of the manifest bytes)."""
        raw, _ = self.get_manifest(repository, tag)
        return sha256_digest(raw)

    def move_tag(self, repository: str, tag: str, digest_or_new_image: str | None = None) -> str:
        """Point ``tag`` at an existing manifest (by digest) or, given ``None``, at a new image.

        Returns the digest the tag now points at.
        """
        if digest_or_new_image is None:
            return self.push_image(repository, tag)
        raw, media_type = self.get_manifest(repository, digest_or_new_image)
        return self.put_manifest(repository, tag, raw, media_type)

    def delete_tag(self, repository: str, tag: str) -> str:
        """Delete the manifest ``tag`` points at (by digest; distribution untags it); return that digest."""
        digest = self.digest_of(repository, tag)
        self.delete_manifest(repository, digest)
        return digest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """``DELETE /v2/<repo>/manifests/<digest>`` (needs ``storage.delete.enabled``)."""
        response = self.client.delete(f"/v2/{repository}/manifests/{digest}")
        _expect(response, 202, f"delete manifest {repository}@{digest}")


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise HarnessError(
            f"{what}: HTTP {response.status_code} from {response.request.url}: {response.text[:300]}"
        )
