"""Registry credentials where the container tools keep them.

Lookup order for one registry (the Docker CLI's, with podman's ``REGISTRY_AUTH_FILE`` first):

1. ``REGISTRY_AUTH_FILE`` (containers-auth.json: ``auths``, ``credHelpers``), when set;
2. the docker config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``:
   ``credHelpers[registry]`` (a ``docker-credential-<name>`` helper for this registry), else
   ``auths[registry]`` (``auth``: base64 ``user:password``, or ``username``/``password``,
   or ``identitytoken``), else ``credsStore`` (the default helper);
3. nothing: anonymous.

A helper is run as ``docker-credential-<name> get`` with the server URL on stdin and answers
``{"ServerURL": ..., "Username": ..., "Secret": ...}``; exit 1 with "credentials not found" means
none. Credentials only live in memory (``Credentials.__repr__`` hides the secret); they are never
logged, put in an error message or returned to a caller that records.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railiance_ledger.domain.image_ref import ImageReference
from railiance_ledger.errors import AdapterAuthError, AdapterProtocolError, AdapterUnavailable

__all__ = ["HELPER_TIMEOUT", "Credentials", "DockerCredentialStore"]

SYSTEM = "registry-credentials"
HELPER_TIMEOUT = 10.0
"""Seconds a credential helper may take to answer."""


@dataclass(frozen=True)
class Credentials:
    """A username and a secret (password or token) for one registry; ``identity_token`` for OAuth."""

    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = ""
    """Where they came from (a file path and key, or a helper name): safe to show."""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r}, secret=<hidden>)"


class DockerCredentialStore:
    """Finds the credentials of a registry in the docker config, the auth file and credential helpers."""

    def __init__(self, env: Mapping[str, str] | None = None, *, home: Path | None = None) -> None:
        """Read ``DOCKER_CONFIG``, ``REGISTRY_AUTH_FILE`` and ``PATH`` from ``env`` (default: the process)."""
        self._env = dict(os.environ if env is None else env)
        self._home = home or Path(self._env.get("HOME") or Path.home())
        self._files: list[tuple[Path, dict[str, Any]]] | None = None
        self._cache: dict[str, Credentials | None] = {}

    def files(self) -> list[tuple[Path, dict[str, Any]]]:
        """The config files that exist, in lookup order, parsed (a malformed one raises)."""
        if self._files is None:
            paths: list[Path] = []
            auth_file = self._env.get("REGISTRY_AUTH_FILE")
            if auth_file:
                paths.append(Path(auth_file))
            config_dir = self._env.get("DOCKER_CONFIG")
            paths.append(
                Path(config_dir) / "config.json" if config_dir else self._home / ".docker" / "config.json"
            )
            loaded = []
            for path in paths:
                try:
                    text = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise AdapterUnavailable(
                        f"cannot read {path}: {exc.strerror}", system=SYSTEM, operation="read config"
                    ) from exc
                try:
                    data = json.loads(text) if text.strip() else {}
                except ValueError as exc:
                    raise AdapterProtocolError(
                        f"{path} is not JSON (line {getattr(exc, 'lineno', '?')})",
                        system=SYSTEM,
                        operation="read config",
                    ) from None
                if not isinstance(data, dict):
                    raise AdapterProtocolError(
                        f"{path} is not a JSON object", system=SYSTEM, operation="read config"
                    )
                loaded.append((path, data))
            self._files = loaded
        return self._files

    def lookup(self, ref: ImageReference) -> Credentials | None:
        """The credentials for ``ref``'s registry, or ``None`` (anonymous). Cached per registry."""
        if ref.registry in self._cache:
            return self._cache[ref.registry]
        found = self._lookup(ref)
        self._cache[ref.registry] = found
        return found

    def _lookup(self, ref: ImageReference) -> Credentials | None:
        for path, data in self.files():
            helpers = data.get("credHelpers")
            if isinstance(helpers, dict):
                for key in ref.credential_keys:
                    helper = helpers.get(key)
                    if isinstance(helper, str) and helper:
                        return self.run_helper(helper, ref.helper_server)
            auths = data.get("auths")
            if isinstance(auths, dict):
                for key in ref.credential_keys:
                    entry = auths.get(key)
                    if isinstance(entry, dict):
                        creds = _from_auth_entry(entry, source=f"{path} auths[{key}]")
                        if creds is not None:
                            return creds
            store = data.get("credsStore")
            if isinstance(store, str) and store:
                return self.run_helper(store, ref.helper_server)
        return None

    def run_helper(self, name: str, server: str) -> Credentials | None:
        """``docker-credential-<name> get`` with ``server`` on stdin; ``None`` when it has none."""
        program = f"docker-credential-{name}"
        operation = f"{program} get"
        found = shutil.which(program, path=self._env.get("PATH"))
        if found is None:
            raise AdapterUnavailable(
                f"credential helper {program} is not on PATH",
                system=SYSTEM,
                operation=operation,
                hint="install it or remove it from the docker config's credHelpers/credsStore",
            )
        try:
            done = subprocess.run(
                [found, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=HELPER_TIMEOUT,
                check=False,
                env=self._env,
            )
        except subprocess.TimeoutExpired:
            raise AdapterUnavailable(
                f"{program} did not answer in {HELPER_TIMEOUT:.0f} s", system=SYSTEM, operation=operation
            ) from None
        except OSError as exc:
            raise AdapterUnavailable(
                f"cannot run {program}: {exc.strerror}", system=SYSTEM, operation=operation
            ) from None
        out = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            if "credentials not found" in (out + done.stderr.decode("utf-8", "replace")).lower():
                return None
            # the helper's output may carry a secret: only its exit status is reported
            raise AdapterAuthError(f"{program} exited {done.returncode}", system=SYSTEM, operation=operation)
        try:
            answer = json.loads(out)
        except ValueError:
            raise AdapterProtocolError(
                f"{program} did not answer JSON", system=SYSTEM, operation=operation
            ) from None
        if not isinstance(answer, dict):
            raise AdapterProtocolError(
                f"{program} did not answer a JSON object", system=SYSTEM, operation=operation
            )
        username, secret = answer.get("Username"), answer.get("Secret")
        if not isinstance(secret, str) or not secret:
            return None
        if username == "<token>":
            return Credentials(identity_token=secret, source=program)
        return Credentials(username=str(username or ""), password=secret, source=program)


def _from_auth_entry(entry: Mapping[str, Any], *, source: str) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(identity_token=token, source=source)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AdapterProtocolError(
                f"{source}: 'auth' is not base64 of user:password", system=SYSTEM, operation="read config"
            ) from None
        if not sep:
            raise AdapterProtocolError(
                f"{source}: 'auth' is not base64 of user:password", system=SYSTEM, operation="read config"
            )
        return Credentials(username=user, password=password, source=source)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(username=name, password=secret, source=source)
    return None
