"""The emulator's state: objects by (group, plural, namespace, name), a global resourceVersion counter,
an event history for watches, and label/field selector matching."""

from __future__ import annotations

import copy
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.kube_emulator.discovery import ResourceType

Obj = dict[str, Any]
Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class WatchEvent:
    """One change, as a watch stream reports it."""

    rv: int
    group: str
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj


class SelectorError(ValueError):
    """A label or field selector that does not parse."""


_REQ = re.compile(
    r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$"
)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[tuple[str, str, set[str]]]:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k`` into (key, operator, values) requirements."""
    reqs: list[tuple[str, str, set[str]]] = []
    for part in _split_top(text or ""):
        m = _REQ.match(part)
        if not m:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        neg, key, op, val, setop, vals = m.groups()
        if neg and (op or setop):
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        if setop:
            reqs.append((key, setop, {v.strip() for v in vals.split(",") if v.strip()}))
        elif op:
            reqs.append((key, "!=" if op == "!=" else "=", {val}))
        else:
            reqs.append((key, "!exists" if neg else "exists", set()))
    return reqs


def labels_match(labels: dict[str, str], reqs: list[tuple[str, str, set[str]]]) -> bool:
    """True when every requirement holds for ``labels``."""
    for key, op, values in reqs:
        present = key in labels
        ok = {
            "=": present and labels.get(key) in values,
            "in": present and labels.get(key) in values,
            "!=": not present or labels.get(key) not in values,
            "notin": not present or labels.get(key) not in values,
            "exists": present,
            "!exists": not present,
        }[op]
        if not ok:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """Parse ``metadata.name=x,status.phase!=Running`` into (dotted path, equal?, value)."""
    out: list[tuple[str, bool, str]] = []
    for part in _split_top(text or ""):
        m = re.match(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        out.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return out


def field_value(obj: Obj, path: str) -> str:
    """The string value at a dotted path (``""`` when absent), as field selectors compare it."""
    cur: Any = obj
    for seg in path.split("."):
        cur = cur.get(seg) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def fields_match(obj: Obj, reqs: list[tuple[str, bool, str]]) -> bool:
    """True when every field requirement holds for ``obj``."""
    return all((field_value(obj, path) == value) == eq for path, eq, value in reqs)


class Store:
    """Thread-safe object store; every write bumps the global resourceVersion and records a watch event."""

    def __init__(self, history: int = 20000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[Key, Obj] = {}
        self.rv = 1000
        self.history: deque[WatchEvent] = deque(maxlen=history)

    @staticmethod
    def key(rt: ResourceType, namespace: str, name: str) -> Key:
        """The storage key of an object (namespace is ``""`` for cluster-scoped kinds)."""
        return (rt.group, rt.plural, namespace if rt.namespaced else "", name)

    def clear(self) -> None:
        """Forget every object (the resourceVersion counter keeps counting)."""
        with self.lock:
            self.objects.clear()
            self.history.clear()
            self.changed.notify_all()

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        """A copy of the stored object, or None."""
        with self.lock:
            obj = self.objects.get(self.key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> tuple[list[Obj], int]:
        """Copies of matching objects sorted by namespace and name, and the current resourceVersion."""
        lreqs, freqs = parse_label_selector(labels), parse_field_selector(fields)
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (g, p, ns, _), o in sorted(self.objects.items())
                if (g, p) == rt.key
                and (namespace is None or ns == namespace)
                and labels_match(o["metadata"].get("labels") or {}, lreqs)
                and fields_match(o, freqs)
            ]
            return items, self.rv

    def put(self, rt: ResourceType, obj: Obj) -> Obj:
        """Store ``obj`` with a fresh resourceVersion; records ADDED or MODIFIED. Returns a copy."""
        with self.lock:
            key = self.key(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            kind = "MODIFIED" if key in self.objects else "ADDED"
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = obj
            self._record(rt, kind, obj)
            return copy.deepcopy(obj)

    def remove(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        """Delete and return the object (None if absent); records DELETED."""
        with self.lock:
            obj = self.objects.pop(self.key(rt, namespace, name), None)
            if obj is None:
                return None
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record(rt, "DELETED", obj)
            return copy.deepcopy(obj)

    def _record(self, rt: ResourceType, kind: str, obj: Obj) -> None:
        self.history.append(WatchEvent(self.rv, rt.group, rt.plural, kind, copy.deepcopy(obj)))
        self.changed.notify_all()

    def events_after(self, rt: ResourceType, rv: int) -> list[WatchEvent]:
        """Recorded events for ``rt`` newer than ``rv``, oldest first."""
        with self.lock:
            return [e for e in self.history if e.rv > rv and (e.group, e.plural) == rt.key]

    def oldest_rv(self) -> int:
        """The resourceVersion before the oldest remembered event (older watches get 410 Gone)."""
        with self.lock:
            return self.history[0].rv - 1 if len(self.history) == self.history.maxlen else 0

    def owned_by(self, uid: str) -> list[tuple[str, str, str, str]]:
        """Keys of objects with an ownerReference to ``uid`` (for cascading deletion)."""
        with self.lock:
            return [
                k
                for k, o in self.objects.items()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
            ]
