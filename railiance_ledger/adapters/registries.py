"""Every registry the declared images name, each with its own TLS settings and the user's credentials.

``RegistryPool.for_reference(ref)`` returns the ``OciRegistry`` serving ``ref``'s registry (one
``httpx.Client`` per registry, kept until ``close``):

- the base URL is ``https://<api host>`` (``registry-1.docker.io`` for Docker Hub); a registry
  declared ``plain_http = true`` in the registries file is asked over ``http://``, which is refused
  unless its host is loopback; ``mirror`` sends its requests elsewhere; ``override_url``
  (``RAILIANCE_REGISTRY_URL``) sends every registry's requests to one place (a mirror or a test
  registry);
- TLS trusts the system roots plus, when present, the registry's ``ca_bundle`` from the registries
  file, else the container tools' per-registry directories (``/etc/docker/certs.d/<host>/ca.crt``,
  ``/etc/containers/certs.d/<host>/*.crt``, or the directories in ``RAILIANCE_CERTS_D``);
- credentials come from ``DockerCredentialStore`` (docker config, auth file, helpers), unless
  explicit ones were given for the override.

The registries file (``RAILIANCE_REGISTRIES``, default ``$RAILIANCE_HOME/registries.toml``)::

    [registries."registry.example:5000"]
    ca_bundle = "/etc/ssl/registry-ca.pem"
    [registries."127.0.0.1:5000"]
    plain_http = true
"""

from __future__ import annotations

import os
import ssl
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from railiance_ledger.adapters.docker_credentials import Credentials, DockerCredentialStore
from railiance_ledger.adapters.registry import OciRegistry
from railiance_ledger.domain.image_ref import ImageReference, is_loopback_host
from railiance_ledger.errors import InvalidInput

__all__ = ["RegistryPool", "RegistrySettings", "load_registry_settings"]

_CERTS_D = ("/etc/docker/certs.d", "/etc/containers/certs.d")


@dataclass(frozen=True)
class RegistrySettings:
    """One registry's transport settings."""

    plain_http: bool = False
    ca_bundle: str | None = None
    mirror: str | None = None


def load_registry_settings(path: Path | None) -> dict[str, RegistrySettings]:
    """The ``[registries."<host>"]`` tables of ``path`` (missing file: none); bad content raises
    ``InvalidInput``."""
    if path is None or not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"registries file {path}: {exc}") from None
    tables = data.get("registries", {})
    if not isinstance(tables, dict):
        raise InvalidInput(f"registries file {path}: [registries] must be a table of registry hosts")
    out: dict[str, RegistrySettings] = {}
    for host, table in tables.items():
        if not isinstance(table, dict) or set(table) - {"plain_http", "ca_bundle", "mirror"}:
            raise InvalidInput(
                f"registries file {path}: [registries.{host!r}] takes plain_http, ca_bundle and mirror only"
            )
        plain = table.get("plain_http", False)
        if not isinstance(plain, bool):
            raise InvalidInput(f"registries file {path}: {host}.plain_http must be true or false")
        if plain and not is_loopback_host(host):
            raise InvalidInput(
                f"registries file {path}: plain_http is only allowed for a loopback registry, not {host}",
                hint="serve the registry over TLS and give its CA as ca_bundle",
            )
        out[host] = RegistrySettings(
            plain_http=plain,
            ca_bundle=str(table["ca_bundle"]) if table.get("ca_bundle") else None,
            mirror=str(table["mirror"]).rstrip("/") if table.get("mirror") else None,
        )
    return out


class RegistryPool:
    """The ``OciRegistry`` of each registry named by an image reference; ``close`` closes every client."""

    def __init__(
        self,
        *,
        credentials: DockerCredentialStore | None = None,
        settings: Mapping[str, RegistrySettings] | None = None,
        override_url: str | None = None,
        override_credentials: Credentials | None = None,
        override_token: str | None = None,
        timeout: float = 10.0,
        max_workers: int = 8,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._credentials = credentials if credentials is not None else DockerCredentialStore(self._env)
        self._settings = dict(settings or {})
        self._override_url = override_url.rstrip("/") if override_url else None
        self._override_credentials = override_credentials
        self._override_token = override_token
        self._timeout = timeout
        self._max_workers = max(1, max_workers)
        self._registries: dict[str, OciRegistry] = {}
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def __enter__(self) -> RegistryPool:  # noqa: PYI034 - final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def base_url(self, ref: ImageReference) -> str:
        """Where ``ref``'s registry is asked: the override, the mirror, or ``http(s)://<api host>``."""
        if self._override_url:
            return self._override_url
        settings = self._settings.get(ref.registry, RegistrySettings())
        if settings.mirror:
            return settings.mirror
        if settings.plain_http:
            if not ref.is_loopback:  # the settings loader refuses it too; a constructed pool is checked here
                raise InvalidInput(f"plain HTTP is only allowed for a loopback registry, not {ref.registry}")
            return f"http://{ref.api_host}"
        return f"https://{ref.api_host}"

    def for_reference(self, ref: ImageReference) -> OciRegistry:
        """The registry adapter serving ``ref`` (built on first use, then shared)."""
        key = ref.registry
        with self._lock:
            existing = self._registries.get(key)
            if existing is not None:
                return existing
        base = self.base_url(ref)
        creds = self._override_credentials if self._override_url else None
        token = self._override_token if self._override_url and creds is None else None
        if creds is None and token is None:
            creds = self._credentials.lookup(ref)
        limits = httpx.Limits(
            max_connections=self._max_workers * 2, max_keepalive_connections=self._max_workers * 2
        )
        client = httpx.Client(timeout=self._timeout, trust_env=False, verify=self._verify(ref), limits=limits)
        registry = OciRegistry(
            client,
            base,
            username=creds.username if creds and creds.identity_token is None else None,
            password=creds.password if creds and creds.identity_token is None else None,
            identity_token=creds.identity_token if creds else None,
            token=token,
            max_workers=self._max_workers,
        )
        with self._lock:
            if key in self._registries:
                client.close()
                return self._registries[key]
            self._registries[key] = registry
            self._clients.append(client)
        return registry

    def _verify(self, ref: ImageReference) -> ssl.SSLContext | bool:
        settings = self._settings.get(ref.registry, RegistrySettings())
        bundles: list[str] = []
        if settings.ca_bundle:
            bundles.append(settings.ca_bundle)
        else:
            dirs = self._env.get("RAILIANCE_CERTS_D")
            for base in dirs.split(os.pathsep) if dirs else _CERTS_D:
                host_dir = Path(base) / ref.registry
                if host_dir.is_dir():
                    bundles += sorted(str(p) for p in host_dir.glob("*.crt"))
        if not bundles:
            return True
        context = ssl.create_default_context()
        for bundle in bundles:
            try:
                context.load_verify_locations(cafile=bundle)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidInput(
                    f"CA bundle {bundle} for registry {ref.registry} cannot be loaded: {exc}"
                ) from None
        return context

    def close(self) -> None:
        """Close every client; idempotent."""
        with self._lock:
            clients, self._clients, self._registries = self._clients, [], {}
        for client in clients:
            client.close()
