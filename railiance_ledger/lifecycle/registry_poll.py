"""Registry polling for the new-digest sensor: which digest each watched tag points at now.

- ``poll_registry``: the current ``tag -> digest`` of every declared workload's watched tags,
  concurrently; a registry failure is an answer (``TagPoll.error``), never an exception.
- ``register_polled``: register a polled digest as a candidate (``source="sensor"``, idempotent),
  with what the registry says about it (``describe_digest``): an index's platform manifests and the
  revision from the image's ``org.opencontainers.image.revision`` label.

Each workload is asked at the registry its ``image.repository`` names (``RegistryPool``); a single
registry adapter may be given instead (every workload asked there).

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.image_ref import ImageReference, ReferenceError, parse_reference
from railiance_ledger.errors import (
    AdapterNotFound,
    AdapterTimeout,
    AdapterUnavailable,
    InvalidInput,
    RailianceError,
)
from railiance_ledger.lifecycle.candidates import register_candidate
from railiance_ledger.lifecycle.workloads import DeclaredWorkload

if TYPE_CHECKING:
    from railiance_ledger.adapters.registry import OciRegistry
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import RegistryPort

__all__ = [
    "REVISION_LABEL",
    "SOURCE_LABEL",
    "ArtifactFacts",
    "RegistryLookup",
    "TagPoll",
    "describe_digest",
    "poll_registry",
    "register_polled",
    "workload_reference",
]

REVISION_LABEL = "org.opencontainers.image.revision"
SOURCE_LABEL = "org.opencontainers.image.source"


class RegistryLookup(Protocol):
    """Gives the registry adapter serving an image reference (``adapters.registries.RegistryPool``)."""

    def for_reference(self, ref: ImageReference) -> OciRegistry: ...


def workload_reference(workload: DeclaredWorkload) -> ImageReference:
    """The declared ``image.repository`` parsed with the Docker CLI's defaults."""
    try:
        return parse_reference(workload.repository)
    except ReferenceError as exc:
        raise InvalidInput(f"{workload.name}: image.repository: {exc}") from None


@dataclass(frozen=True)
class ArtifactFacts:
    """What the registry says about one digest: index platforms, revision and source labels."""

    platforms: dict[str, str] = field(default_factory=dict)
    platform: str = ""
    """The platform of an image manifest (``os/arch``); empty for an index."""
    labels: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def revision(self) -> str | None:
        """The ``org.opencontainers.image.revision`` label, if any."""
        return self.labels.get(REVISION_LABEL) or None

    @property
    def source_url(self) -> str | None:
        """The ``org.opencontainers.image.source`` label, if any."""
        return self.labels.get(SOURCE_LABEL) or None


def describe_digest(
    registry: OciRegistry, *, repository: str, digest: str, platform: str | None = None
) -> ArtifactFacts:
    """Inspect ``repository@digest``: an index's platforms, and the config labels (of ``platform``'s
    manifest in an index). A registry failure is an answer (``error``), never an exception."""
    try:
        info = registry.inspect(repository=repository, reference=digest)
        config = registry.image_config(repository=repository, digest=digest, platform=platform, info=info)
    except RailianceError as exc:
        return ArtifactFacts(error=str(exc))
    return ArtifactFacts(
        platforms=dict(info.platforms),
        platform="" if info.platforms else config.platform,
        labels=dict(config.labels),
    )


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


def _poll_one(registries: RegistryLookup | RegistryPort, workload: DeclaredWorkload) -> TagPoll:
    try:
        ref = workload_reference(workload)
        registry: Any = registries.for_reference(ref) if hasattr(registries, "for_reference") else registries
        tags = registry.tags_with_digests(repository=ref.path, pattern=workload.tag_pattern)
    except AdapterNotFound:
        return TagPoll(workload=workload.name, tags={})  # nothing pushed yet
    except (AdapterUnavailable, AdapterTimeout) as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc), unavailable=True)
    except RailianceError as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc))
    return TagPoll(workload=workload.name, tags=dict(tags))


def poll_registry(
    registry: RegistryLookup | RegistryPort, workloads: Sequence[DeclaredWorkload], *, max_workers: int = 16
) -> list[TagPoll]:
    """``tag -> digest`` of every workload's watched tags, asked concurrently (bounded by ``max_workers``),
    each at the registry its image reference names (or all at ``registry`` when it is one adapter).

    The order of the result follows ``workloads``. Failures are answers, not exceptions.
    """
    if not workloads:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(workloads))), thread_name_prefix="registry-poll"
    ) as pool:
        return list(pool.map(lambda w: _poll_one(registry, w), workloads))


def register_polled(
    *,
    store: EventStore,
    workload: DeclaredWorkload,
    tag: str | None,
    digest: str,
    operator: str,
    registry: OciRegistry | None = None,
    source: str = "sensor",
) -> tuple[RecordedEvent, bool]:
    """Register ``image.repository@digest`` (seen under ``tag``) as a candidate; ``(event, created)``.

    Idempotent (``register_candidate``): a digest already registered, by the CLI or another tag,
    returns its existing event and ``created=False`` (the registry is not asked again). With
    ``registry``, the registration carries what it says about the digest: the revision from the
    image's revision label (``revision_source="image-label"``), its source label, an index's platform
    manifests. Without a label the registration carries no revision (Stage 1 judges provenance).
    """
    from railiance_ledger.lifecycle.candidates import find_registration

    existing = find_registration(store, workload.name, digest)
    if existing is not None:
        return existing, False
    extra: dict[str, Any] = {"tag": tag} if tag else {}
    revision: str | None = None
    if registry is not None:
        facts = describe_digest(
            registry, repository=workload_reference(workload).path, digest=digest, platform=workload.platform
        )
        if facts.platforms:
            extra["platforms"] = facts.platforms
        if facts.revision:
            revision = facts.revision
            extra["revision_source"] = "image-label"
        if facts.source_url:
            extra["source_url"] = facts.source_url
    return register_candidate(
        store=store,
        decl=workload.decl,
        image=f"{workload.repository}@{digest}",
        operator=operator,
        revision=revision,
        source=source,
        extra=extra,
    )
