"""Patch semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a pragmatic strategic merge,
and a simplified server-side apply with field ownership.

Simplifications (documented in docs/testing.md):
- Strategic merge and apply merge lists of objects by a key guessed from the items (``name``, then
  ``containerPort``, ``port``, ``type``); other lists are atomic (replaced whole).
- Field ownership is tracked per leaf path in real ``fieldsV1`` form. Apply conflicts are reported
  against any other manager owning a leaf whose value would change; ``force`` takes ownership.
"""

from __future__ import annotations

import copy
import json
from typing import Any

Path = tuple[str, ...]


class PatchError(ValueError):
    """A patch that cannot be applied (bad document, failed test op, bad pointer)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts[:-1]:
        try:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(f"path {path!r} does not exist") from exc
    return cur


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def get(path: str) -> Any:
        parts = _pointer(path)
        if not parts:
            return doc
        parent = _parent(doc, parts, path)
        try:
            return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(f"path {path!r} does not exist") from exc

    def remove(path: str) -> Any:
        parts = _pointer(path)
        parent = _parent(doc, parts, path)
        try:
            return parent.pop(int(parts[-1]) if isinstance(parent, list) else parts[-1])
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(f"unable to remove nonexistent key {path!r}") from exc

    def add(path: str, value: Any, replace: bool = False) -> None:
        nonlocal doc
        parts = _pointer(path)
        if not parts:
            doc = value
            return
        parent = _parent(doc, parts, path)
        last = parts[-1]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if replace:
                parent[idx] = value
            else:
                parent.insert(idx, value)
        elif isinstance(parent, dict):
            if replace and last not in parent:
                raise PatchError(f"replace operation does not apply: doc is missing key {path!r}")
            parent[last] = value
        else:
            raise PatchError(f"path {path!r} does not exist")

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(path)
        elif kind == "replace":
            add(path, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "move":
            add(path, remove(op["from"]))
        elif kind == "copy":
            add(path, copy.deepcopy(get(op["from"])))
        elif kind == "test":
            if get(path) != op.get("value"):
                raise PatchError(f"testing value {path!r} failed")
        else:
            raise PatchError(f"unexpected operation {kind!r}")
    return doc


def merge_key(items: list[Any]) -> str | None:
    """The key a list of objects is merged by, or None when the list is atomic."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in ("name", "containerPort", "port", "type"):
        if all(key in i for i in items):
            return key
    return None


def strategic_merge(target: Any, patch: Any) -> Any:
    """A pragmatic strategic merge patch: maps merge, ``null`` deletes, keyed lists merge by key
    (``$patch: delete`` removes an item), other lists replace; ``$``-directives are otherwise ignored."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list) and merge_key(v + out[k]):
            out[k] = _merge_list(out[k], v, strategic_merge)
        else:
            out[k] = strategic_merge(out.get(k), v)
    return out


def _merge_list(existing: list[Any], patch: list[Any], merge: Any) -> list[Any]:
    key = merge_key(existing + patch)
    assert key is not None
    result = copy.deepcopy(existing)
    for item in patch:
        idx = next((i for i, e in enumerate(result) if e.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
        elif idx is None:
            result.append(merge({}, item))
        else:
            result[idx] = merge(result[idx], item)
    return result


# --- server-side apply ---------------------------------------------------------------------------


def _item_key(item: dict[str, Any], key: str) -> str:
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))


def leaf_paths(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Leaf path -> value, in fieldsV1 segments (``f:spec``, ``k:{"name":"web"}``)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(leaf_paths(v, prefix + (f"f:{k}",)))
    elif isinstance(obj, list) and (key := merge_key(obj)):
        for item in obj:
            sub = prefix + (_item_key(item, key),)
            out[sub + (".",)] = None
            out.update(leaf_paths(item, sub))
    else:
        out[prefix] = obj
    return out


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    """(found, value) at a fieldsV1 path."""
    cur = obj
    for seg in path:
        if seg == ".":
            return True, None
        if seg.startswith("f:") and isinstance(cur, dict) and seg[2:] in cur:
            cur = cur[seg[2:]]
        elif seg.startswith("k:") and isinstance(cur, list):
            want = json.loads(seg[2:])
            cur = next(
                (i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), None
            )
            if cur is None:
                return False, None
        else:
            return False, None
    return True, cur


def remove_at(obj: Any, path: Path) -> None:
    """Delete the field or list item at a fieldsV1 path, if present (and maps it leaves empty)."""
    path = path[:-1] if path and path[-1] == "." else path
    found, parent = value_at(obj, path[:-1])
    if not found or not path:
        return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
        if not parent and len(path) > 1 and path[-2].startswith("f:"):
            remove_at(obj, path[:-1])  # like omitempty: an emptied map disappears
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [
            i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))
        ]


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Nest a set of paths into the ``fieldsV1`` document."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        cur = root
        for seg in path:
            cur = cur.setdefault(seg, {})
    return root


def from_fields_v1(doc: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """Flatten a ``fieldsV1`` document back into leaf paths."""
    out: set[Path] = set()
    for k, v in doc.items():
        if v:
            out |= from_fields_v1(v, prefix + (k,))
        else:
            out.add(prefix + (k,))
    return out


def ownable(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object that field managers own: everything but status and server-set metadata."""
    body = {k: v for k, v in obj.items() if k not in ("status", "apiVersion", "kind")}
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k in ("labels", "annotations", "ownerReferences", "finalizers")
    }
    if meta:
        body["metadata"] = meta
    else:
        body.pop("metadata", None)
    return body
