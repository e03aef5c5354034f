"""Rollback vocabulary: candidate fates, restore targets, the plan and the outcome."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.digests import parse_image_ref
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.errors import RailianceError

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration


CANDIDATE_FATES: tuple[str, ...] = ("returned-to-stage1", "blocked", "abandoned")
"""What becomes of the candidate that was rolled back (the spec's blocked / abandoned /
returned to Stage 1)."""


FATE_TEXT = {"returned-to-stage1": "returned to Stage 1", "blocked": "blocked", "abandoned": "abandoned"}


RESTORE_KEYS = (
    "digest",
    "image",
    "release",
    "namespace",
    "helm_revision",
    "manifests_sha256",
    "values",
    "routing_snapshot",
    "serving_release",
    "source",
)
"""The keys of a restore record kept for a stable (never nested further: payloads stay bounded)."""


@dataclass(frozen=True)
class RestoreTarget:
    """Everything needed to put one stable back: what it was and how it was deployed.

    ``routing_snapshot`` holds the production routing objects (cleaned Ingress/HTTPRoute dicts) as
    they were while this stable served; ``manifests_sha256`` names its rendered manifests in the
    content store (``$RAILIANCE_HOME/manifests``).
    """

    digest: str | None
    image: str | None
    release: str
    namespace: str
    helm_revision: int | None = None
    manifests_sha256: str | None = None
    values: tuple[dict[str, Any], ...] = ()
    routing_snapshot: tuple[dict[str, Any], ...] = ()
    serving_release: str | None = None
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready restore record (the keys of ``RESTORE_KEYS``)."""
        data = asdict(self)
        data["values"] = list(self.values)
        data["routing_snapshot"] = list(self.routing_snapshot)
        return data

    @property
    def text(self) -> str:
        """How an operator would name it: the image, else the digest, else the Helm revision."""
        if self.image or self.digest:
            return str(self.image or self.digest)
        return f"{self.namespace}/{self.release} revision {self.helm_revision}"

    @classmethod
    def from_restore(
        cls,
        restore: Mapping[str, Any],
        decl: Declaration,
        *,
        source: str,
        digest: str | None = None,
        image: str | None = None,
    ) -> RestoreTarget:
        """Build one from a promotion payload or a ``previous_restore`` record."""
        prod = decl.stages.production
        rev = restore.get("helm_revision")
        return cls(
            digest=digest or restore.get("digest"),
            image=image or restore.get("image"),
            release=str(restore.get("release") or prod.release),
            namespace=str(restore.get("namespace") or prod.namespace),
            helm_revision=int(rev) if isinstance(rev, (int, str)) and str(rev).isdigit() else None,
            manifests_sha256=restore.get("manifests_sha256"),
            values=tuple(restore.get("values") or ()),
            routing_snapshot=tuple(restore.get("routing_snapshot") or ()),
            serving_release=restore.get("serving_release"),
            source=source or str(restore.get("source") or ""),
        )


@dataclass
class RollbackOutcome:
    """What a rollback call did: the document to render, the exit code and the events appended.

    ``phase`` is one of ``rolled-back`` (verified), ``verification-failed`` (restored, the check
    failed: exit 1), ``deferred``, ``manual-action-required`` (the runbook was recorded; nothing was
    done by us: exit 1), ``canary-removed`` (a Stage 2 canary was rolled back) or ``failed``.
    """

    document: dict[str, Any]
    exit_code: int
    phase: str
    events: list[RecordedEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the call succeeded (exit 0)."""
        return self.exit_code == 0


@dataclass(frozen=True)
class RollbackPlan:
    """Where we are and where we go back to."""

    leaving_digest: str | None
    leaving_image: str | None
    leaving_restore: dict[str, Any]
    leaving_seq: int
    target: RestoreTarget
    open_stage3: RecordedEvent | None


def new_workflow_id(prefix: str, workload: str, digest: str | None) -> str:
    """A workflow id for a promotion or rollback: ``<prefix>-<workload>-<12 hex>-<8 hex>``."""
    short = (digest or "sha256:unknown").split(":", 1)[-1][:12]
    return f"{prefix}-{workload}-{short}-{uuid.uuid4().hex[:8]}"


def image_digest(image: str | None) -> str | None:
    """The digest of a pinned image reference, or None."""
    if not image:
        return None
    try:
        return parse_image_ref(image).digest
    except (ValueError, RailianceError):
        return None
