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
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.errors import RailianceError
from railiance_ledger.lifecycle.registry_poll import RegistryLookup, register_polled, workload_reference
from railiance_ledger.lifecycle.workloads import DeclaredWorkload

if TYPE_CHECKING:
    from railiance_ledger.adapters.push_spool import PushNotice
    from railiance_ledger.ledger.store import EventStore

__all__ = [
    "SECRET_ENV",
    "SPOOL_ENV",
    "PushRegistration",
    "match_push",
    "parse_listen",
    "register_pushes",
    "serve_webhook",
    "spool_path",
]

SPOOL_ENV = "RAILIANCE_WEBHOOK_SPOOL"
SECRET_ENV = "RAILIANCE_WEBHOOK_SECRET"


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


def serve_webhook(
    *,
    listen: str,
    spool: Path,
    env: Mapping[str, str] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the push-notification receiver on ``listen`` until interrupted, storing into ``spool``.

    The shared secret is read from ``RAILIANCE_WEBHOOK_SECRET`` (never a flag: flags show in ``ps``).
    ``ready`` is called with the events URL once listening.
    """
    from railiance_ledger.adapters.push_spool import PushSpool
    from railiance_ledger.adapters.webhook_server import WebhookServer
    from railiance_ledger.errors import InvalidInput

    e = os.environ if env is None else env
    secret = e.get(SECRET_ENV, "")
    if not secret:
        raise InvalidInput(
            f"{SECRET_ENV} is not set",
            hint="set it to the secret the registry sends in its notifications.endpoints headers",
        )
    host, port = parse_listen(listen)
    try:
        server = WebhookServer(PushSpool(spool), secret=secret, host=host, port=port)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {listen}: {exc.strerror}") from None
    if ready is not None:
        ready(server.url)
    try:
        server.serve_forever()
    finally:
        server.stop()
