"""Helm, through the real ``helm`` binary.

One private ``_run`` helper executes ``helm`` with a timeout and translates every failure into the
``AdapterError`` tree (stderr redacted and bounded). Stage 1 uses ``template``; later stages add
``upgrade``, ``rollback`` and ``history`` as further thin methods over the same helper.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import (
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
)

if TYPE_CHECKING:
    from railiance_ledger.ports import HelmPort

_STDERR_LIMIT = 2000
_RELEASE_OPERATIONS = frozenset({"history", "uninstall", "rollback", "get manifest"})
"""Operations on an existing release: their "not found" answers raise ``HelmReleaseNotFound``."""


class HelmCommandFailed(AdapterError):
    """Helm ran and exited non-zero: it was asked and answered no (e.g. a chart that does not
    render). ``exit_status`` is helm's exit code, ``stderr`` its redacted, bounded error text."""

    def __init__(self, message: str, *, operation: str, address: str, exit_status: int, stderr: str) -> None:
        super().__init__(message, system="helm", operation=operation, address=address)
        self.exit_status = exit_status
        self.stderr = stderr


class HelmReleaseNotFound(HelmCommandFailed, AdapterNotFound):
    """Helm answered that the release does not exist (``history``, ``uninstall``, ``rollback``,
    ``get manifest`` of an unknown release): a ``HelmCommandFailed`` and an ``AdapterNotFound``."""


_NOT_FOUND_MARKERS = ("release: not found", "release not loaded", "has no deployed releases")
_LOOKUP_FAILED_MARKERS = ("failed to query", "failed to list")
"""helm says "release not loaded" also when it could not ask the apiserver: that is no "not found"."""


class Helm:
    """The helm CLI. ``binary`` is a name on ``PATH`` or a path; ``env`` adds environment
    variables (``KUBECONFIG``, ``HELM_CACHE_HOME`` ...) to the inherited environment."""

    def __init__(self, binary: str = "helm", *, env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.env = dict(env or {})

    def _run(self, args: Sequence[str], *, operation: str, timeout: float, address: str = "") -> str:
        """Run ``helm ARGS`` and return stdout.

        Raises ``AdapterUnavailable`` when the binary cannot be started, ``AdapterTimeout`` after
        ``timeout`` seconds, and ``HelmCommandFailed`` (an ``AdapterError``) on a non-zero exit,
        with helm's stderr redacted and cut to a bounded length.
        """
        env = {**os.environ, **self.env} if self.env else None
        try:
            proc = subprocess.run(
                [self.binary, *args],
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env=env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise AdapterUnavailable(
                f"helm binary {self.binary!r} not found",
                system="helm",
                operation=operation,
                address=address,
                hint="run ./scripts/bootstrap or put helm on PATH",
            ) from exc
        except PermissionError as exc:
            raise AdapterUnavailable(
                f"helm binary {self.binary!r} is not executable",
                system="helm",
                operation=operation,
                address=address,
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise AdapterTimeout(
                f"no answer after {timeout:g}s", system="helm", operation=operation, address=address
            ) from exc
        if proc.returncode != 0:
            err = redact(proc.stderr.decode("utf-8", errors="replace").strip())
            if len(err) > _STDERR_LIMIT:
                err = err[:_STDERR_LIMIT] + " [...]"
            kind = (
                HelmReleaseNotFound
                if operation in _RELEASE_OPERATIONS
                and any(m in err.lower() for m in _NOT_FOUND_MARKERS)
                and not any(m in err.lower() for m in _LOOKUP_FAILED_MARKERS)
                else HelmCommandFailed
            )
            raise kind(
                f"exit {proc.returncode}: {err}",
                operation=operation,
                address=address,
                exit_status=proc.returncode,
                stderr=err,
            )
        return proc.stdout.decode("utf-8", errors="replace")

    def version(self, *, timeout: float = 10.0) -> str:
        """``helm version --short`` (e.g. ``v4.1.4+g05fa379``)."""
        return self._run(["version", "--short"], operation="version", timeout=timeout).strip()

    def template(
        self,
        *,
        chart: Path | str,
        release: str,
        namespace: str,
        values_files: Sequence[Path | str] = (),
        set_values: Mapping[str, str] | None = None,
        kube_version: str | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Render ``chart`` offline (``helm template``) and return the multi-document YAML.

        ``values_files`` are applied in order (later wins); ``set_values`` are set as literal
        strings (``--set-literal``) after them; ``kube_version`` sets ``Capabilities.KubeVersion``.
        """
        args: list[str] = ["template", release, str(chart), "--namespace", namespace]
        for vf in values_files:
            args += ["--values", str(vf)]
        for key, value in (set_values or {}).items():
            args += ["--set-literal", f"{key}={value}"]
        if kube_version:
            args += ["--kube-version", kube_version]
        return self._run(args, operation="template", timeout=timeout, address=str(chart))

    # ------------------------------------------------------------------ releases (Stage 2 and later)
    # Added for Stage 2: thin methods over ``_run`` against a live cluster (``KUBECONFIG`` in ``env``).

    def install_or_upgrade(
        self,
        *,
        chart: Path | str,
        release: str,
        namespace: str,
        values_files: Sequence[Path | str] = (),
        set_values: Mapping[str, str] | None = None,
        wait: bool = False,
        extra_args: Sequence[str] = (),
        timeout: float = 300.0,
    ) -> dict[str, object]:
        """``helm upgrade --install`` and return helm's JSON status of the release.

        The returned dict carries at least ``name``, ``namespace`` and ``version`` (the revision).
        ``set_values`` are literal strings (``--set-literal``), applied after ``values_files``;
        ``extra_args`` are passed through (e.g. ``--disable-openapi-validation`` for API servers
        that serve no OpenAPI document).
        """
        args: list[str] = [
            "upgrade",
            "--install",
            release,
            str(chart),
            "--namespace",
            namespace,
            "--output",
            "json",
        ]
        for vf in values_files:
            args += ["--values", str(vf)]
        for key, value in (set_values or {}).items():
            args += ["--set-literal", f"{key}={value}"]
        if wait:
            args += ["--wait", "--timeout", f"{int(timeout)}s"]
        args += list(extra_args)
        out = self._run(args, operation="upgrade", timeout=timeout + 30, address=f"{namespace}/{release}")
        return _json_object(out, operation="upgrade", address=f"{namespace}/{release}")

    def history(self, *, release: str, namespace: str, timeout: float = 60.0) -> list[dict[str, object]]:
        """``helm history`` as a list of revisions (``revision``, ``status``, ``chart``, ``updated``...).

        A release that does not exist raises ``HelmReleaseNotFound`` (helm exits 1, "release: not found").
        """
        out = self._run(
            ["history", release, "--namespace", namespace, "--output", "json"],
            operation="history",
            timeout=timeout,
            address=f"{namespace}/{release}",
        )
        try:
            data = json.loads(out or "[]")
        except ValueError as exc:
            raise AdapterProtocolError(
                "history is not JSON", system="helm", operation="history", address=f"{namespace}/{release}"
            ) from exc
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def rollback(
        self,
        *,
        release: str,
        namespace: str,
        revision: int | None = None,
        wait: bool = False,
        timeout: float = 300.0,
    ) -> None:
        """``helm rollback RELEASE [REVISION]`` (the previous revision when ``revision`` is None).

        ``wait`` waits (up to ``timeout``) until the rolled-back resources are ready; an unknown
        release raises ``HelmReleaseNotFound``.
        """
        args = ["rollback", release]
        if revision is not None:
            args.append(str(int(revision)))
        args += ["--namespace", namespace]
        if wait:
            args += ["--wait", "--timeout", f"{int(timeout)}s"]
        self._run(args, operation="rollback", timeout=timeout + 30, address=f"{namespace}/{release}")

    def uninstall(self, *, release: str, namespace: str, timeout: float = 300.0, wait: bool = False) -> None:
        """``helm uninstall RELEASE``: removes every object of the release and its history.

        ``wait`` waits until the objects are gone; an unknown release raises ``HelmReleaseNotFound``.
        """
        args = ["uninstall", release, "--namespace", namespace, "--timeout", f"{int(timeout)}s"]
        if wait:
            args.append("--wait")
        self._run(args, operation="uninstall", timeout=timeout + 30, address=f"{namespace}/{release}")

    def get_manifest(
        self, *, release: str, namespace: str, revision: int | None = None, timeout: float = 60.0
    ) -> str:
        """``helm get manifest`` of the release (at ``revision`` when given): the applied YAML.

        An unknown release (or revision) raises ``HelmReleaseNotFound``.
        """
        args = ["get", "manifest", release, "--namespace", namespace]
        if revision is not None:
            args += ["--revision", str(int(revision))]
        return self._run(args, operation="get manifest", timeout=timeout, address=f"{namespace}/{release}")


def _json_object(text: str, *, operation: str, address: str) -> dict[str, object]:
    """Parse helm's ``--output json`` answer into a dict, or raise ``AdapterProtocolError``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AdapterProtocolError(
            "answer is not JSON", system="helm", operation=operation, address=address
        ) from exc
    if not isinstance(data, dict):
        raise AdapterProtocolError(
            "answer is not a JSON object", system="helm", operation=operation, address=address
        )
    return data


if TYPE_CHECKING:
    _helm_port: type[HelmPort] = Helm  # mypy: Helm implements the helm port
