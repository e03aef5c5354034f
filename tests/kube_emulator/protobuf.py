"""Decoding of the Kubernetes protobuf request bodies that client-go sends for a few core types.

helm's release storage uses the typed clientset, which writes Secrets (or ConfigMaps), Namespaces and
DeleteOptions as ``application/vnd.kubernetes.protobuf``. Answers are always JSON; client-go decodes by
the response Content-Type. Only the fields those clients send are decoded.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"
Obj = dict[str, Any]


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf envelope of a supported kind."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message; length-delimited values stay bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield num, value
        elif wire == 2:
            size, i = _varint(buf, i)
            yield num, buf[i : i + size]
            i += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield num, int.from_bytes(buf[i : i + width], "little")
            i += width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _s(v: int | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _b(v: int | bytes) -> bytes:
    return v if isinstance(v, bytes) else b""


def _map_entry(v: int | bytes) -> tuple[str, bytes]:
    entry = dict(fields(_b(v)))
    return _s(entry.get(1, b"")), _b(entry.get(2, b""))


def _object_meta(buf: bytes) -> Obj:
    meta: Obj = {}
    names = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for num, v in fields(buf):
        if num in names and _s(v):
            meta[names[num]] = _s(v)
        elif num == 7:
            meta["generation"] = v
        elif num in (11, 12):
            k, val = _map_entry(v)
            meta.setdefault("labels" if num == 11 else "annotations", {})[k] = val.decode()
        elif num == 14:
            meta.setdefault("finalizers", []).append(_s(v))
        elif num == 13:
            ref = dict(fields(_b(v)))
            meta.setdefault("ownerReferences", []).append(
                {
                    "apiVersion": _s(ref.get(5, b"")),
                    "kind": _s(ref.get(1, b"")),
                    "name": _s(ref.get(3, b"")),
                    "uid": _s(ref.get(4, b"")),
                    **({"controller": bool(ref[6])} if 6 in ref else {}),
                }
            )
    return meta


def _secret_or_configmap(kind: str, buf: bytes) -> Obj:
    obj: Obj = {}
    for num, v in fields(buf):
        if num == 1:
            obj["metadata"] = _object_meta(_b(v))
        elif num == 2:
            k, val = _map_entry(v)
            if kind == "Secret":
                obj.setdefault("data", {})[k] = base64.b64encode(val).decode()
            else:
                obj.setdefault("data", {})[k] = val.decode()
        elif num == 3 and kind == "Secret":
            obj["type"] = _s(v)
        elif num == 3:
            k, val = _map_entry(v)
            obj.setdefault("binaryData", {})[k] = base64.b64encode(val).decode()
        elif num == 4 and kind == "Secret":
            k, val = _map_entry(v)
            obj.setdefault("stringData", {})[k] = val.decode()
        elif num == 5 and kind == "Secret" or num == 4:
            obj["immutable"] = bool(v)
    return obj


def _namespace(buf: bytes) -> Obj:
    obj: Obj = {}
    for num, v in fields(buf):
        if num == 1:
            obj["metadata"] = _object_meta(_b(v))
    return obj


def _delete_options(buf: bytes) -> Obj:
    opts: Obj = {}
    for num, v in fields(buf):
        if num == 1:
            opts["gracePeriodSeconds"] = v
        elif num == 2:
            pre = dict(fields(_b(v)))
            opts["preconditions"] = {
                k: _s(pre[n]) for n, k in ((1, "uid"), (2, "resourceVersion")) if n in pre
            }
        elif num == 3:
            opts["orphanDependents"] = bool(v)
        elif num == 4:
            opts["propagationPolicy"] = _s(v)
        elif num == 5:
            opts.setdefault("dryRun", []).append(_s(v))
    return opts


DECODERS = {
    "Secret": lambda b: _secret_or_configmap("Secret", b),
    "ConfigMap": lambda b: _secret_or_configmap("ConfigMap", b),
    "Namespace": _namespace,
    "DeleteOptions": _delete_options,
}


def decode(body: bytes) -> Obj:
    """Decode a protobuf envelope into the JSON-shaped object (with apiVersion and kind)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = dict(fields(body[len(MAGIC) :]))
    type_meta = dict(fields(_b(unknown.get(1, b""))))
    api_version, kind = _s(type_meta.get(1, b"")), _s(type_meta.get(2, b""))
    if kind not in DECODERS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported by the emulator")
    return {"apiVersion": api_version, "kind": kind, **DECODERS[kind](_b(unknown.get(2, b"")))}
