"""Push notifications to candidates: what ``railiance webhook serve`` stored, matched to workloads.

- ``spool_path``: where the receiver stores and the push sensor reads (``RAILIANCE_WEBHOOK_SPOOL``,
  default ``$RAILIANCE_HOME/registry-events.db``).
- ``match_push``: the declared workload a manifest push is for (same repository path, same
  registry host unless every registry is overridden, a tag the workload watches).
- ``register_pushes``: register each matched push (``source="webhook"``, with the image's revision
  label and an index's platforms, through ``register_polled``); a digest registered before (by a
  replayed notification, the polling sensor or the CLI) is ``created=False`` and requests nothing.

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.errors import RailianceError
from railiance_ledger.lifecycle.registry_poll import RegistryLookup, register_polled, workload_reference
from railiance_ledger.lifecycle.workloads import DeclaredWorkload

if TYPE_CHECKING:
    from railiance_ledger.adapters.push_spool import PushNotice
    from railiance_ledger.ledger.store import EventStore


class DagsterWebPort(Protocol):
    """The Dagster webserver as the fast path uses it (``adapters.dagster_web.DagsterWeb``)."""

    def stage1_requested(self, key: str) -> bool: ...

    def launch_stage1(self, key: str, tags: dict[str, str]) -> str: ...


__all__ = [
    "DAGSTER_URL_ENV",
    "SECRET_ENV",
    "SPOOL_ENV",
    "DagsterWebPort",
    "FastPath",
    "PushRegistration",
    "match_push",
    "parse_listen",
    "register_pushes",
    "serve_webhook",
    "spool_path",
]

SPOOL_ENV = "RAILIANCE_WEBHOOK_SPOOL"
SECRET_ENV = "RAILIANCE_WEBHOOK_SECRET"
DAGSTER_URL_ENV = "RAILIANCE_DAGSTER_URL"


def spool_path(env: Mapping[str, str] | None = None) -> Path:
    """``RAILIANCE_WEBHOOK_SPOOL``, else ``$RAILIANCE_HOME/registry-events.db``."""
    from railiance_ledger.config import railiance_home

    e = os.environ if env is None else env
    raw = e.get(SPOOL_ENV, "").strip()
    return Path(raw).expanduser() if raw else railiance_home() / "registry-events.db"


@dataclass(frozen=True)
class PushRegistration:
    """What one notified push did: the workload, the registration, whether it was new, or why not."""

    notice: PushNotice
    workload: DeclaredWorkload | None
    event: RecordedEvent | None = None
    created: bool = False
    error: str | None = None


def match_push(
    notice: PushNotice, workloads: Sequence[DeclaredWorkload], *, any_host: bool = False
) -> DeclaredWorkload | None:
    """The workload ``notice`` is a watched push for, or ``None``.

    Same repository path; the notified host is the workload's registry (or its API host) unless
    ``any_host`` (every registry overridden to one address); a tag matching ``image.tag_pattern``
    (a push by digest alone names no watched tag).
    """
    if notice.tag is None:
        return None
    for workload in workloads:
        try:
            ref = workload_reference(workload)
        except RailianceError:
            continue
        if ref.path != notice.repository:
            continue
        if not any_host and notice.host and notice.host not in (ref.registry, ref.api_host):
            continue
        pattern = workload.tag_pattern
        if pattern and not re.search(pattern, notice.tag):
            continue
        return workload
    return None


def register_pushes(
    *,
    store: EventStore,
    workloads: Sequence[DeclaredWorkload],
    notices: Sequence[PushNotice],
    registries: RegistryLookup,
    operator: str,
    any_host: bool = False,
) -> list[PushRegistration]:
    """Register every notified push of a watched tag; one ``PushRegistration`` per matched notice."""
    out: list[PushRegistration] = []
    for notice in notices:
        workload = match_push(notice, workloads, any_host=any_host)
        if workload is None:
            continue
        try:
            registry = registries.for_reference(workload_reference(workload))
            event, created = register_polled(
                store=store,
                workload=workload,
                tag=notice.tag,
                digest=notice.digest,
                operator=operator,
                registry=registry,
                source="webhook",
            )
        except RailianceError as exc:
            out.append(PushRegistration(notice=notice, workload=workload, error=str(exc)))
            continue
        out.append(PushRegistration(notice=notice, workload=workload, event=event, created=created))
    return out


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> ``(host, port)``; else ``InvalidInput``."""
    from railiance_ledger.errors import InvalidInput

    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"--listen {listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:9400")
    return host, int(port)


class FastPath:
    """What the receiver does with newly stored pushes when ``RAILIANCE_DAGSTER_URL`` is set: register
    them in the ledger at once and launch Stage 1 through the Dagster webserver (unless a run of the
    partition exists). Best effort: the push sensor reads the same spool and requests what is missing."""

    def __init__(
        self,
        *,
        apps_dir: Path,
        ledger_url: str,
        dagster: DagsterWebPort | None,
        operator: str,
        any_host: bool,
        env: Mapping[str, str],
    ) -> None:
        self.apps_dir, self.ledger_url, self.dagster = apps_dir, ledger_url, dagster
        self.operator, self.any_host, self.env = operator, any_host, dict(env)
        self.launched: list[str] = []

    def __call__(self, notices: list[PushNotice]) -> None:
        from railiance_ledger.domain.digests import partition_key
        from railiance_ledger.ledger.store import EventStore
        from railiance_ledger.lifecycle.environment import open_registries
        from railiance_ledger.lifecycle.workloads import discover_workloads

        workloads, _problems = discover_workloads(self.apps_dir)
        store = EventStore.open(self.ledger_url)
        try:
            with open_registries(self.env) as pool:
                done = register_pushes(
                    store=store,
                    workloads=workloads,
                    notices=notices,
                    registries=pool,
                    operator=self.operator,
                    any_host=self.any_host,
                )
        finally:
            store.close()
        if self.dagster is None:
            return
        for item in done:
            if item.event is None or item.workload is None:
                continue
            key = partition_key(item.workload.name, item.notice.digest)
            if self.dagster.stage1_requested(key):
                continue
            self.dagster.launch_stage1(
                key,
                {
                    "railiance/workload": item.workload.name,
                    "railiance/digest": item.notice.digest,
                    "railiance/tag": item.notice.tag or "",
                    "railiance/source": "webhook",
                },
            )
            self.launched.append(key)


def serve_webhook(
    *,
    listen: str,
    spool: Path,
    env: Mapping[str, str] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the push-notification receiver on ``listen`` until interrupted, storing into ``spool``.

    The shared secret is read from ``RAILIANCE_WEBHOOK_SECRET`` (never a flag: flags show in ``ps``).
    ``ready`` is called with the events URL once listening. With ``RAILIANCE_DAGSTER_URL`` set, the
    fast path (``FastPath``) registers each stored push in the ledger (``RAILIANCE_LEDGER_URL``,
    workloads under ``RAILIANCE_APPS_DIR``) and launches Stage 1 at once.
    """
    from railiance_ledger.config import ledger_url
    from railiance_ledger.errors import InvalidInput
    from railiance_ledger.lifecycle.environment import build_webhook_server, open_dagster_web

    e = os.environ if env is None else env
    secret = e.get(SECRET_ENV, "")
    if not secret:
        raise InvalidInput(
            f"{SECRET_ENV} is not set",
            hint="set it to the secret the registry sends in its notifications.endpoints headers",
        )
    host, port = parse_listen(listen)
    dagster_url = e.get(DAGSTER_URL_ENV, "").strip() or None
    with open_dagster_web(dagster_url) as dagster:
        fast = None
        if dagster is not None:
            fast = FastPath(
                apps_dir=Path(e.get("RAILIANCE_APPS_DIR") or "examples").expanduser().resolve(),
                ledger_url=e.get("RAILIANCE_LEDGER_URL") or ledger_url(),
                dagster=dagster,
                operator="webhook",
                any_host=bool(e.get("RAILIANCE_REGISTRY_URL")),
                env=e,
            )
        try:
            server = build_webhook_server(spool, secret=secret, host=host, port=port, on_stored=fast)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {listen}: {exc.strerror}") from None
        if ready is not None:
            ready(server.url)
        try:
            server.serve_forever()
        finally:
            server.stop()
