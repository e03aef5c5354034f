"""Kubernetes objects as the lifecycle handles them: API group names, the field manager, cleaning a live
object for re-apply, splitting rendered YAML, comparing rendered with live, finding the Deployment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml  # type: ignore[import-untyped]

GATEWAY_GV = "gateway.networking.k8s.io/v1"


GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"


INGRESS_GV = "networking.k8s.io/v1"


def first_of_kind(docs: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    """The first document of ``kind`` in ``docs``, else ``None``."""
    return next((d for d in docs if d.get("kind") == kind), None)


FIELD_MANAGER = "railiance-ledger"


_SERVER_ASSIGNED = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")
_OWNERSHIP = ("deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def clean_object(obj: Mapping[str, Any], *, keep_ownership: bool = False) -> dict[str, Any]:
    """A Kubernetes object without status and server-assigned metadata (what can be re-applied).

    By default ownership and deletion metadata and kubectl's last-applied annotation go too (a
    snapshot to compare or restore later). ``keep_ownership`` keeps them: what Stage 2 records of the
    routing objects it patches or creates, re-applied as they were when the canary is removed.
    """
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_ASSIGNED if keep_ownership else (*_SERVER_ASSIGNED, *_OWNERSHIP):
        meta.pop(key, None)
    if not keep_ownership:
        ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k != _LAST_APPLIED}
        if ann:
            meta["annotations"] = ann
        else:
            meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def split_docs(text: str) -> list[dict[str, Any]]:
    """The mappings of a multi-document YAML text."""

    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def api_version_of(doc: Mapping[str, Any]) -> str:
    return str(doc.get("apiVersion") or "v1")


def subset_mismatches(want: Any, have: Any, path: str = "") -> list[str]:
    """Where ``have`` (a live object) differs from ``want`` (a rendered one); fields the server added are
    fine."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [f"{path or '.'}: expected a mapping"]
        out: list[str] = []
        for k, v in want.items():
            out += subset_mismatches(v, have.get(k), f"{path}.{k}")
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [f"{path}: expected {len(want)} items"]
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += subset_mismatches(w, h, f"{path}[{i}]")
        return out
    if want is None:
        return []
    if want != have and str(want) != str(have):
        return [f"{path}: expected {want!r}, found {have!r}"]
    return []


def deployment_of(docs: Sequence[Mapping[str, Any]], release: str) -> tuple[str, dict[str, str]]:
    """``(name, matchLabels)`` of the first Deployment in ``docs`` (else the release name and instance
    label)."""
    dep = next((d for d in docs if d.get("kind") == "Deployment"), None)
    if dep is None:
        return release, {"app.kubernetes.io/instance": release}
    labels = (((dep.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return str(dep["metadata"]["name"]), {str(k): str(v) for k, v in labels.items()}
