"""Registry polling for the new-digest sensor: which digest each watched tag points at now.

- ``poll_registry``: the current ``tag -> digest`` of every declared workload's watched tags,
  concurrently; a registry failure is an answer (``TagPoll.error``), never an exception.
- ``register_polled``: register a polled digest as a candidate (``source="sensor"``, idempotent).

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.errors import AdapterNotFound, AdapterTimeout, AdapterUnavailable, RailianceError
from railiance_ledger.lifecycle.candidates import register_candidate
from railiance_ledger.lifecycle.workloads import DeclaredWorkload

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import RegistryPort

__all__ = ["TagPoll", "poll_registry", "register_polled"]


@dataclass(frozen=True)
class TagPoll:
    """The watched tags of one workload as the registry answered, or why it could not be asked."""

    workload: str
    tags: dict[str, str]
    error: str | None = None
    unavailable: bool = False
    """True when the registry could not be reached (connection refused, timeout, 5xx)."""

    @property
    def ok(self) -> bool:
        """True when the registry answered."""
        return self.error is None


def _poll_one(registry: RegistryPort, workload: DeclaredWorkload) -> TagPoll:
    try:
        tags = registry.tags_with_digests(repository=workload.repository_path, pattern=workload.tag_pattern)
    except AdapterNotFound:
        return TagPoll(workload=workload.name, tags={})  # nothing pushed yet
    except (AdapterUnavailable, AdapterTimeout) as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc), unavailable=True)
    except RailianceError as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc))
    return TagPoll(workload=workload.name, tags=dict(tags))


def poll_registry(
    registry: RegistryPort, workloads: Sequence[DeclaredWorkload], *, max_workers: int = 16
) -> list[TagPoll]:
    """``tag -> digest`` of every workload's watched tags, asked concurrently (bounded by ``max_workers``).

    The order of the result follows ``workloads``. Failures are answers, not exceptions.
    """
    if not workloads:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(workloads))), thread_name_prefix="registry-poll"
    ) as pool:
        return list(pool.map(lambda w: _poll_one(registry, w), workloads))


def register_polled(
    *, store: EventStore, workload: DeclaredWorkload, tag: str, digest: str, operator: str
) -> tuple[RecordedEvent, bool]:
    """Register ``image.repository@digest`` (seen under ``tag``) as a candidate; ``(event, created)``.

    Idempotent (``register_candidate``): a digest already registered, by the CLI or another tag,
    returns its existing event and ``created=False``. The registration carries no source revision:
    the registry does not say which commit built the image (Stage 1 binds it to the work tree).
    """
    return register_candidate(
        store=store,
        decl=workload.decl,
        image=f"{workload.repository}@{digest}",
        operator=operator,
        revision=None,
        source="sensor",
        extra={"tag": tag},
    )
