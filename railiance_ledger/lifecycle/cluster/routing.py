"""Routing read, shift and read-back: what routes the host now, the weighted shift to the
candidate, the production routing verdict, the routing objects a rollback re-applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.errors import (
    ActionNotConfirmed,
    AdapterError,
)
from railiance_ledger.lifecycle.cluster.objects import (
    FIELD_MANAGER,
    GATEWAY_GROUP,
    GATEWAY_GV,
    GATEWAY_VERSION,
    INGRESS_GV,
    api_version_of,
    clean_object,
    subset_mismatches,
)

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ports import KubePort


def read_routing(kube: KubePort, spec: dc.RoutingSpec) -> list[dict[str, Any]]:
    """Every Ingress (and HTTPRoute when served) in the namespace: what routing looks like now."""
    objs = [
        dict(o, kind="Ingress")
        for o in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=spec.namespace)
    ]
    if spec.provider is dc.Provider.GATEWAY_API or kube.has_api(
        group=GATEWAY_GROUP, version=GATEWAY_VERSION, kind="HTTPRoute"
    ):
        try:
            objs += [
                dict(o, kind="HTTPRoute")
                for o in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=spec.namespace)
            ]
        except AdapterError:
            if spec.provider is dc.Provider.GATEWAY_API:
                raise
    return objs


def routing_snapshot(kube: KubePort, decl: Declaration, namespace: str) -> list[dict[str, Any]]:
    """The production routing objects (Ingress/HTTPRoute for the host or the stable service), cleaned."""
    out: list[dict[str, Any]] = []
    for obj in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=namespace):
        obj = dict(obj, kind="Ingress", apiVersion=INGRESS_GV)
        if decl.routing.service in ingress_services(obj, decl.routing.host) and not is_canary(obj):
            out.append(clean_object(obj))
    if kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute"):
        for obj in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=namespace):
            obj = dict(obj, kind="HTTPRoute", apiVersion=GATEWAY_GV)
            if decl.routing.service in route_services(obj, decl.routing.host):
                out.append(clean_object(obj))
    return out


def is_canary(obj: Mapping[str, Any]) -> bool:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(dc.NGINX + "canary", "")).lower() == "true"


def ingress_services(obj: Mapping[str, Any], host: str | None) -> set[str]:
    out: set[str] = set()
    spec = obj.get("spec") or {}
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        out.add(str(default))
    for rule in spec.get("rules") or []:
        if host and rule.get("host") not in (None, "", host):
            continue
        for p in (rule.get("http") or {}).get("paths") or []:
            name = ((p.get("backend") or {}).get("service") or {}).get("name")
            if name:
                out.add(str(name))
    return out


def route_services(obj: Mapping[str, Any], host: str | None) -> dict[str, float]:
    spec = obj.get("spec") or {}
    if host and spec.get("hostnames") and host not in (spec.get("hostnames") or []):
        return {}
    out: dict[str, float] = {}
    for rule in spec.get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            w = ref.get("weight", 1)
            out[str(ref.get("name"))] = out.get(str(ref.get("name")), 0.0) + float(
                w if isinstance(w, (int, float)) else 1
            )
        for flt in rule.get("filters") or []:
            if flt.get("type") == "RequestMirror":
                name = ((flt.get("requestMirror") or {}).get("backendRef") or {}).get("name")
                out.setdefault(f"mirror:{name}", 1.0)
    return out


def production_routing(
    kube: KubePort, decl: Declaration, *, namespace: str, image: str, canary_service: str | None
) -> dict[str, Any]:
    """Read production routing back: what the host routes to, and what the stable service selects.

    ``ok`` is True when the host routes only to the stable service (no canary Ingress, no canary
    backend or mirror), and every live pod the stable service selects runs ``image`` (at least one
    of them ready).
    """
    host, stable = decl.routing.host, decl.routing.service
    serving: list[str] = []
    canary_left: list[str] = []
    for obj in kube.list(api_version=INGRESS_GV, kind="Ingress", namespace=namespace):
        name = f"Ingress/{obj['metadata']['name']}"
        services = ingress_services(obj, host)
        if canary_service and canary_service in services or (is_canary(obj) and services):
            canary_left.append(name)
        elif stable in services:
            serving.append(name)
    if kube.has_api(group="gateway.networking.k8s.io", version="v1", kind="HTTPRoute"):
        for obj in kube.list(api_version=GATEWAY_GV, kind="HTTPRoute", namespace=namespace):
            name = f"HTTPRoute/{obj['metadata']['name']}"
            weights = route_services(obj, host)
            if canary_service and (
                weights.get(canary_service, 0) > 0 or f"mirror:{canary_service}" in weights
            ):
                canary_left.append(name)
            elif weights.get(stable, 0) > 0:
                serving.append(name)
    svc = kube.get(api_version="v1", kind="Service", namespace=namespace, name=stable)
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = [
        p
        for p in (
            kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=sel) if sel else []
        )
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    images = sorted(
        {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
    )
    ready = sum(
        1
        for p in pods
        if any(
            c.get("type") == "Ready" and str(c.get("status")) == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )
    problems: list[str] = []
    if svc is None:
        problems.append(f"stable Service {stable} not found")
    if host and not serving:
        problems.append(f"no Ingress or HTTPRoute routes {host} to the stable service {stable}")
    if canary_left:
        problems.append("canary routing still present: " + ", ".join(canary_left))
    if not pods or ready == 0:
        problems.append(f"the stable service {stable} selects no ready pod")
    if images and images != [image]:
        problems.append(
            f"the stable service {stable} selects pods running {', '.join(images)}, not only {image}"
        )
    return {
        "ok": not problems,
        "host": host,
        "stable_service": stable,
        "serving_objects": serving,
        "canary_objects": canary_left,
        "selector": sel,
        "pods": f"{ready}/{len(pods)} ready",
        "pod_images": images,
        "detail": "; ".join(problems)
        if problems
        else (
            f"{host or 'service'} -> {stable} ({', '.join(serving) or 'service only'}); {ready}/{len(pods)} "
            f"pods ready on {image}"
        ),
    }


def shift_weight(kube: KubePort, spec: dc.RoutingSpec) -> str:
    """Send all of the host's traffic to the canary (weight 100); return the read-back text."""

    full = replace(spec, weight=100)
    if full.provider is dc.Provider.GATEWAY_API:
        route = kube.get(
            api_version=GATEWAY_GV, kind="HTTPRoute", namespace=spec.namespace, name=spec.route_name
        )
        obj = dc.gateway_route_patch(route, full)
    else:
        obj = dc.nginx_canary_ingress(full)
    kube.apply(manifests=[obj], field_manager=FIELD_MANAGER)
    ok, reason = dc.routing_matches(full, read_routing(kube, full))
    if not ok:
        raise ActionNotConfirmed(f"weighted shift to the candidate did not read back: {reason}")
    return reason


def routing_objects(leaving: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The routing objects a routing rollback re-applies: ``routing_previous`` of the stable being left.

    A routing-switch promotion records, in its ``promotion.completed`` payload (and, while it is
    still open, in its ``stage.started`` ``candidate_restore``), the exact routing objects it
    replaced (the stable Service with its previous selector, and the Ingress/HTTPRoute objects of
    the host), cleaned of server fields. Empty when the stable being left was not routing-switched.
    """
    return [clean_object(o) for o in leaving.get("routing_previous") or () if isinstance(o, Mapping)]


def selected_pods(
    kube: KubePort, namespace: str, service: str
) -> tuple[dict[str, Any] | None, str, list[dict[str, Any]]]:
    """``(Service, selector text, live pods it selects)`` of ``service``."""
    svc = kube.get(api_version="v1", kind="Service", namespace=namespace, name=service)
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = [
        p
        for p in (
            kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=sel) if sel else []
        )
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    return svc, sel, pods


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and str(c.get("status")) == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def routing_read_back(
    kube: KubePort, objs: Sequence[Mapping[str, Any]], *, namespace: str, service: str, image: str | None
) -> dict[str, Any]:
    """Read routing back after a routing switch or a routing rollback.

    ``ok`` when every object of ``objs`` is live with its ``spec`` and labels (a Service's selector
    must be exactly equal: extra selector keys would select other pods), and the stable Service
    ``service`` selects at least one ready pod and only pods running ``image`` (when given).
    """
    problems: list[str] = []
    for want in objs:
        kind, name = str(want.get("kind")), str((want.get("metadata") or {}).get("name"))
        ns = str((want.get("metadata") or {}).get("namespace") or namespace)
        live = kube.get(api_version=api_version_of(want), kind=kind, namespace=ns, name=name)
        if live is None:
            problems.append(f"{kind}/{name} is missing")
            continue
        problems += [
            f"{kind}/{name}{m}" for m in subset_mismatches(want.get("spec"), live.get("spec"), ".spec")
        ]
        problems += [
            f"{kind}/{name}{m}"
            for m in subset_mismatches(
                (want.get("metadata") or {}).get("labels") or {},
                (live.get("metadata") or {}).get("labels") or {},
                ".metadata.labels",
            )
        ]
        if kind == "Service":
            have = (live.get("spec") or {}).get("selector") or {}
            wanted = (want.get("spec") or {}).get("selector") or {}
            if have != wanted:
                problems.append(f"Service/{name}.spec.selector: expected exactly {wanted!r}, found {have!r}")
    svc, sel, pods = selected_pods(kube, namespace, service)
    images = sorted(
        {str(c.get("image")) for p in pods for c in (p.get("spec") or {}).get("containers") or []}
    )
    ready = sum(1 for p in pods if pod_ready(p))
    if svc is None:
        problems.append(f"stable Service {namespace}/{service} not found")
    elif ready == 0:
        problems.append(f"the stable Service {service} ({sel or 'no selector'}) selects no ready pod")
    if image and images and images != [image]:
        problems.append(
            f"the stable Service {service} selects pods running {', '.join(images)}, not only {image}"
        )
    return {
        "ok": not problems,
        "objects": [f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}" for o in objs],
        "selector": sel,
        "pods": f"{ready}/{len(pods)} ready",
        "pod_images": images,
        "detail": "; ".join(problems[:10])
        if problems
        else (
            f"Service {service} selects {sel}: {ready}/{len(pods)} pods ready on "
            f"{image or ', '.join(images)}; "
            f"{len(objs)} routing objects as recorded"
        ),
    }
