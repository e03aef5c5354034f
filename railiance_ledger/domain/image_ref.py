"""Image references as the Docker CLI reads them: which registry, which repository path, tag, digest.

``parse_reference("team/app:v1")`` -> registry ``docker.io``, path ``team/app``, tag ``v1``. The
rules are distribution's ``reference.ParseNormalizedNamed``:

- the first path component is a registry host when it contains a ``.`` or a ``:`` or is
  ``localhost``; otherwise the registry is Docker Hub (``docker.io``);
- on Docker Hub a one-component path gets the ``library/`` prefix (``nginx`` -> ``library/nginx``);
- ``index.docker.io`` is an alias of ``docker.io``;
- Docker Hub's API lives at ``registry-1.docker.io`` (``api_host``), its credentials in a docker
  config under ``https://index.docker.io/v1/`` (``credential_keys``).

Pure: no I/O. A maintained parser exists on PyPI (``docker-image-py``) but has no type information
for mypy --strict and does less than this module needs (the API host and the credential keys).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from railiance_ledger.domain.text import shown

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_API",
    "DOCKER_HUB_AUTH_KEY",
    "ImageReference",
    "ReferenceError",
    "is_loopback_host",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
    r"[a-zA-Z0-9]))*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_NAME = 255


class ReferenceError(ValueError):
    """The text is not an image reference."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalized image reference."""

    registry: str
    """The registry as named (``docker.io``, ``registry.example:5000``, ``127.0.0.1:5000``)."""
    path: str
    """The repository path inside the registry (``library/nginx``, ``team/app``)."""
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host (and port) serving the ``/v2/`` API: ``registry-1.docker.io`` for Docker Hub."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/path``, the fully qualified repository name."""
        return f"{self.registry}/{self.path}"

    @property
    def credential_keys(self) -> tuple[str, ...]:
        """The keys a docker config's ``auths`` may store this registry's credentials under."""
        if self.registry == DOCKER_HUB:
            return (DOCKER_HUB_AUTH_KEY, "index.docker.io", "docker.io", "registry-1.docker.io")
        return (self.registry, f"https://{self.registry}", f"http://{self.registry}")

    @property
    def helper_server(self) -> str:
        """The server URL handed to a ``docker-credential-*`` helper (Docker Hub's is the v1 URL)."""
        return DOCKER_HUB_AUTH_KEY if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        """True when the registry host is ``localhost`` or a loopback address."""
        return is_loopback_host(self.registry)

    def with_digest(self, digest: str) -> ImageReference:
        """The same repository pinned by ``digest`` (the tag dropped)."""
        return ImageReference(registry=self.registry, path=self.path, digest=digest)


def is_loopback_host(host_port: str) -> bool:
    """True for ``localhost[:port]``, ``127.x.y.z[:port]`` and ``[::1][:port]``."""
    host = host_port
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_reference(text: str) -> ImageReference:
    """Parse ``[registry/]path[:tag][@sha256:...]`` with the Docker CLI's defaults.

    Raises ``ReferenceError`` for anything else (upper case in the path, an empty component, a bad
    tag or digest, over 255 characters of name).
    """
    ref = text.strip()
    if not ref or any(c.isspace() for c in ref):
        raise ReferenceError(f"{shown(text)} is not an image reference")
    digest: str | None = None
    if "@" in ref:
        ref, _, digest = ref.partition("@")
        if not _DIGEST_RE.match(digest):
            raise ReferenceError(f"{shown(text)}: malformed digest; expected sha256:<64 lowercase hex>")
    tag: str | None = None
    last_slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > last_slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError(f"{shown(text)}: {shown(tag)} is not a valid tag")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _HOST_RE.match(registry):
            raise ReferenceError(f"{shown(text)}: {shown(registry)} is not a registry host")
    else:
        registry, path = DOCKER_HUB, ref
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise ReferenceError(
            f"{shown(text)}: repository path {shown(path)} must be lowercase components separated by '/'"
        )
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise ReferenceError(f"{shown(text)}: repository name longer than {_MAX_NAME} characters")
    return ImageReference(registry=registry, path=path, tag=tag, digest=digest)
