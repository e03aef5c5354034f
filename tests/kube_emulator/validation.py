"""Defaulting and a light schema check per kind, reporting causes the way the API server does (422)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from tests.kube_emulator.discovery import ResourceType

Obj = dict[str, Any]
Cause = dict[str, str]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_NAMED = {"Namespace", "Service"}


def required(field: str, detail: str = "") -> Cause:
    """A FieldValueRequired cause."""
    return {
        "reason": "FieldValueRequired",
        "message": "Required value" + (f": {detail}" if detail else ""),
        "field": field,
    }


def invalid(field: str, value: Any, detail: str) -> Cause:
    """A FieldValueInvalid cause."""
    if isinstance(value, dict):
        shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in value.items()) + "}"
    else:
        shown = f'"{value}"' if isinstance(value, str) else json.dumps(value)
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {detail}", "field": field}


def _pod_spec_defaults(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            image = str(c.get("image", ""))
            latest = image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] and "@" not in image
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                p.setdefault("protocol", "TCP")


def apply_defaults(rt: ResourceType, obj: Obj, cluster_ip: str) -> None:
    """Fill in the server defaults real clusters add (so clients see realistic objects)."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if rt.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rt.kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        for k, v in string_data.items():
            obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
    elif rt.kind == "Service" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            spec.setdefault("clusterIP", cluster_ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
        obj.setdefault("status", {"loadBalancer": {}})
    elif rt.kind in ("Deployment", "ReplicaSet") and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if rt.kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            )
        template = spec.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            template.setdefault("metadata", {})
            _pod_spec_defaults(template["spec"])
        obj.setdefault("status", {})
    elif rt.kind == "Pod" and spec is not None:
        _pod_spec_defaults(spec)
        obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
    elif rt.kind == "Ingress":
        obj.setdefault("status", {"loadBalancer": {}})


def _containers(spec: Any, field: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(field)]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [required(f"{field}.containers")]
    causes: list[Cause] = []
    for i, c in enumerate(containers):
        at = f"{field}.containers[{i}]"
        if not isinstance(c, dict):
            causes.append(invalid(at, c, "must be an object"))
            continue
        if not c.get("name"):
            causes.append(required(f"{at}.name"))
        elif not DNS1123_LABEL.match(str(c["name"])):
            causes.append(invalid(f"{at}.name", c["name"], LABEL_MSG))
        if not c.get("image"):
            causes.append(required(f"{at}.image"))
        for j, p in enumerate(c.get("ports") or []):
            port = p.get("containerPort") if isinstance(p, dict) else None
            if not isinstance(port, int) or not 0 < port < 65536:
                causes.append(
                    invalid(f"{at}.ports[{j}].containerPort", port, "must be between 1 and 65535, inclusive")
                )
    return causes


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    ok = all(labels.get(k) == v for k, v in match.items())
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        ok = ok and {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
    return ok


def validate(rt: ResourceType, obj: Obj) -> list[Cause]:
    """Causes that make ``obj`` invalid (empty when valid)."""
    causes: list[Cause] = []
    name = obj.get("metadata", {}).get("name", "")
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif rt.kind in LABEL_NAMED and not DNS1123_LABEL.match(name):
        causes.append(invalid("metadata.name", name, LABEL_MSG))
    elif not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        causes.append(invalid("metadata.name", name, SUBDOMAIN_MSG))
    for k, v in (obj.get("metadata", {}).get("labels") or {}).items():
        if (
            not isinstance(v, str)
            or len(v) > 63
            or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", v)
        ):
            causes.append(
                invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist "
                    "of alphanumeric characters, '-', '_' or '.'",
                )
            )
    spec = obj.get("spec")
    if rt.kind in ("Deployment", "ReplicaSet"):
        if not isinstance(spec, dict):
            return causes + [required("spec")]
        selector = spec.get("selector")
        if not isinstance(selector, dict) or not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            causes.append(required("spec.selector"))
        template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if selector and not _selector_matches(selector, labels):
            causes.append(
                invalid(
                    "spec.template.metadata.labels", labels, "`selector` does not match template `labels`"
                )
            )
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            causes.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
        causes += _containers(template.get("spec"), "spec.template.spec")
    elif rt.kind == "Pod":
        causes += _containers(spec, "spec")
    elif rt.kind == "Service" and isinstance(spec, dict):
        headless = spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName"
        ports = spec.get("ports") or []
        if not ports and not headless:
            causes.append(required("spec.ports"))
        for i, p in enumerate(ports):
            port = p.get("port") if isinstance(p, dict) else None
            if not isinstance(port, int) or not 0 < port < 65536:
                causes.append(
                    invalid(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive")
                )
    elif rt.kind == "Ingress":
        for i, rule in enumerate((spec or {}).get("rules") or []):
            for j, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                at = f"spec.rules[{i}].http.paths[{j}]"
                if path.get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
                    causes.append(required(f"{at}.pathType", "pathType must be specified"))
                backend = path.get("backend") or {}
                if not (backend.get("service") or {}).get("name") and not backend.get("resource"):
                    causes.append(required(f"{at}.backend", "must specify a service or a resource"))
    elif rt.kind == "HTTPRoute":
        for i, rule in enumerate((spec or {}).get("rules") or []):
            for j, ref in enumerate((rule or {}).get("backendRefs") or []):
                if not ref.get("name"):
                    causes.append(required(f"spec.rules[{i}].backendRefs[{j}].name"))
                weight = ref.get("weight", 1)
                if not isinstance(weight, int) or not 0 <= weight <= 1000000:
                    causes.append(
                        invalid(
                            f"spec.rules[{i}].backendRefs[{j}].weight",
                            weight,
                            "should be less than or equal to 1000000",
                        )
                    )
    elif rt.kind == "Secret":
        for k, v in (obj.get("data") or {}).items():
            try:
                base64.b64decode(str(v), validate=True)
            except (binascii.Error, ValueError):
                causes.append(invalid(f"data[{k}]", "<secret contents redacted>", "illegal base64 data"))
    return causes
