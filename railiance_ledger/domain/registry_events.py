"""The Distribution registry's notification envelope, read: which manifests were pushed.

The registry POSTs ``{"events": [...]}`` (media type ``application/vnd.docker.distribution.events.v1+json``)
to each endpoint of its ``notifications.endpoints``; an event has ``id``, ``action`` (``push``,
``pull``, ``delete``, ``mount``), ``target`` (``mediaType``, ``digest``, ``repository``, ``tag``,
``url``) and ``request`` (``host``: the registry host the client used). Only manifest pushes name a
candidate: blob pushes, pulls and deletes are left out. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MANIFEST_TYPES", "MAX_BODY", "NotificationError", "PushedManifest", "parse_envelope"]

MAX_BODY = 1024 * 1024
"""The largest envelope accepted (bytes); the registry batches a few events per request."""

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


class NotificationError(ValueError):
    """The body is not a notification envelope."""


@dataclass(frozen=True)
class PushedManifest:
    """One manifest push from an envelope."""

    id: str
    host: str
    repository: str
    tag: str | None
    digest: str
    media_type: str


def parse_envelope(body: bytes) -> list[PushedManifest]:
    """The manifest pushes of an envelope; anything malformed raises ``NotificationError``.

    Events that are not manifest pushes, or whose fields are not well formed, are skipped.
    """
    if len(body) > MAX_BODY:
        raise NotificationError(f"envelope larger than {MAX_BODY} bytes")
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise NotificationError("envelope is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise NotificationError('envelope has no "events" list')
    out: list[PushedManifest] = []
    for event in data["events"]:
        pushed = _pushed(event)
        if pushed is not None:
            out.append(pushed)
    return out


def _pushed(event: Any) -> PushedManifest | None:
    if not isinstance(event, dict) or event.get("action") != "push":
        return None
    target, request = event.get("target"), event.get("request")
    if not isinstance(target, dict):
        return None
    media_type = str(target.get("mediaType") or "").split(";")[0].strip()
    digest, repository, tag = target.get("digest"), target.get("repository"), target.get("tag")
    event_id = event.get("id")
    if (
        media_type not in MANIFEST_TYPES
        or not isinstance(digest, str)
        or not _DIGEST_RE.match(digest)
        or not isinstance(repository, str)
        or not _PATH_RE.match(repository)
        or not isinstance(event_id, str)
        or not _ID_RE.match(event_id)
    ):
        return None
    if tag is not None and not (isinstance(tag, str) and _TAG_RE.match(tag)):
        return None
    host = request.get("host") if isinstance(request, dict) else None
    if not isinstance(host, str) or not host:
        host = urlsplit(str(target.get("url") or "")).netloc
    if not _HOST_RE.match(host or ""):
        host = ""
    return PushedManifest(
        id=event_id, host=host, repository=repository, tag=tag or None, digest=digest, media_type=media_type
    )
