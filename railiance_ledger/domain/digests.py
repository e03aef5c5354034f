"""Immutable image references: ``registry/repo@sha256:<64 hex>``.

A tag without a digest is never a candidate; this module is the one place that decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from railiance_ledger.domain.text import shown

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_REF_RE = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._\-/:]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?@(?P<digest>[^@]+)$"
)


class DigestFormatError(ValueError):
    """The reference is not pinned by a well-formed sha256 digest."""


@dataclass(frozen=True)
class ImageRef:
    """An image pinned by digest; ``tag`` is kept for display only and never trusted."""

    repository: str
    digest: str
    tag: str | None = None

    @property
    def pinned(self) -> str:
        """The immutable reference ``repository@sha256:...``."""
        return f"{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """The first 12 hex characters of the digest."""
        return short_digest(self.digest)


def is_digest(value: str) -> bool:
    """True when ``value`` is ``sha256:`` followed by 64 lowercase hex characters."""
    return bool(DIGEST_RE.match(value))


def check_digest(value: str) -> str:
    """Return ``value`` when it is a well-formed digest, else raise ``DigestFormatError``."""
    if not is_digest(value):
        raise DigestFormatError(
            f"malformed digest {shown(value)}: expected sha256: followed by 64 lowercase hex characters"
        )
    return value


def short_digest(digest: str) -> str:
    """The first 12 hex characters of a sha256 digest (the Dagster partition suffix)."""
    return check_digest(digest).split(":", 1)[1][:12]


def parse_image_ref(ref: str) -> ImageRef:
    """Parse ``repo[:tag]@sha256:<hex>``; a tag alone or a malformed digest raises ``DigestFormatError``."""
    text = ref.strip()
    if "@" not in text:
        raise DigestFormatError(
            f"image {shown(ref)} is not pinned by digest: a tag is mutable and never a candidate; "
            "use REPOSITORY@sha256:<64 hex>"
        )
    m = _REF_RE.match(text)
    if not m:
        raise DigestFormatError(
            f"image reference {shown(ref)} is not of the form REPOSITORY[:TAG]@sha256:<64 hex>"
        )
    digest = check_digest(m.group("digest"))
    return ImageRef(repository=m.group("repo"), digest=digest, tag=m.group("tag"))


def partition_key(workload: str, digest: str) -> str:
    """The candidate partition key ``<workload>@<first 12 hex of digest>``."""
    return f"{workload}@{short_digest(digest)}"
