"""The REST semantics of the emulated API server: routing, CRUD, patch, apply, dry-run, watch, logs,
scale and Status errors shaped as the real server shapes them."""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import yaml

from tests.kube_emulator import patch as patches
from tests.kube_emulator import protobuf
from tests.kube_emulator.behaviour import BehaviourRegistry
from tests.kube_emulator.discovery import SERVER_VERSION, Discovery, ResourceType
from tests.kube_emulator.store import (
    SelectorError,
    Store,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from tests.kube_emulator.validation import apply_defaults, validate

Obj = dict[str, Any]
log = logging.getLogger(__name__)
ProxyFn = Callable[["Request", str, str, str, str], "Response"]


def now() -> str:
    """The current time as the API server writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` document exactly as the API server returns it for a failure."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """A failure answered with a Status body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 for a named object, e.g. ``deployments.apps "web" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{rt.qualified} "{name}" not found',
        {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural},
    )


def conflict(
    rt: ResourceType, name: str, reason: str, message: str, causes: list[Obj] | None = None
) -> ApiError:
    """409 AlreadyExists or Conflict for a named object."""
    details: Obj = {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural}
    if causes:
        details["causes"] = causes
    return ApiError(409, reason, message, details)


NO_RESOURCE = ApiError(404, "NotFound", "the server could not find the requested resource", {})


@dataclass
class Request:
    """One HTTP request as the handlers see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    raw_query: str = ""

    def json(self) -> Any:
        """The body decoded as JSON (or YAML for apply), 400 when it does not parse."""
        try:
            if self.headers.get("content-type", "").startswith("application/vnd.kubernetes.protobuf"):
                return protobuf.decode(self.body)
            if "yaml" in self.headers.get("content-type", ""):
                return yaml.safe_load(self.body.decode() or "{}")
            return json.loads(self.body or b"{}")
        except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ApiError(
                400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
            ) from exc


@dataclass
class Response:
    """One HTTP answer: a complete body, or a stream of chunks (watch)."""

    code: int
    body: bytes = b""
    content_type: str = "application/json"
    stream: Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, code: int, doc: Any) -> Response:
        """A JSON answer."""
        return cls(code, json.dumps(doc).encode())


@dataclass
class Target:
    """What a resource path names."""

    rt: ResourceType
    namespace: str | None
    name: str | None = None
    sub: str | None = None
    rest: str = ""


class Api:
    """The emulated API server's REST layer over a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        discovery: Discovery,
        behaviours: BehaviourRegistry,
        address: str,
        proxy: ProxyFn,
        stopping: threading.Event,
    ) -> None:
        self.store, self.discovery, self.behaviours = store, discovery, behaviours
        self.address, self.proxy, self.stopping = address, proxy, stopping
        self._ips = 0

    # --- routing ---------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Answer one request; API errors become Status bodies."""
        try:
            return self._route(req)
        except ApiError as err:
            return Response.of(err.code, err.body)
        except SelectorError as err:
            return Response.of(400, status_body(400, "BadRequest", str(err)))
        except Exception as err:  # an emulator bug: answer like the API server would, and say what broke
            log.exception("kube emulator failed on %s %s", req.method, req.path)
            return Response.of(500, status_body(500, "InternalError", f"Internal error occurred: {err!r}"))

    def _route(self, req: Request) -> Response:
        parts = [unquote(p) for p in req.path.split("/") if p]
        if req.path == "/version":
            return Response.of(200, SERVER_VERSION)
        if req.path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain")
        if parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                return Response.of(200, self.discovery.openapi_v3_root())
            group, version = (
                ("", "v1")
                if parts[2:] == ["api", "v1"]
                else (parts[3], parts[4])
                if len(parts) == 5
                else ("", "")
            )
            doc = self.discovery.openapi_v3(group, version) if version else None
            return Response.of(200, doc) if doc else Response.of(404, NO_RESOURCE.body)
        if parts == ["api"]:
            return Response.of(200, self.discovery.api_versions(self.address))
        if parts == ["apis"]:
            return Response.of(200, self.discovery.api_group_list())
        if len(parts) == 2 and parts[0] == "apis":
            doc = self.discovery.api_group(parts[1])
            return Response.of(200, doc) if doc else Response.of(404, NO_RESOURCE.body)
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise NO_RESOURCE
        if not rest:
            doc = self.discovery.resource_list(group, version)
            if doc is None:
                raise NO_RESOURCE
            return Response.of(200, doc)
        return self._resource(req, self._target(group, version, rest))

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and self.discovery.find(group, version, rest[2]):
            ns, rest = rest[1], rest[2:]
        rt = self.discovery.find(group, version, rest[0])
        if rt is None or (ns is not None and not rt.namespaced):
            raise NO_RESOURCE
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise NO_RESOURCE
        return Target(rt, ns, name, sub, "/".join(rest[3:]))

    def _resource(self, req: Request, t: Target) -> Response:
        if t.rt.namespaced and t.name is not None and t.namespace is None:
            raise NO_RESOURCE
        if t.sub == "proxy" and t.name is not None and t.namespace is not None:
            name, _, port = t.name.rpartition(":") if ":" in t.name else (t.name, "", "")
            if self.store.get(t.rt, t.namespace, name.split(":")[-1]) is None:
                raise not_found(t.rt, name.split(":")[-1])
            return self.proxy(req, t.namespace, name.split(":")[-1], port, t.rest)
        if t.sub == "log":
            return self._log(req, t)
        if t.sub == "scale":
            return self._scale(req, t)
        m = req.method
        if t.name is None:
            if m == "GET":
                return self._watch(req, t) if req.query.get("watch") in ("1", "true") else self._list(req, t)
            if m == "POST":
                return self._create(req, t)
            if m == "DELETE":
                return self._delete_collection(req, t)
        else:
            if m == "GET":
                obj = self.store.get(t.rt, t.namespace or "", t.name)
                if obj is None:
                    raise not_found(t.rt, t.name)
                return Response.of(200, obj)
            if m == "PUT":
                return self._replace(req, t)
            if m == "PATCH":
                return self._patch(req, t)
            if m == "DELETE":
                return self._delete(req, t)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    # --- reads -----------------------------------------------------------------------------------

    def _list(self, req: Request, t: Target) -> Response:
        items, rv = self.store.list(
            t.rt, t.namespace, req.query.get("labelSelector"), req.query.get("fieldSelector")
        )
        meta: Obj = {"resourceVersion": str(rv)}
        limit = int(req.query.get("limit") or 0)
        offset = int(base64.b64decode(req.query["continue"]).decode()) if req.query.get("continue") else 0
        if limit and len(items) > offset + limit:
            meta["continue"] = base64.b64encode(str(offset + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - offset - limit
            items = items[offset : offset + limit]
        else:
            items = items[offset:]
        return Response.of(
            200,
            {"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version, "metadata": meta, "items": items},
        )

    def _watch(self, req: Request, t: Target) -> Response:
        labels = parse_label_selector(req.query.get("labelSelector"))
        fields = parse_field_selector(req.query.get("fieldSelector"))
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        rv_param = req.query.get("resourceVersion", "")
        initial_events = req.query.get("sendInitialEvents") == "true"
        with self.store.lock:
            if rv_param in ("", "0") or initial_events:
                initial, start = self.store.list(t.rt, t.namespace)
            else:
                initial, start = [], int(rv_param)
                if start < self.store.oldest_rv():
                    err = status_body(410, "Expired", f"too old resource version: {start}")
                    return Response(
                        200, stream=iter([json.dumps({"type": "ERROR", "object": err}).encode() + b"\n"])
                    )

        def matches(obj: Obj) -> bool:
            meta = obj.get("metadata") or {}
            return (
                (t.namespace is None or meta.get("namespace") == t.namespace)
                and labels_match(meta.get("labels") or {}, labels)
                and fields_match(obj, fields)
            )

        def line(kind: str, obj: Obj) -> bytes:
            return json.dumps({"type": kind, "object": obj}).encode() + b"\n"

        def stream() -> Iterator[bytes]:
            for obj in initial:
                if matches(obj):
                    yield line("ADDED", obj)
            if initial_events:
                yield line(
                    "BOOKMARK",
                    {
                        "kind": t.rt.kind,
                        "apiVersion": t.rt.api_version,
                        "metadata": {
                            "resourceVersion": str(start),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            last, deadline = start, time.monotonic() + timeout
            while not self.stopping.is_set() and time.monotonic() < deadline:
                events = self.store.events_after(t.rt, last)
                if not events:
                    with self.store.changed:
                        self.store.changed.wait(0.25)
                    continue
                for e in events:
                    last = e.rv
                    if matches(e.object):
                        yield line(e.type, e.object)

        return Response(200, stream=stream())

    def _log(self, req: Request, t: Target) -> Response:
        pod = self.store.get(t.rt, t.namespace or "", t.name or "")
        if pod is None:
            raise not_found(t.rt, t.name or "")
        containers = [c.get("name") for c in pod["spec"].get("containers", [])]
        wanted = req.query.get("container")
        if wanted is None and len(containers) > 1:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {t.name}, choose one "
                f"of: [{' '.join(map(str, containers))}]",
            )
        if wanted is not None and wanted not in containers:
            raise ApiError(400, "BadRequest", f"container {wanted} is not valid for pod {t.name}")
        lines = self.behaviours.logs_for(pod)
        if req.query.get("tailLines"):
            lines = lines[-int(req.query["tailLines"]) :] if int(req.query["tailLines"]) > 0 else []
        text = "".join(f"{line}\n" for line in lines).encode()
        if req.query.get("limitBytes"):
            text = text[: int(req.query["limitBytes"])]
        return Response(200, text, "text/plain")

    def _scale(self, req: Request, t: Target) -> Response:
        obj = self.store.get(t.rt, t.namespace or "", t.name or "")
        if obj is None:
            raise not_found(t.rt, t.name or "")
        meta = {
            k: obj["metadata"][k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        }
        selector = ",".join(
            f"{k}={v}" for k, v in (obj["spec"].get("selector", {}).get("matchLabels") or {}).items()
        )
        scale = {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": meta,
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector},
        }
        if req.method == "GET":
            return Response.of(200, scale)
        body = req.json()
        new = body if req.method == "PUT" else self._apply_patch(req, scale, body)
        obj["spec"]["replicas"] = new.get("spec", {}).get("replicas", scale["spec"]["replicas"])
        stored = self.write(t.rt, obj, self.store.get(t.rt, t.namespace or "", t.name or ""), req=req)
        scale["spec"]["replicas"] = stored["spec"]["replicas"]
        scale["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        return Response.of(200, scale)

    # --- writes ----------------------------------------------------------------------------------

    def _check_body(self, t: Target, body: Any, name: str | None) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        if (
            body.get("apiVersion", t.rt.api_version) != t.rt.api_version
            or body.get("kind", t.rt.kind) != t.rt.kind
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not "
                f"match the expected API version ({t.rt.api_version})",
            )
        body = copy.deepcopy(body)
        body["apiVersion"], body["kind"] = t.rt.api_version, t.rt.kind
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if t.rt.namespaced:
            if meta.get("namespace") not in (None, "", t.namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") not in (None, "", name):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the name of the object "
                    f"({meta.get('name')}) does not match the name on the URL ({name})",
                )
            meta["name"] = name
        return body

    def _manager(self, req: Request | None, default: str = "") -> str:
        if req is None:
            return default or "emulator-controller"
        return (
            req.query.get("fieldManager") or default or req.headers.get("user-agent", "unknown").split("/")[0]
        )

    def _require_namespace(self, rt: ResourceType, ns: str | None) -> None:
        if rt.namespaced and ns is not None:
            ns_type = self.discovery.find("", "v1", "namespaces")
            assert ns_type is not None
            if self.store.get(ns_type, "", ns) is None:
                raise not_found(ns_type, ns)

    def _create(self, req: Request, t: Target) -> Response:
        body = self._check_body(t, req.json(), None)
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        self._require_namespace(t.rt, t.namespace)
        return Response.of(201, self.write(t.rt, body, None, req=req))

    def _replace(self, req: Request, t: Target) -> Response:
        body = self._check_body(t, req.json(), t.name)
        old = self.store.get(t.rt, t.namespace or "", t.name or "")
        if old is None:
            raise not_found(t.rt, t.name or "")
        rv = body["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(
                t.rt,
                t.name or "",
                "Conflict",
                f"Operation cannot be fulfilled on {t.rt.qualified} "
                f'"{t.name}": the object has been modified; please apply your changes to the latest '
                "version and try again",
            )
        return Response.of(200, self.write(t.rt, body, old, req=req, sub=t.sub))

    def _apply_patch(self, req: Request, old: Obj, body: Any) -> Obj:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        try:
            if ctype == "application/merge-patch+json":
                return patches.merge_patch(old, body)  # type: ignore[no-any-return]
            if ctype == "application/json-patch+json":
                return patches.json_patch(old, body)  # type: ignore[no-any-return]
            if ctype == "application/strategic-merge-patch+json":
                return patches.strategic_merge(old, body)  # type: ignore[no-any-return]
        except patches.PatchError as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            )
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted "
            "media types include: application/json-patch+json, "
            "application/merge-patch+json, application/apply-patch+yaml",
        )

    def _patch(self, req: Request, t: Target) -> Response:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        old = self.store.get(t.rt, t.namespace or "", t.name or "")
        if ctype == "application/apply-patch+yaml":
            return self._server_side_apply(req, t, old)
        if old is None:
            raise not_found(t.rt, t.name or "")
        new = self._apply_patch(req, old, req.json())
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patch produced something that is not an object")
        new = self._check_body(t, new, t.name)
        if new["metadata"].get("resourceVersion") not in (None, old["metadata"]["resourceVersion"]):
            raise conflict(
                t.rt,
                t.name or "",
                "Conflict",
                f"Operation cannot be fulfilled on {t.rt.qualified} "
                f'"{t.name}": the object has been modified; please apply your changes to the latest '
                "version and try again",
            )
        return Response.of(200, self.write(t.rt, new, old, req=req, sub=t.sub))

    def _server_side_apply(self, req: Request, t: Target, old: Obj | None) -> Response:
        manager = req.query.get("fieldManager")
        if not manager:
            raise ApiError(
                400, "BadRequest", "PATCH " + req.path + ": fieldManager is required for apply requests"
            )
        applied = self._check_body(t, req.json(), t.name)
        force = req.query.get("force") == "true"
        if old is None:
            self._require_namespace(t.rt, t.namespace)
        base = old or {"apiVersion": t.rt.api_version, "kind": t.rt.kind, "metadata": {}}
        mine = patches.leaf_paths(patches.ownable(applied))
        entries = [e for e in base["metadata"].get("managedFields") or [] if e.get("subresource") != "status"]
        owned = {
            (e["manager"], e["operation"]): patches.from_fields_v1(e.get("fieldsV1") or {}) for e in entries
        }
        me = (manager, "Apply")
        conflicts: list[Obj] = []
        for who, paths in owned.items():
            if who == me:
                continue
            for path in sorted(paths & set(mine)):
                if path[-1] != "." and patches.value_at(base, path) != (True, mine[path]):
                    if force:
                        paths.discard(path)
                    else:
                        field = "." + ".".join(s[2:] if s.startswith("f:") else f"[{s[2:]}]" for s in path)
                        conflicts.append(
                            {
                                "reason": "FieldManagerConflict",
                                "field": field,
                                "message": f'conflict with "{who[0]}" using {t.rt.api_version}',
                            }
                        )
        if conflicts:
            if len(conflicts) == 1:
                detail = f"1 conflict: {conflicts[0]['message']}: {conflicts[0]['field']}"
            else:
                by: dict[str, list[str]] = {}
                for c in conflicts:
                    by.setdefault(c["message"].replace("conflict with", "conflicts with", 1), []).append(
                        c["field"]
                    )
                detail = f"{len(conflicts)} conflicts: " + "\n".join(
                    f"{who}:" + "".join(f"\n- {f}" for f in fields) for who, fields in by.items()
                )
            raise conflict(t.rt, t.name or "", "Conflict", f"Apply failed with {detail}", conflicts)
        merged = patches.strategic_merge(base, {k: v for k, v in applied.items() if k != "status"})
        others = set().union(*[p for who, p in owned.items() if who != me]) if owned else set()
        for path in sorted(owned.get(me, set()) - set(mine) - others, key=lambda p: (len(p), p[-1] != ".")):
            patches.remove_at(merged, path)
        owned[me] = set(mine)
        merged["metadata"]["managedFields"] = self._entries(t.rt, owned)
        stored = self.write(t.rt, merged, old, req=req, managed=True)
        return Response.of(200 if old else 201, stored)

    def _entries(self, rt: ResourceType, owned: dict[tuple[str, str], set[patches.Path]]) -> list[Obj]:
        return [
            {
                "manager": m,
                "operation": op,
                "apiVersion": rt.api_version,
                "time": now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": patches.to_fields_v1(paths),
            }
            for (m, op), paths in owned.items()
            if paths
        ]

    def write(
        self,
        rt: ResourceType,
        new: Obj,
        old: Obj | None,
        *,
        req: Request | None = None,
        sub: str | None = None,
        managed: bool = False,
    ) -> Obj:
        """Persist a create or update (unless ``dryRun=All``): server fields, defaults, validation,
        generation and managedFields; returns what the server answers."""
        new = copy.deepcopy(new)
        meta = new["metadata"]
        for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            meta.pop(k, None)
        if old is not None:
            for k in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
            if sub == "status":
                new = {**old, "status": new.get("status", {})}
                meta = new["metadata"]
            elif "status" in old and req is not None:
                new["status"] = old["status"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if req is not None:
                new.pop("status", None)
        self._ips += 1 if rt.kind == "Service" and old is None else 0
        apply_defaults(rt, new, f"10.96.{self._ips // 250}.{self._ips % 250 + 1}")
        causes = validate(rt, new)
        if causes:
            fields = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind}{"." + rt.group if rt.group else ""} "{meta.get("name", "")}" '
                f"is invalid: {fields if len(causes) == 1 else '[' + fields + ']'}",
                {
                    "name": meta.get("name", ""),
                    **({"group": rt.group} if rt.group else {}),
                    "kind": rt.kind,
                    "causes": causes,
                },
            )
        if "spec" in new:
            spec_changed = old is not None and old.get("spec") != new.get("spec")
            meta["generation"] = (
                1 if old is None else int(old["metadata"].get("generation", 1)) + spec_changed
            )
        if not managed and req is not None and sub != "status":
            before = patches.leaf_paths(patches.ownable(old or {}))
            after = patches.leaf_paths(patches.ownable(new))
            changed = {p for p, v in after.items() if before.get(p, ...) != v}
            owned = {
                (e["manager"], e["operation"]): patches.from_fields_v1(e.get("fieldsV1") or {}) & set(after)
                for e in (old or {}).get("metadata", {}).get("managedFields") or []
            }
            for paths in owned.values():
                paths -= changed
            me = (self._manager(req), "Update")
            owned[me] = owned.get(me, set()) | changed
            meta["managedFields"] = self._entries(rt, owned)
        if old is None and self.store.get(rt, meta.get("namespace", ""), meta["name"]) is not None:
            raise conflict(
                rt, meta["name"], "AlreadyExists", f'{rt.qualified} "{meta["name"]}" already exists'
            )
        if req is not None and req.query.get("dryRun") == "All":
            return new
        return self.store.put(rt, new)

    # --- deletes ---------------------------------------------------------------------------------

    def _delete(self, req: Request, t: Target) -> Response:
        obj = self.store.get(t.rt, t.namespace or "", t.name or "")
        if obj is None:
            raise not_found(t.rt, t.name or "")
        opts = req.json() if req.body else {}
        pre = (opts or {}).get("preconditions") or {}
        for k in ("uid", "resourceVersion"):
            if pre.get(k) and pre[k] != obj["metadata"].get(k):
                raise conflict(
                    t.rt,
                    t.name or "",
                    "Conflict",
                    f"Precondition failed: {k}: {pre[k]}, {k} in object meta: {obj['metadata'].get(k)}",
                )
        if req.query.get("dryRun") == "All" or (opts or {}).get("dryRun") == ["All"]:
            return Response.of(200, obj)
        orphan = req.query.get("propagationPolicy", (opts or {}).get("propagationPolicy")) == "Orphan"
        return Response.of(200, self.delete(t.rt, t.namespace or "", t.name or "", cascade=not orphan))

    def delete(self, rt: ResourceType, namespace: str, name: str, *, cascade: bool = True) -> Obj:
        """Delete an object now, and (unless orphaning) what it owns; a namespace takes its contents."""
        obj = self.store.remove(rt, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        if rt.kind == "Namespace":
            for other in self.discovery.types():
                if other.namespaced:
                    for item in self.store.list(other, name)[0]:
                        self.store.remove(other, name, item["metadata"]["name"])
            obj["status"] = {"phase": "Terminating"}
            obj["metadata"]["deletionTimestamp"] = now()
        if cascade:
            for group, plural, ns, child in self.store.owned_by(obj["metadata"]["uid"]):
                child_rt = next(x for x in self.discovery.types() if x.key == (group, plural))
                try:
                    self.delete(child_rt, ns, child)
                except ApiError:
                    pass
        return obj

    def _delete_collection(self, req: Request, t: Target) -> Response:
        items, rv = self.store.list(
            t.rt, t.namespace, req.query.get("labelSelector"), req.query.get("fieldSelector")
        )
        if req.query.get("dryRun") != "All":
            for item in items:
                self.delete(t.rt, item["metadata"].get("namespace", ""), item["metadata"]["name"])
        return Response.of(
            200,
            {
                "kind": f"{t.rt.kind}List",
                "apiVersion": t.rt.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            },
        )

    def create_internal(self, rt: ResourceType, obj: Obj) -> Obj:
        """Create an object as a controller would (no request, no managedFields)."""
        return self.write(rt, obj, None)
