"""Registering candidate artifacts: an image named by immutable digest, traced to its source."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from railiance_ledger.adapters.git import GitRepo
from railiance_ledger.domain.digests import DigestFormatError, is_digest, parse_image_ref
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.text import shown
from railiance_ledger.errors import AdapterError, InvalidDigest, InvalidInput, UnknownName

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


def candidate_digest(image: str) -> str:
    """The digest a candidate is named by: ``REPOSITORY@sha256:...`` or a bare ``sha256:...``.

    Raises ``InvalidDigest`` (exit 2) for a tag or a malformed digest.
    """
    text = image.strip()
    if is_digest(text):
        return text
    if "@" not in text and text.lower().startswith("sha256:"):
        # a bare digest, malformed: say so (the tag message would mislead)
        raise InvalidDigest(
            f"{shown(text)} is not a well-formed digest: expected sha256: followed by 64 lowercase hex "
            "characters",
            hint="copy the full digest from `railiance status WORKLOAD` (or name REPOSITORY@sha256:...)",
        )
    return parse_candidate_image(text)[1]


@dataclass(frozen=True)
class ResolvedCandidate:
    """A registered candidate: its digest, pinned image, source revision and registration event."""

    digest: str
    image: str
    """``REPOSITORY@sha256:...`` as registered (or the bare digest when neither the registration nor
    the caller named a repository)."""
    revision: str | None
    registration: RecordedEvent

    @property
    def repository(self) -> str:
        """The image repository (``""`` when only the digest is known)."""
        if "@" not in self.image:
            return ""
        return parse_image_ref(self.image).repository


def select_candidate(
    history: Iterable[RecordedEvent],
    workload: str,
    image: str | None = None,
    *,
    repository: str | None = None,
) -> ResolvedCandidate | None:
    """The registered candidate ``image`` names (a pinned ref or a bare digest), else the newest one.

    Returns ``None`` only when ``image`` is ``None`` and nothing is registered. Raises
    ``InvalidDigest`` for an ``image`` not pinned by digest and ``InvalidInput`` for a digest that is
    not registered for ``workload`` (both exit 2). ``repository`` completes the image of an old
    registration that did not record one.
    """
    registered = [ev for ev in history if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate]
    if image is None:
        if not registered:
            return None
        reg = registered[-1]
    else:
        digest = candidate_digest(image)
        reg_or_none = next((ev for ev in registered if ev.candidate == digest), None)
        if reg_or_none is None:
            known = [str(ev.candidate) for ev in registered]
            nearest = difflib.get_close_matches(digest, known, n=3, cutoff=0.0) if known else []
            hint = "register it with `railiance candidate add APP_DIR --image REF@sha256:...`"
            if nearest:
                hint = f"the nearest registered: {', '.join(nearest)}; or {hint}"
            raise UnknownName(
                f"candidate {digest} is not registered for {workload}", nearest=nearest, hint=hint
            )
        reg = reg_or_none
    digest = str(reg.candidate)
    pinned = reg.payload.get("image") or (f"{repository}@{digest}" if repository else digest)
    return ResolvedCandidate(
        digest=digest, image=str(pinned), revision=reg.payload.get("revision"), registration=reg
    )


def resolve_candidate(
    history: Iterable[RecordedEvent],
    workload: str,
    image: str | None = None,
    *,
    repository: str | None = None,
) -> ResolvedCandidate:
    """``select_candidate``, refusing (``InvalidInput``, exit 2) when no candidate is registered."""
    found = select_candidate(history, workload, image, repository=repository)
    if found is None:
        raise InvalidInput(
            f"no candidate is registered for {workload}",
            hint="register one with `railiance candidate add APP_DIR --image REF@sha256:...`",
        )
    return found


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
            f"image repository {shown(repository)} does not match the declared image.repository {declared!r}",
            hint=(
                "register an image of the declared repository, or fix image.repository in railiance/app.toml"
            ),
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
    try:
        return GitRepo(decl.resolve(decl.source.path)).head()
    except AdapterError:
        return None
