"""The rollback target an approval names: given by the operator, else the ledger's, else declared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import InvalidInput
from railiance_ledger.ledger.projections import lineage

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = ["current_stable_target", "default_rollback_target", "explicit_rollback_target"]


def _mapping(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "as_dict"):
        return dict(obj.as_dict())
    if hasattr(obj, "model_dump"):
        return dict(obj.model_dump(mode="json"))
    return {"ref": str(obj)}


def current_stable_target(store: EventStore, workload: str) -> dict[str, Any] | None:
    """What we would roll back to right now: the ledger lineage's current stable, as a target.

    Returns ``{"kind": "ledger-stable", "image", "digest", ...}`` or ``None`` when the ledger has no
    stable version for the workload yet.
    """
    lin = lineage(store, workload)
    data = _mapping(lin) or {}
    stable = data.get("current_stable")
    if stable is None and not isinstance(lin, Mapping):
        stable = getattr(lin, "current_stable", None)
    stable_map = _mapping(stable)
    if not stable_map:
        return None
    target: dict[str, Any] = {"kind": "ledger-stable"}
    for key in ("image", "digest", "revision", "promoted_at", "event_id", "seq", "restore"):
        if stable_map.get(key) is not None:
            target[key] = stable_map[key]
    if "image" not in target and "digest" not in target:
        target["ref"] = stable_map.get("ref")
    return target


def explicit_rollback_target(value: str | Mapping[str, Any]) -> dict[str, Any]:
    """The target the operator named: a pinned image (``digest-and-values``) or a manual recovery path."""
    if isinstance(value, Mapping):
        target = dict(value)
        target.setdefault("kind", "manual")
        return target
    text = value.strip()
    if not text:
        raise InvalidInput(
            "an empty rollback target names nothing", hint="pass REPOSITORY@sha256:... or a recovery path"
        )
    try:
        ref = parse_image_ref(text)
        return {"kind": "digest-and-values", "image": ref.pinned, "digest": ref.digest, "source": "operator"}
    except DigestFormatError:
        return {"kind": "manual", "detail": redact(text), "source": "operator"}


def default_rollback_target(store: EventStore, decl: Declaration) -> dict[str, Any] | None:
    """The ledger lineage's current stable, else the declared ``rollback.previous_stable``, else ``None``."""
    target = current_stable_target(store, decl.workload.name)
    if target is not None:
        target["source"] = "ledger lineage (current stable)"
        return target
    previous = decl.rollback.previous_stable
    if previous:
        out = explicit_rollback_target(previous)
        out["source"] = "declaration rollback.previous_stable"
        return out
    return None
