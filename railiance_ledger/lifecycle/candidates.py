"""Registering candidate artifacts: an image named by immutable digest, traced to its source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.errors import InvalidDigest, InvalidInput

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore


def parse_candidate_image(image: str) -> tuple[str, str]:
    """Return ``(repository, digest)`` or raise ``InvalidDigest`` (exit 2) for tags and bad digests."""
    try:
        ref = parse_image_ref(image)
    except DigestFormatError as exc:
        raise InvalidDigest(str(exc), hint="name the candidate as REPOSITORY@sha256:<64 hex>") from exc
    return ref.repository, ref.digest


def find_registration(store: EventStore, workload: str, digest: str) -> RecordedEvent | None:
    """The ``candidate.registered`` event of ``digest`` in ``workload``'s stream, if any."""
    for ev in store.read_candidate(workload, digest):
        if ev.kind == EventKind.CANDIDATE_REGISTERED:
            return ev
    return None


def register_candidate(
    *,
    store: EventStore,
    decl: Declaration,
    image: str,
    operator: str,
    revision: str | None = None,
    source: str = "cli",
    extra: dict[str, Any] | None = None,
) -> tuple[RecordedEvent, bool]:
    """Append ``candidate.registered`` for ``image``; returns ``(event, created)``.

    Idempotent: a digest already registered for the workload returns its existing event and
    ``created=False``, so sensors and operators can call it again safely. Input is checked
    before anything is written: a tag without digest, a malformed digest, or a repository that
    differs from the declared ``image.repository`` writes nothing.
    """
    repository, digest = parse_candidate_image(image)
    declared = decl.image.repository
    if declared and repository != declared:
        raise InvalidInput(
            f"image repository {repository!r} does not match the declared image.repository {declared!r}",
            hint="register an image of the declared repository, or fix image.repository in railiance/app.toml",
        )
    workload = decl.workload.name
    existing = find_registration(store, workload, digest)
    if existing is not None:
        return existing, False
    payload: dict[str, Any] = {
        "workload": workload,
        "repo": decl.workload.repo,
        "image": f"{repository}@{digest}",
        "repository": repository,
        "digest": digest,
        "revision": revision,
        "source": source,
        "criticality": str(decl.criticality),
        "approval_required": bool(decl.production_critical),
    }
    if extra:
        payload.update(extra)
    event = NewEvent(
        stream=workload,
        kind=EventKind.CANDIDATE_REGISTERED,
        actor=operator,
        candidate=digest,
        payload=payload,
    )
    return store.append([event])[0], True


def newest_candidate(store: EventStore, workload: str) -> RecordedEvent | None:
    """The most recently registered candidate of ``workload``, or ``None``."""
    newest: RecordedEvent | None = None
    for ev in store.read_stream(workload):
        if ev.kind == EventKind.CANDIDATE_REGISTERED:
            newest = ev
    return newest


def source_revision(decl: Declaration) -> str | None:
    """The commit of the workload's work tree (``source.path``), or ``None`` when it is not a git tree.

    Stage 1's ``source_revision_identified`` check decides whether a missing revision fails; here
    we only record what can be known.
    """
    from railiance_ledger.adapters.git import GitRepo
    from railiance_ledger.errors import AdapterError

    try:
        return GitRepo(decl.resolve(decl.source.path)).head()
    except AdapterError:
        return None
