"""The resource types the emulator serves, and the discovery documents that describe them.

Discovery is the legacy (non-aggregated) kind: ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``
and ``/apis/<group>/<version>``. Aggregated discovery is not served; kubectl, helm and client-go
fall back to the legacy documents when the answer is plain ``application/json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
GATEWAY_GROUP = "gateway.networking.k8s.io"
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and what its objects look like."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``<group>/<version>``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name the API server uses in messages: ``pods``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> tuple[str, str]:
        """Storage key part: objects are stored by group and plural, independent of version."""
        return (self.group, self.plural)


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    cat: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(group, version, kind, plural, namespaced, short, sub, cat)


ALL = ("all",)
BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    _rt("", "v1", "Pod", "pods", True, ("po",), ("status", "log"), ALL),
    _rt("", "v1", "Service", "services", True, ("svc",), ("status", "proxy"), ALL),
    _rt("", "v1", "Secret", "secrets", True),
    _rt("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    _rt("", "v1", "Event", "events", True, ("ev",)),
    _rt("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ALL),
    _rt("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ALL),
    _rt("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), ("status",)),
    _rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        ("status",),
    ),
    _rt(GATEWAY_GROUP, "v1", "HTTPRoute", "httproutes", True, (), ("status",), ("gateway-api",)),
)


class Discovery:
    """The set of served resource types; the Gateway API group can be switched off by a test."""

    def __init__(self) -> None:
        self.gateway_api = True

    def types(self) -> list[ResourceType]:
        """Every resource type currently served."""
        return [t for t in BUILTIN if self.gateway_api or t.group != GATEWAY_GROUP]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource type at ``/<group>/<version>/<plural>``, if served."""
        for t in self.types():
            if (t.group, t.version, t.plural) == (group, version, plural):
                return t
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The resource type for an object's ``apiVersion`` and ``kind``, if served."""
        for t in self.types():
            if (t.api_version, t.kind) == (api_version, kind):
                return t
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, core group excluded."""
        out: dict[str, list[str]] = {}
        for t in self.types():
            if t.group and t.version not in out.setdefault(t.group, []):
                out[t.group].append(t.version)
        return out

    def api_versions(self, server_address: str) -> dict[str, Any]:
        """The ``/api`` document."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def _group(self, name: str, versions: list[str]) -> dict[str, Any]:
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}

    def api_group_list(self) -> dict[str, Any]:
        """The ``/apis`` document."""
        groups = [self._group(g, vs) for g, vs in self.group_versions().items()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        """The ``/apis/<group>`` document, or None if the group is not served."""
        versions = self.group_versions().get(group)
        if versions is None:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """The ``/api/v1`` or ``/apis/<group>/<version>`` document, or None if not served."""
        types = [t for t in self.types() if (t.group, t.version) == (group, version)]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for t in types:
            entry: dict[str, Any] = {
                "name": t.plural,
                "singularName": t.kind.lower(),
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": VERBS,
            }
            if t.short_names:
                entry["shortNames"] = list(t.short_names)
            if t.categories:
                entry["categories"] = list(t.categories)
            resources.append(entry)
            for sub in t.subresources:
                verbs = {
                    "log": ["get"],
                    "proxy": ["create", "delete", "get", "patch", "update"],
                    "finalize": ["update"],
                }.get(sub, ["get", "patch", "update"])
                kind = {"scale": "Scale"}.get(sub, t.kind)
                resources.append(
                    {
                        "name": f"{t.plural}/{sub}",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "kind": kind,
                        "verbs": verbs,
                        **({"group": "autoscaling", "version": "v1"} if sub == "scale" else {}),
                    }
                )
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def openapi_v3_root(self) -> dict[str, Any]:
        """The ``/openapi/v3`` index: one entry per served group-version."""
        gvs = [("api/v1", "", "v1")] + [
            (f"apis/{g}/{v}", g, v) for g, vs in self.group_versions().items() for v in vs
        ]
        return {
            "paths": {
                p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={abs(hash((g, v, self.gateway_api))):X}"}
                for p, g, v in gvs
            }
        }

    def openapi_v3(self, group: str, version: str) -> dict[str, Any] | None:
        """A minimal OpenAPI v3 document for a group-version: the PATCH operations with their GVK and the
        ``fieldValidation`` parameter, which is what kubectl and helm look for before they let the server
        validate fields. Schemas are open (``x-kubernetes-preserve-unknown-fields``)."""
        types = [t for t in self.types() if (t.group, t.version) == (group, version)]
        if not types:
            return None
        prefix = f"/apis/{group}/{version}" if group else "/api/v1"
        paths: dict[str, Any] = {}
        params = [
            {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for n in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        for t in types:
            gvk = {"group": t.group, "version": t.version, "kind": t.kind}
            item = (
                f"{prefix}/namespaces/{{namespace}}/{t.plural}/{{name}}"
                if t.namespaced
                else f"{prefix}/{t.plural}/{{name}}"
            )
            ok = {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{t.kind}"}}},
                }
            }
            paths[item] = {
                "get": {
                    "operationId": f"read{t.kind}",
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": ok,
                },
                "patch": {
                    "operationId": f"patch{t.kind}",
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": ok,
                },
            }
        schemas = {
            t.kind: {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": t.kind}],
            }
            for t in types
        }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths,
            "components": {"schemas": schemas},
        }
