"""Stage 2 production canary: routing forms, read-back comparison, and the acceptance gates.

Pure: every function takes plain data (declaration values, Kubernetes objects as dicts, samples
already collected) and returns plain data. No I/O, no clock, no network. The lifecycle service
(``railiance_ledger.lifecycle.stage2``) collects the facts through adapters and asks this module
what they mean.

The gate names are stable identifiers used by tests, docs and the stage-result document:

    canary_pods_ready          pods ready for the whole observation window
    canary_pods_stable         no crash loops, repeated restarts or unexplained pending pods
    canary_health              health inside (service proxy) and outside (ingress) the cluster
    canary_error_rate          absolute ceiling and increase over stable
    canary_latency             p95 absolute ceiling and increase over stable
    canary_saturation          absolute ceiling (and increase over stable when declared)
    canary_statistical_comparison  Mann-Whitney U (one-sided "greater") canary vs stable
    canary_routing             routing read back matches the declared form and weight
    canary_side_effects        declared data-integrity check (schema, storage, queue)
    canary_logs_clean          no secret leakage and no repeated 401/403 in pod logs
    rollback_ready             rollback tested, or one documented command with a known target

Metrics that could not be collected always fail their gate with the reason "metrics unavailable"
unless a waiver covers the gate: a fact that could not be collected is never a pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from railiance_ledger.domain.gates import sample_gate_names
from railiance_ledger.domain.stage_result import Check, CheckStatus, Evidence, FailureKind

# --------------------------------------------------------------------------------------------------
# vocabulary


class CanaryForm(StrEnum):
    """How the candidate is exposed during Stage 2 (the spec's "acceptable canary forms")."""

    WEIGHTED = "weighted"
    """A weighted split of the stable host's traffic (``canary.weight`` percent)."""
    HEADER = "header"
    """Only requests carrying the declared header (operator traffic) reach the canary."""
    PATH = "path"
    """Only requests under the declared path prefix (operator traffic) reach the canary."""
    SHADOW = "shadow"
    """The canary receives a mirror of production requests; stable answers every request."""
    ISOLATED_NAMESPACE = "isolated-namespace"
    """No production routing at all; probes are triggered manually through the service proxy."""

    @property
    def needs_routing_provider(self) -> bool:
        """True for forms that create or change production routing objects."""
        return self is not CanaryForm.ISOLATED_NAMESPACE


class Provider(StrEnum):
    """Which routing API implements the form."""

    INGRESS_NGINX = "ingress-nginx"
    """``networking.k8s.io/v1`` Ingress with ingress-nginx canary annotations."""
    GATEWAY_API = "gateway-api"
    """``gateway.networking.k8s.io/v1`` HTTPRoute backend weights, matches and mirror filters."""


#: Forms a fallback may choose: both keep the candidate observable without replacing stable.
SAFE_FALLBACK_FORMS: tuple[CanaryForm, ...] = (CanaryForm.HEADER, CanaryForm.ISOLATED_NAMESPACE)

NGINX = "nginx.ingress.kubernetes.io/"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "railiance-ledger"
CANARY_OF_ANNOTATION = "railiance.dev/canary-of"
DEFAULT_HEADER = "X-Railiance-Canary"
DEFAULT_HEADER_VALUE = "always"
METRICS_UNAVAILABLE = "metrics unavailable"
MORE_TRAFFIC = "production routing changes more traffic than intended"

GATE_NAMES: tuple[str, ...] = sample_gate_names()
"""The acceptance gates judged here from the window's samples, in report order (``domain.gates``)."""


# --------------------------------------------------------------------------------------------------
# routing: what to create


@dataclass(frozen=True)
class RoutingSpec:
    """The declared routing, as plain data taken from ``[routing]``, ``[canary]`` and the release.

    ``stable_service``/``canary_service`` are Service names in ``namespace``; ``route_name`` is the
    stable HTTPRoute (gateway-api) the weighted and shadow forms patch; ``gateway`` its parent.
    """

    workload: str
    namespace: str
    host: str
    stable_service: str
    canary_service: str
    port: int
    form: CanaryForm
    provider: Provider = Provider.INGRESS_NGINX
    weight: int = 0
    header: str = DEFAULT_HEADER
    header_value: str = DEFAULT_HEADER_VALUE
    path_prefix: str = "/canary"
    ingress_class: str = "nginx"
    tls_secret: str | None = None
    canary_release: str = ""
    route_name: str = ""
    gateway: str = ""
    gateway_namespace: str = ""
    fallback_from: str | None = None
    """When a fallback was chosen: the declared form it replaced (recorded as evidence)."""

    @property
    def canary_object_name(self) -> str:
        """Name of the routing object the canary owns (deleted on rollback)."""
        return self.canary_release or f"{self.workload}-canary"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (enums as strings) for ledger payloads."""
        data = asdict(self)
        data["form"] = str(self.form)
        data["provider"] = str(self.provider)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingSpec:
        """Inverse of ``as_dict`` (used to resume an observation from the ledger)."""
        values = dict(data)
        values["form"] = CanaryForm(values["form"])
        values["provider"] = Provider(values["provider"])
        return cls(**values)


@dataclass(frozen=True)
class RoutingPlan:
    """The routing objects a canary form needs.

    ``creates`` are new objects the canary owns (deleted on rollback). ``patches`` are modified
    copies of existing stable objects (their originals are kept so rollback restores them exactly).
    """

    creates: list[dict[str, Any]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def objects(self) -> list[dict[str, Any]]:
        """Every object the plan writes."""
        return [*self.creates, *self.patches]


def _labels(spec: RoutingSpec) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, "railiance.dev/workload": spec.workload, "track": "canary"}


def _ingress(spec: RoutingSpec, *, annotations: dict[str, str], path: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": spec.canary_object_name,
            "namespace": spec.namespace,
            "labels": _labels(spec),
            "annotations": {CANARY_OF_ANNOTATION: spec.stable_service, **annotations},
        },
        "spec": {
            "ingressClassName": spec.ingress_class,
            "rules": [
                {
                    "host": spec.host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": spec.canary_service, "port": {"number": spec.port}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }
    if spec.tls_secret:
        body["spec"]["tls"] = [{"hosts": [spec.host], "secretName": spec.tls_secret}]
    return body


def nginx_canary_ingress(spec: RoutingSpec) -> dict[str, Any]:
    """The ingress-nginx canary Ingress for the weighted, header or path form.

    weighted: ``canary: "true"`` + ``canary-weight``; header: ``canary: "true"`` +
    ``canary-by-header`` (+ ``canary-by-header-value``); path: a plain Ingress for the path prefix
    only, pointing at the canary service (stable keeps ``/``).
    """
    if spec.form is CanaryForm.WEIGHTED:
        ann = {NGINX + "canary": "true", NGINX + "canary-weight": str(int(spec.weight))}
        return _ingress(spec, annotations=ann, path="/")
    if spec.form is CanaryForm.HEADER:
        ann = {NGINX + "canary": "true", NGINX + "canary-by-header": spec.header}
        if spec.header_value:
            ann[NGINX + "canary-by-header-value"] = spec.header_value
        return _ingress(spec, annotations=ann, path="/")
    if spec.form is CanaryForm.PATH:
        return _ingress(spec, annotations={}, path=spec.path_prefix)
    raise ValueError(f"form {spec.form} has no canary Ingress of its own")


def nginx_shadow_patch(stable_ingress: Mapping[str, Any], spec: RoutingSpec) -> dict[str, Any]:
    """A copy of the stable Ingress that mirrors requests to the canary (``mirror-target``).

    Stable still answers every request; the canary sees a copy whose response is discarded. Request
    bodies are not mirrored (``mirror-request-body: "off"``) so the mirror carries no mutating payload.
    """
    patched: dict[str, Any] = _deep_copy(stable_ingress)
    meta = patched.setdefault("metadata", {})
    ann = dict(meta.get("annotations") or {})
    ann[NGINX + "mirror-target"] = _mirror_url(spec)
    ann[NGINX + "mirror-request-body"] = "off"
    ann[CANARY_OF_ANNOTATION] = spec.stable_service
    meta["annotations"] = ann
    _strip_server_fields(meta)
    return patched


def _mirror_url(spec: RoutingSpec) -> str:
    return f"http://{spec.canary_service}.{spec.namespace}.svc.cluster.local:{spec.port}$request_uri"


def _backend(name: str, port: int, weight: int | None = None, namespace: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": port}
    if namespace:
        ref["namespace"] = namespace
    if weight is not None:
        ref["weight"] = weight
    return ref


def gateway_route_patch(stable_route: Mapping[str, Any] | None, spec: RoutingSpec) -> dict[str, Any]:
    """The stable HTTPRoute rewritten for the weighted, header, path or shadow form.

    weighted: every rule that sends traffic to the stable service gets stable ``100-w`` / canary
    ``w`` backend weights. header/path: a rule matching the header (or path prefix) that sends to the
    canary is put first. shadow: a ``RequestMirror`` filter to the canary on every stable rule.
    ``stable_route`` ``None`` means there is no route yet: one is built for the host.
    """
    if stable_route is None:
        route: dict[str, Any] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": spec.route_name or spec.stable_service, "namespace": spec.namespace},
            "spec": {
                "hostnames": [spec.host],
                "rules": [{"backendRefs": [_backend(spec.stable_service, spec.port)]}],
            },
        }
        if spec.gateway:
            parent: dict[str, Any] = {"name": spec.gateway}
            if spec.gateway_namespace:
                parent["namespace"] = spec.gateway_namespace
            route["spec"]["parentRefs"] = [parent]
    else:
        route = dict(_deep_copy(stable_route))
        _strip_server_fields(route.setdefault("metadata", {}))
    meta = route["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), CANARY_OF_ANNOTATION: spec.stable_service}
    rules: list[dict[str, Any]] = route.setdefault("spec", {}).setdefault("rules", [])
    # drop anything a previous canary of ours left behind, so the patch is idempotent
    rules[:] = [r for r in rules if not _is_canary_rule(r, spec)]
    for rule in rules:
        refs = rule.get("backendRefs") or []
        rule["backendRefs"] = [r for r in refs if r.get("name") != spec.canary_service]
        rule["filters"] = [f for f in (rule.get("filters") or []) if not _is_canary_mirror(f, spec)]
        if not rule["filters"]:
            rule.pop("filters")
    stable_rules = [
        r for r in rules if any(b.get("name") == spec.stable_service for b in r.get("backendRefs") or [])
    ]
    if spec.form is CanaryForm.WEIGHTED:
        w = int(spec.weight)
        for rule in stable_rules:
            refs = [b for b in rule["backendRefs"] if b.get("name") != spec.stable_service]
            refs.append(_backend(spec.stable_service, spec.port, 100 - w))
            refs.append(_backend(spec.canary_service, spec.port, w))
            rule["backendRefs"] = refs
    elif spec.form in (CanaryForm.HEADER, CanaryForm.PATH):
        if spec.form is CanaryForm.HEADER:
            match: dict[str, Any] = {
                "headers": [{"type": "Exact", "name": spec.header, "value": spec.header_value}]
            }
        else:
            match = {"path": {"type": "PathPrefix", "value": spec.path_prefix}}
        rules.insert(0, {"matches": [match], "backendRefs": [_backend(spec.canary_service, spec.port)]})
    elif spec.form is CanaryForm.SHADOW:
        for rule in stable_rules:
            rule.setdefault("filters", []).append(
                {
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": _backend(spec.canary_service, spec.port)},
                }
            )
    else:
        raise ValueError(f"form {spec.form} does not change production routing")
    return route


def plan_routing(
    spec: RoutingSpec,
    *,
    stable_ingress: Mapping[str, Any] | None = None,
    stable_route: Mapping[str, Any] | None = None,
) -> RoutingPlan:
    """The routing objects to write for ``spec``.

    ingress-nginx weighted/header/path create one canary Ingress; ingress-nginx shadow patches the
    stable Ingress (which must exist); every gateway-api form patches the stable HTTPRoute;
    isolated-namespace writes nothing.
    """
    if spec.form is CanaryForm.ISOLATED_NAMESPACE:
        return RoutingPlan()
    if spec.provider is Provider.INGRESS_NGINX:
        if spec.form is CanaryForm.SHADOW:
            if stable_ingress is None:
                raise ValueError("the shadow form on ingress-nginx needs the stable Ingress to mirror from")
            return RoutingPlan(patches=[nginx_shadow_patch(stable_ingress, spec)])
        return RoutingPlan(creates=[nginx_canary_ingress(spec)])
    return RoutingPlan(patches=[gateway_route_patch(stable_route, spec)])


def _is_canary_rule(rule: Mapping[str, Any], spec: RoutingSpec) -> bool:
    refs = rule.get("backendRefs") or []
    return (
        bool(rule.get("matches")) and bool(refs) and all(b.get("name") == spec.canary_service for b in refs)
    )


def _is_canary_mirror(flt: Mapping[str, Any], spec: RoutingSpec) -> bool:
    return flt.get("type") == "RequestMirror" and (
        ((flt.get("requestMirror") or {}).get("backendRef") or {}).get("name") == spec.canary_service
    )


def _strip_server_fields(meta: dict[str, Any]) -> None:
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# routing: fallback


@dataclass(frozen=True)
class FormDecision:
    """The form actually used; ``fallback_from`` names the declared form when it was replaced."""

    form: CanaryForm | None
    provider: Provider
    fallback_from: CanaryForm | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """False when no safe form is available (the deploy fails closed)."""
        return self.form is not None


def choose_form(
    declared: CanaryForm,
    provider: Provider,
    *,
    ingress_class_available: bool,
    gateway_api_available: bool,
    allowed_fallbacks: Sequence[CanaryForm] = SAFE_FALLBACK_FORMS,
) -> FormDecision:
    """Keep the declared form when its routing provider is available, else fall back safely.

    A fallback only ever goes to a form that keeps the candidate observable without replacing
    stable: header (on whichever provider is available) or isolated-namespace. Any other entry in
    ``allowed_fallbacks`` is ignored. No available safe fallback: ``form=None`` (fail closed).
    """
    available = {Provider.INGRESS_NGINX: ingress_class_available, Provider.GATEWAY_API: gateway_api_available}
    if not declared.needs_routing_provider or available[provider]:
        return FormDecision(declared, provider, None, f"declared form {declared} via {provider}")
    safe = [f for f in allowed_fallbacks if f in SAFE_FALLBACK_FORMS and f is not declared]
    why = f"declared form {declared} needs {provider}, which is not available in the cluster"
    for form in safe:
        if form is CanaryForm.HEADER:
            for other in (provider, *[p for p in Provider if p is not provider]):
                if available[other]:
                    return FormDecision(
                        form, other, declared, f"{why}; fell back to header routing via {other}"
                    )
        elif form is CanaryForm.ISOLATED_NAMESPACE:
            return FormDecision(form, provider, declared, f"{why}; fell back to an isolated namespace")
    return FormDecision(
        None, provider, declared, f"{why}; no safe fallback (header or isolated-namespace) allowed"
    )


# --------------------------------------------------------------------------------------------------
# routing: read-back


@dataclass(frozen=True)
class RoutingObservation:
    """What the routing read back says about the canary's share of production traffic.

    ``unconditional_percent`` is the percentage of ordinary requests the canary answers;
    ``conditional`` lists the header/path matches that reach it; ``mirrored`` is true when it
    receives a mirror; ``manual`` lists objects sending to the canary not created by us.
    """

    unconditional_percent: float
    conditional: list[str]
    mirrored: bool
    objects: list[str]


def observe_routing(spec: RoutingSpec, observed: Iterable[Mapping[str, Any]]) -> RoutingObservation:
    """Compute the canary's exposure from Ingress and HTTPRoute objects read back from the cluster."""
    percent = 0.0
    conditional: list[str] = []
    mirrored = False
    names: list[str] = []
    for obj in observed:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        name = f"{kind}/{meta.get('name')}"
        if kind == "Ingress":
            ann = meta.get("annotations") or {}
            if _ingress_mirrors_to(ann, spec):
                mirrored = True
                names.append(name)
            if not _ingress_serves(obj, spec.host, spec.canary_service):
                continue
            names.append(name)
            paths = _ingress_paths_to(obj, spec.host, spec.canary_service)
            if str(ann.get(NGINX + "canary", "")).lower() == "true":
                header = ann.get(NGINX + "canary-by-header")
                cookie = ann.get(NGINX + "canary-by-cookie")
                weight = _to_float(ann.get(NGINX + "canary-weight"))
                total = _to_float(ann.get(NGINX + "canary-weight-total")) or 100.0
                if header:
                    conditional.append(f"header:{header}")
                if cookie:
                    conditional.append(f"cookie:{cookie}")
                if weight:
                    percent = max(percent, 100.0 * weight / total)
            else:
                for p in paths:
                    if p in ("", "/"):
                        percent = 100.0
                    else:
                        conditional.append(f"path:{p}")
        elif kind == "HTTPRoute":
            spec_ = obj.get("spec") or {}
            hostnames = spec_.get("hostnames") or []
            if hostnames and spec.host not in hostnames:
                continue
            touched = False
            for rule in spec_.get("rules") or []:
                refs = rule.get("backendRefs") or []
                for flt in rule.get("filters") or []:
                    if flt.get("type") == "RequestMirror" and (
                        ((flt.get("requestMirror") or {}).get("backendRef") or {}).get("name")
                        == spec.canary_service
                    ):
                        mirrored = True
                        touched = True
                canary_w = sum(_ref_weight(r) for r in refs if r.get("name") == spec.canary_service)
                total_w = sum(_ref_weight(r) for r in refs)
                if canary_w <= 0 or total_w <= 0:
                    continue
                touched = True
                share = 100.0 * canary_w / total_w
                conds = _match_conditions(rule.get("matches") or [])
                if conds:
                    conditional.extend(c for c in conds)
                    if share < 100.0:
                        # a weighted split inside a conditional rule: operator traffic only
                        continue
                else:
                    percent = max(percent, share)
            if touched:
                names.append(name)
    return RoutingObservation(percent, sorted(set(conditional)), mirrored, sorted(set(names)))


def routing_matches(spec: RoutingSpec, observed: Iterable[Mapping[str, Any]]) -> tuple[bool, str]:
    """Read-back routing against the declared form and weight: ``(ok, reason)``.

    More exposure than declared fails with "production routing changes more traffic than
    intended"; less than declared (e.g. a canary ingress deleted behind our back) fails as drift
    ("the canary cannot be distinguished" when it receives nothing at all).
    """
    obs = observe_routing(spec, observed)
    declared = float(spec.weight) if spec.form is CanaryForm.WEIGHTED else 0.0
    where = ", ".join(obs.objects) or "no routing objects"
    if obs.unconditional_percent > declared + 1e-9:
        return False, (
            f"{MORE_TRAFFIC}: canary answers {obs.unconditional_percent:g}% of {spec.host} "
            f"(declared {declared:g}% for form {spec.form}) via {where}"
        )
    if spec.form is CanaryForm.WEIGHTED:
        if obs.unconditional_percent + 1e-9 < declared:
            return False, (
                f"routing drifted: canary answers {obs.unconditional_percent:g}% of {spec.host}, "
                f"declared {declared:g}% ({where})"
            )
        return True, f"canary weight {declared:g}% of {spec.host} as declared ({where})"
    if spec.form is CanaryForm.HEADER:
        want = f"header:{spec.header}"
        extra = [c for c in obs.conditional if c.lower() != want.lower()]
        if extra:
            return False, f"{MORE_TRAFFIC}: canary also reachable by {', '.join(extra)} (declared {want})"
        if not any(c.lower() == want.lower() for c in obs.conditional):
            return False, f"routing drifted: no route sends {want} to the canary ({where})"
        return True, f"canary reachable only with header {spec.header} ({where})"
    if spec.form is CanaryForm.PATH:
        want = f"path:{spec.path_prefix}"
        extra = [c for c in obs.conditional if c != want]
        if extra:
            return False, f"{MORE_TRAFFIC}: canary also reachable by {', '.join(extra)} (declared {want})"
        if want not in obs.conditional:
            return False, f"routing drifted: no route sends {want} to the canary ({where})"
        return True, f"canary reachable only under {spec.path_prefix} ({where})"
    if spec.form is CanaryForm.SHADOW:
        if obs.conditional:
            return False, f"{MORE_TRAFFIC}: a shadow canary answers requests ({', '.join(obs.conditional)})"
        if not obs.mirrored:
            return False, f"routing drifted: no mirror to the canary ({where})"
        return True, f"canary receives a mirror of {spec.host}; stable answers every request ({where})"
    # isolated namespace: nothing in production may reach it
    if obs.conditional or obs.mirrored:
        return False, f"{MORE_TRAFFIC}: an isolated canary is reachable from production routing ({where})"
    return True, "canary isolated: no production routing object reaches it"


def traffic_escaped(spec: RoutingSpec, observed: Iterable[Mapping[str, Any]]) -> bool:
    """True when the canary receives more production traffic than the declared blast radius."""
    ok, reason = routing_matches(spec, observed)
    return not ok and reason.startswith(MORE_TRAFFIC)


def _ingress_serves(obj: Mapping[str, Any], host: str, service: str) -> bool:
    return bool(_ingress_paths_to(obj, host, service))


def _ingress_paths_to(obj: Mapping[str, Any], host: str, service: str) -> list[str]:
    out: list[str] = []
    spec = obj.get("spec") or {}
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default == service:
        out.append("/")
    for rule in spec.get("rules") or []:
        if rule.get("host") not in (None, "", host):
            continue
        for p in (rule.get("http") or {}).get("paths") or []:
            if ((p.get("backend") or {}).get("service") or {}).get("name") == service:
                out.append(str(p.get("path") or "/"))
    return out


def _ingress_mirrors_to(ann: Mapping[str, Any], spec: RoutingSpec) -> bool:
    target = str(ann.get(NGINX + "mirror-target") or "")
    if not target:
        return False
    return f"//{spec.canary_service}." in target or f"//{spec.canary_service}:" in target


def _ref_weight(ref: Mapping[str, Any]) -> float:
    w = ref.get("weight", 1)
    return float(w) if isinstance(w, (int, float)) else 1.0


def _match_conditions(matches: list[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    unconditional = False
    for m in matches:
        parts: list[str] = []
        for h in m.get("headers") or []:
            parts.append(f"header:{h.get('name')}")
        path = m.get("path") or {}
        if path and str(path.get("value", "/")) not in ("", "/"):
            parts.append(f"path:{path.get('value')}")
        for q in m.get("queryParams") or []:
            parts.append(f"query:{q.get('name')}")
        if not parts:
            unconditional = True
        out.extend(parts)
    return [] if unconditional else out


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------------------------------
# samples


@dataclass(frozen=True)
class PodState:
    """Pod summary of the canary release at one instant."""

    total: int = 0
    ready: int = 0
    restarts: int = 0
    crashloop: int = 0
    pending: int = 0
    pending_reasons: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Waiting/terminated reasons seen (``CrashLoopBackOff``, ``ImagePullBackOff`` ...)."""
    available: bool = True
    reason: str = ""

    @property
    def all_ready(self) -> bool:
        """True when at least one pod exists and every pod is ready."""
        return self.available and self.total > 0 and self.ready == self.total


@dataclass(frozen=True)
class Probe:
    """One health probe result (inside via the service proxy, outside via the ingress URL)."""

    ok: bool
    status: int | None = None
    reason: str = ""
    target: str = ""
    available: bool = True
    """False when the answer could not be collected (the probe fails closed, but nothing showed a
    breach: for integrity probes, no immediate rollback on that alone)."""


@dataclass(frozen=True)
class Metric:
    """One metric value (``available`` false: the query could not be answered, ``reason`` why)."""

    value: float | None = None
    available: bool = False
    reason: str = ""
    query: str = ""

    @property
    def usable(self) -> bool:
        """True when the value can be compared: available and a finite number."""
        return self.available and self.value is not None and math.isfinite(self.value)


@dataclass(frozen=True)
class TrackMetrics:
    """Error rate (fraction), p95 latency (ms) and saturation (fraction) of one track."""

    error_rate: Metric = field(default_factory=Metric)
    p95_latency_ms: Metric = field(default_factory=Metric)
    saturation: Metric = field(default_factory=Metric)


@dataclass(frozen=True)
class LogScan:
    """What the pod-log scan found: kinds and counts only, never the text."""

    read_ok: bool = True
    reason: str = ""
    secret_kinds: dict[str, int] = field(default_factory=dict)
    auth_failures: int = 0
    lines: int = 0

    @property
    def secrets_found(self) -> int:
        """Total secret-looking findings."""
        return sum(self.secret_kinds.values())


@dataclass(frozen=True)
class RoutingState:
    """Routing read-back verdict for one sample."""

    ok: bool = True
    reason: str = ""
    escaped: bool = False
    available: bool = True
    """False when the routing objects could not be read back (the state is unknown: fail closed)."""


@dataclass(frozen=True)
class CanarySample:
    """Everything one observation sample collected; stored as a ``canary.sample`` payload."""

    index: int
    at: str
    elapsed_seconds: float = 0.0
    pods: PodState = field(default_factory=PodState)
    health_inside: Probe | None = None
    health_outside: Probe | None = None
    canary: TrackMetrics = field(default_factory=TrackMetrics)
    stable: TrackMetrics = field(default_factory=TrackMetrics)
    routing: RoutingState = field(default_factory=RoutingState)
    logs: LogScan = field(default_factory=LogScan)
    integrity: Probe | None = None
    """The declared data-integrity check (schema, storage, queue), when one is declared."""
    approval_revoked: bool = False
    production_available: bool = True
    """False when the stable production path is degraded (its error rate over the ceiling)."""

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready dict (the ``canary.sample`` event payload)."""
        return asdict(self)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> CanarySample:
        """Rebuild a sample from its payload (resuming an observation after a crash)."""

        def probe(v: Any) -> Probe | None:
            return Probe(**v) if isinstance(v, Mapping) else None

        def track(v: Any) -> TrackMetrics:
            v = v or {}
            return TrackMetrics(
                **{k: Metric(**(v.get(k) or {})) for k in ("error_rate", "p95_latency_ms", "saturation")}
            )

        return cls(
            index=int(data["index"]),
            at=str(data["at"]),
            elapsed_seconds=float(data.get("elapsed_seconds", 0.0)),
            pods=PodState(**(data.get("pods") or {})),
            health_inside=probe(data.get("health_inside")),
            health_outside=probe(data.get("health_outside")),
            canary=track(data.get("canary")),
            stable=track(data.get("stable")),
            routing=RoutingState(**(data.get("routing") or {})),
            logs=LogScan(**(data.get("logs") or {})),
            integrity=probe(data.get("integrity")),
            approval_revoked=bool(data.get("approval_revoked", False)),
            production_available=bool(data.get("production_available", True)),
        )


@dataclass(frozen=True)
class Thresholds:
    """``[canary.thresholds]`` as plain numbers; ``None`` means not declared (the check is skipped)."""

    max_error_rate: float = 0.01
    max_p95_latency_ms: float = 300.0
    max_saturation: float = 0.8
    max_error_rate_increase: float | None = 0.005
    max_p95_latency_increase_ms: float | None = 50.0
    max_saturation_increase: float | None = None
    max_restarts: int = 1
    min_samples: int = 8
    max_auth_failures: int = 2
    """More 401/403 log lines than this in one sample is "repeated authorization failures"."""
    alpha: float = 0.05
    """Significance level of the Mann-Whitney U comparison."""
    min_effect_error_rate: float = 0.001
    """A significant difference smaller than this (median canary - median stable) is not a regression."""
    min_effect_latency_ms: float = 5.0
    """A significant p95 difference smaller than this many ms is not a regression."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Thresholds:
        """Build from a dict of declared values (unknown keys ignored, missing keys default)."""
        data = dict(data or {})
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})


# --------------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class GateVerdict:
    """The verdict of one acceptance gate, convertible to a stage-result ``Check``."""

    name: str
    status: Literal["pass", "fail", "waived"]
    reason: str
    failure: Literal["policy", "technical"] | None = None
    evidence: list[dict[str, str]] = field(default_factory=list)
    waiver: str | None = None

    @property
    def passed(self) -> bool:
        """True for pass or waived."""
        return self.status != "fail"

    def to_check(self) -> Check:
        """The stage-result ``Check`` for this verdict."""
        return Check(
            name=self.name,
            status=CheckStatus(self.status),
            reason=self.reason,
            failure=FailureKind(self.failure) if self.failure and self.status == "fail" else None,
            evidence=[Evidence(**e) for e in self.evidence],  # type: ignore[arg-type]
            waiver=self.waiver,
        )


def _pass(name: str, reason: str, evidence: list[dict[str, str]] | None = None) -> GateVerdict:
    return GateVerdict(name, "pass", reason, None, evidence or [])


def _fail(
    name: str, reason: str, *, technical: bool = False, evidence: list[dict[str, str]] | None = None
) -> GateVerdict:
    return GateVerdict(name, "fail", reason, "technical" if technical else "policy", evidence or [])


def apply_waivers(verdicts: Iterable[GateVerdict], waivers: Mapping[str, str]) -> list[GateVerdict]:
    """Turn failed verdicts covered by a waiver (gate name -> waiver event id) into ``waived``."""
    out: list[GateVerdict] = []
    for v in verdicts:
        if v.status == "fail" and v.name in waivers:
            out.append(
                GateVerdict(v.name, "waived", f"{v.reason} (waived)", v.failure, v.evidence, waivers[v.name])
            )
        else:
            out.append(v)
    return out


# --------------------------------------------------------------------------------------------------
# one sample


def _metric_gate(
    name: str,
    label: str,
    canary: Metric,
    stable: Metric,
    ceiling: float,
    max_increase: float | None,
    unit: str = "",
) -> GateVerdict:
    if not canary.usable:
        return _fail(
            name, f"{METRICS_UNAVAILABLE}: canary {label}: {canary.reason or 'no value'}", technical=True
        )
    assert canary.value is not None
    if canary.value > ceiling:
        return _fail(
            name, f"canary {label} {canary.value:g}{unit} above the declared ceiling {ceiling:g}{unit}"
        )
    if max_increase is not None:
        if not stable.usable:
            return _fail(
                name,
                f"{METRICS_UNAVAILABLE}: stable {label} for the relative comparison: "
                f"{stable.reason or 'no value'}",
                technical=True,
            )
        assert stable.value is not None
        delta = canary.value - stable.value
        if delta > max_increase:
            return _fail(
                name,
                f"canary {label} {canary.value:g}{unit} regresses {delta:g}{unit} over stable "
                f"{stable.value:g}{unit} "
                f"(declared at most +{max_increase:g}{unit})",
            )
        return _pass(
            name,
            f"canary {label} {canary.value:g}{unit} (stable {stable.value:g}{unit}, ceiling "
            f"{ceiling:g}{unit})",
        )
    return _pass(name, f"canary {label} {canary.value:g}{unit} (ceiling {ceiling:g}{unit})")


def evaluate_sample(
    sample: CanarySample, thresholds: Thresholds, baseline: TrackMetrics | None = None
) -> list[GateVerdict]:
    """Gate verdicts for one sample; ``baseline`` defaults to the sample's stable metrics."""
    base = baseline or sample.stable
    out: list[GateVerdict] = []
    p = sample.pods
    if not p.available:
        out.append(_fail("canary_pods_ready", f"pod status unavailable: {p.reason}", technical=True))
    elif p.all_ready:
        out.append(_pass("canary_pods_ready", f"{p.ready}/{p.total} pods ready"))
    else:
        out.append(_fail("canary_pods_ready", f"{p.ready}/{p.total} pods ready"))
    problems: list[str] = []
    if not p.available:
        out.append(_fail("canary_pods_stable", f"restart status unavailable: {p.reason}", technical=True))
    if p.available and p.crashloop:
        problems.append(f"{p.crashloop} pod(s) in CrashLoopBackOff")
    if p.restarts > thresholds.max_restarts:
        problems.append(f"{p.restarts} restarts (declared at most {thresholds.max_restarts})")
    if p.pending:
        why = ", ".join(p.pending_reasons) or "no reason reported"
        problems.append(f"{p.pending} pod(s) pending ({why})")
    if p.available:
        out.append(
            _fail("canary_pods_stable", "; ".join(problems))
            if problems
            else _pass("canary_pods_stable", f"no crash loops, {p.restarts} restart(s), nothing pending")
        )
    probes = [("inside", sample.health_inside), ("outside", sample.health_outside)]
    applicable = [(where, pr) for where, pr in probes if pr is not None]
    if not applicable:
        out.append(_fail("canary_health", "no health probe result (inside or outside)", technical=True))
    else:
        bad = [f"{where}: {pr.reason or pr.status}" for where, pr in applicable if not pr.ok]
        good = ", ".join(f"{where} HTTP {pr.status}" for where, pr in applicable if pr.ok)
        out.append(
            _fail("canary_health", "health failing " + "; ".join(bad))
            if bad
            else _pass("canary_health", good)
        )
    out.append(
        _metric_gate(
            "canary_error_rate",
            "error rate",
            sample.canary.error_rate,
            base.error_rate,
            thresholds.max_error_rate,
            thresholds.max_error_rate_increase,
        )
    )
    out.append(
        _metric_gate(
            "canary_latency",
            "p95 latency",
            sample.canary.p95_latency_ms,
            base.p95_latency_ms,
            thresholds.max_p95_latency_ms,
            thresholds.max_p95_latency_increase_ms,
            "ms",
        )
    )
    out.append(
        _metric_gate(
            "canary_saturation",
            "saturation",
            sample.canary.saturation,
            base.saturation,
            thresholds.max_saturation,
            thresholds.max_saturation_increase,
        )
    )
    r = sample.routing
    if not r.available:
        out.append(_fail("canary_routing", r.reason or "routing state unavailable", technical=True))
    else:
        out.append(_pass("canary_routing", r.reason) if r.ok else _fail("canary_routing", r.reason))
    if sample.integrity is None:
        out.append(
            _fail(
                "canary_side_effects",
                "not evaluated: no [[integrity]] probe declared, so nothing shows the canary free of "
                "schema, storage or queue side effects; declare one or record a stage 2 waiver for "
                "canary_side_effects with the reason",
            )
        )
    elif sample.integrity.ok:
        out.append(_pass("canary_side_effects", f"integrity check passed: {sample.integrity.reason}"))
    elif not sample.integrity.available:
        out.append(
            _fail(
                "canary_side_effects",
                f"integrity probes could not be answered: {sample.integrity.reason}",
                technical=True,
            )
        )
    else:
        out.append(_fail("canary_side_effects", f"integrity check failing: {sample.integrity.reason}"))
    out.append(_logs_verdict([sample.logs], thresholds))
    return out


def _logs_verdict(scans: Sequence[LogScan], thresholds: Thresholds) -> GateVerdict:
    name = "canary_logs_clean"
    unread = [s.reason for s in scans if not s.read_ok]
    kinds: dict[str, int] = {}
    for s in scans:
        for k, n in s.secret_kinds.items():
            kinds[k] = kinds.get(k, 0) + n
    if kinds:
        summary = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        return _fail(name, f"secret leakage in pod logs: {summary} (text not recorded)")
    repeated = [s.auth_failures for s in scans if s.auth_failures > thresholds.max_auth_failures]
    if repeated:
        return _fail(
            name, f"repeated authorization failures in pod logs: {max(repeated)} 401/403 lines in one sample"
        )
    if unread:
        return _fail(name, f"pod logs unavailable: {unread[-1]}", technical=True)
    total_auth = sum(s.auth_failures for s in scans)
    return _pass(name, f"no secrets in {sum(s.lines for s in scans)} log lines; {total_auth} 401/403 line(s)")


# --------------------------------------------------------------------------------------------------
# the window


def compare_distributions(
    canary: Sequence[float],
    stable: Sequence[float],
    *,
    min_samples: int,
    alpha: float,
    min_effect: float = 0.0,
) -> tuple[bool, str]:
    """Mann-Whitney U, one-sided: is canary stochastically greater than stable? ``(ok, reason)``.

    Fails closed when either side has fewer than ``min_samples`` data points. Identical
    distributions (all ties) give p = 1 and pass. A significant difference whose median shift is
    at most ``min_effect`` is reported but passes (statistically real, practically negligible).
    """
    if len(canary) < min_samples or len(stable) < min_samples:
        return False, (
            f"too few data points for the statistical comparison: canary {len(canary)}, stable "
            f"{len(stable)}, "
            f"need {min_samples}"
        )
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]  # heavy; only when a window is evaluated

    if len(set(canary) | set(stable)) == 1:
        return True, f"canary and stable identical over {len(canary)} samples (p=1)"
    result = mannwhitneyu(list(canary), list(stable), alternative="greater")
    p_value = float(result.pvalue)
    if math.isnan(p_value):
        return False, "statistical comparison undefined (p is NaN)"
    shift = _median(canary) - _median(stable)
    if p_value < alpha and shift > min_effect:
        return False, (
            f"canary significantly greater than stable (Mann-Whitney U={float(result.statistic):g}, "
            f"p={p_value:.4g} < {alpha:g}, median shift {shift:.4g})"
        )
    if p_value < alpha:
        return True, f"significant but negligible shift {shift:.4g} <= {min_effect:g} (p={p_value:.4g})"
    return (
        True,
        (
            f"no significant regression (Mann-Whitney U={float(result.statistic):g}, p={p_value:.4g}, alpha "
            f"{alpha:g})"
        ),
    )


@dataclass(frozen=True)
class RollbackReadiness:
    """What is known about rollback before the canary: target and how it was proven."""

    target_known: bool
    target: str = ""
    tested: bool = False
    command: str = ""


def rollback_verdict(info: RollbackReadiness) -> GateVerdict:
    """``rollback_ready``: tested before, or one documented command, and a known previous-stable target."""
    if not info.target_known:
        return _fail("rollback_ready", "rollback target unknown")
    single = (
        bool(info.command.strip())
        and "\n" not in info.command.strip()
        and "&&" not in info.command
        and ";" not in info.command
    )
    if info.tested:
        return _pass("rollback_ready", f"rollback tested before; target {info.target}")
    if single:
        return _pass(
            "rollback_ready", f"single documented command `{info.command.strip()}`; target {info.target}"
        )
    return _fail("rollback_ready", "rollback neither tested before nor a single documented command")


def evaluate_window(
    samples: Sequence[CanarySample],
    thresholds: Thresholds,
    *,
    expected_samples: int | None = None,
    rollback: RollbackReadiness | None = None,
    waivers: Mapping[str, str] | None = None,
) -> list[GateVerdict]:
    """The canary acceptance gates over every sample of the window, in ``GATE_NAMES`` order.

    A gate passes only when it passed in every sample (pods ready the whole window, health every
    time, metrics within threshold every time, routing as declared every time); the metric gates
    also compare the window means; ``canary_statistical_comparison`` runs Mann-Whitney U on p95
    latency and error rate and fails closed below ``min_samples``. Fewer samples than
    ``expected_samples`` fails ``canary_pods_ready`` (the window was not observed). Waivers
    (gate name -> waiver event id) turn a failed gate into ``waived``.
    """
    if not samples:
        verdicts = [
            _fail(name, "no samples collected in the observation window", technical=True)
            for name in GATE_NAMES
        ]
        if rollback is not None:
            verdicts[-1] = rollback_verdict(rollback)
        return apply_waivers(verdicts, waivers or {})
    per_sample = [evaluate_sample(s, thresholds) for s in samples]
    by_gate: dict[str, list[tuple[CanarySample, GateVerdict]]] = {}
    for s, verdicts in zip(samples, per_sample):
        for v in verdicts:
            by_gate.setdefault(v.name, []).append((s, v))
    out: list[GateVerdict] = []
    n = len(samples)
    for name in GATE_NAMES:
        if name == "canary_statistical_comparison":
            out.append(_statistical(samples, thresholds))
            continue
        if name == "rollback_ready":
            out.append(
                rollback_verdict(rollback) if rollback is not None else _fail(name, "rollback target unknown")
            )
            continue
        if name == "canary_logs_clean":
            out.append(_logs_verdict([s.logs for s in samples], thresholds))
            continue
        pairs = by_gate[name]
        failed = [(s, v) for s, v in pairs if v.status == "fail"]
        if name == "canary_pods_stable" and not failed:
            first, last = samples[0].pods, samples[-1].pods
            if last.restarts - first.restarts > thresholds.max_restarts:
                failed = [
                    (samples[-1], _fail(name, f"{last.restarts - first.restarts} restarts during the window"))
                ]
        if failed:
            s, v = failed[0]
            technical = all(fv.failure == "technical" for _, fv in failed)
            out.append(
                GateVerdict(
                    name,
                    "fail",
                    f"{v.reason} (sample {s.index}; failed in {len(failed)}/{n} samples)",
                    "technical" if technical else "policy",
                )
            )
            continue
        if name == "canary_pods_ready" and expected_samples is not None and n < expected_samples:
            out.append(
                _fail(name, f"window not fully observed: {n}/{expected_samples} samples", technical=True)
            )
            continue
        out.append(_window_pass(name, samples, pairs))
    return apply_waivers(out, waivers or {})


def _window_pass(
    name: str, samples: Sequence[CanarySample], pairs: list[tuple[CanarySample, GateVerdict]]
) -> GateVerdict:
    n = len(samples)
    if name == "canary_error_rate":
        return _pass(
            name,
            f"mean canary error rate {_mean(s.canary.error_rate for s in samples):.4g} "
            f"vs stable {_mean(s.stable.error_rate for s in samples):.4g} over {n} samples",
        )
    if name == "canary_latency":
        return _pass(
            name,
            f"mean canary p95 {_mean(s.canary.p95_latency_ms for s in samples):.4g}ms "
            f"vs stable {_mean(s.stable.p95_latency_ms for s in samples):.4g}ms over {n} samples",
        )
    if name == "canary_saturation":
        return _pass(
            name, f"mean canary saturation {_mean(s.canary.saturation for s in samples):.4g} over {n} samples"
        )
    if name == "canary_pods_ready":
        return _pass(
            name, f"pods ready in all {n} samples ({samples[-1].pods.ready}/{samples[-1].pods.total})"
        )
    return _pass(name, f"{pairs[-1][1].reason} (all {n} samples)")


def _mean(metrics: Iterable[Metric]) -> float:
    values = [m.value for m in metrics if m.usable and m.value is not None]
    return sum(values) / len(values) if values else float("nan")


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _statistical(samples: Sequence[CanarySample], thresholds: Thresholds) -> GateVerdict:
    name = "canary_statistical_comparison"
    reasons: list[str] = []
    comparisons = (
        ("p95 latency", "p95_latency_ms", thresholds.min_effect_latency_ms),
        ("error rate", "error_rate", thresholds.min_effect_error_rate),
    )
    for label, attr, effect in comparisons:
        c: list[Metric] = [getattr(s.canary, attr) for s in samples]
        st: list[Metric] = [getattr(s.stable, attr) for s in samples]
        if any(not m.usable for m in c) or any(not m.usable for m in st):
            return _fail(name, f"{METRICS_UNAVAILABLE}: {label} missing in some samples", technical=True)
        ok, why = compare_distributions(
            [m.value for m in c if m.value is not None],
            [m.value for m in st if m.value is not None],
            min_samples=thresholds.min_samples,
            alpha=thresholds.alpha,
            min_effect=effect,
        )
        if not ok:
            too_few = why.startswith("too few")
            return _fail(name, f"{label}: {why}", technical=too_few)
        reasons.append(f"{label}: {why}")
    return _pass(name, "; ".join(reasons))


# --------------------------------------------------------------------------------------------------
# immediate rollback


def immediate_rollback_reason(sample: CanarySample, thresholds: Thresholds) -> str | None:
    """The spec's "rollback must be immediate" conditions for one sample, or ``None``.

    availability degraded (stable production degraded, canary crash-looping, canary unhealthy from
    outside, or canary errors above the absolute ceiling); traffic escaped the declared blast
    radius; repeated authorization or secret-handling errors; data integrity at risk; approval
    revoked during the observation window.
    """
    if sample.approval_revoked:
        return "approval revoked during the observation window"
    if sample.routing.escaped:
        return f"canary traffic escaped the declared blast radius: {sample.routing.reason}"
    if sample.integrity is not None and sample.integrity.available and not sample.integrity.ok:
        return f"data integrity at risk: {sample.integrity.reason}"
    if sample.logs.secrets_found:
        kinds = ", ".join(sorted(sample.logs.secret_kinds))
        return f"secret-handling errors: secret material in pod logs ({kinds})"
    if sample.logs.auth_failures > thresholds.max_auth_failures:
        return f"repeated authorization failures: {sample.logs.auth_failures} 401/403 log lines"
    if not sample.production_available:
        return "production availability degraded: stable error rate above the declared ceiling"
    if sample.pods.crashloop:
        return f"production availability degraded: {sample.pods.crashloop} canary pod(s) crash-looping"
    er = sample.canary.error_rate
    if er.usable and er.value is not None and er.value > thresholds.max_error_rate:
        return (
            f"production availability degraded: canary error rate {er.value:g} above the declared ceiling "
            f"{thresholds.max_error_rate:g}"
        )
    if sample.health_outside is not None and not sample.health_outside.ok:
        return (
            f"production availability degraded: health from outside failing ({sample.health_outside.reason})"
        )
    return None


# --------------------------------------------------------------------------------------------------
# logs


_AUTH_RE = re.compile(
    r"(\b(?:HTTP|status|code)[ /=:]*(?:401|403)\b|\b(?:401|403)\s+(?:Unauthori[sz]ed|Forbidden)\b|"
    r"\bunauthori[sz]ed\b|\bforbidden\b|permission denied|access denied)",
    re.IGNORECASE,
)


def count_auth_failures(text: str) -> int:
    """Log lines that report an authorization failure (401/403, unauthorized, forbidden)."""
    return sum(1 for line in text.splitlines() if _AUTH_RE.search(line))


def scan_logs(text: str) -> LogScan:
    """Scan pod-log text: secret kinds with counts (``domain.redaction.find_secrets``) and 401/403
    lines. The text itself is never part of the result."""
    from railiance_ledger.domain.redaction import find_secrets

    kinds: dict[str, int] = {}
    for finding in find_secrets(text):
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    return LogScan(
        read_ok=True,
        secret_kinds=kinds,
        auth_failures=count_auth_failures(text),
        lines=len(text.splitlines()),
    )


# --------------------------------------------------------------------------------------------------
# undeclared references


_SVC_HOST_RE = re.compile(
    r"(?:^|[/@:])([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?\b"
)
_VAULT_SECRET_PREFIX = "vault.hashicorp.com/agent-inject-secret-"
_POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


def _pod_spec(doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(pod metadata, pod spec) of a workload object."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return doc.get("metadata") or {}, spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    tpl = spec.get("template") or {}
    return tpl.get("metadata") or {}, tpl.get("spec") or {}


def references(docs: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Secrets, config maps, OpenBao paths and in-cluster service hosts the pods refer to."""
    refs: dict[str, set[str]] = {"secret": set(), "configmap": set(), "openbao": set(), "service": set()}
    for doc in docs:
        if not isinstance(doc, Mapping) or doc.get("kind") not in _POD_KINDS:
            continue
        meta, pod = _pod_spec(doc)
        for key, value in (meta.get("annotations") or {}).items():
            if str(key).startswith(_VAULT_SECRET_PREFIX):
                refs["openbao"].add(str(value))
        for ips in pod.get("imagePullSecrets") or []:
            if ips.get("name"):
                refs["secret"].add(ips["name"])
        for vol in pod.get("volumes") or []:
            if (vol.get("secret") or {}).get("secretName"):
                refs["secret"].add(vol["secret"]["secretName"])
            if (vol.get("configMap") or {}).get("name"):
                refs["configmap"].add(vol["configMap"]["name"])
            for src in (vol.get("projected") or {}).get("sources") or []:
                if (src.get("secret") or {}).get("name"):
                    refs["secret"].add(src["secret"]["name"])
                if (src.get("configMap") or {}).get("name"):
                    refs["configmap"].add(src["configMap"]["name"])
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for env in container.get("env") or []:
                vf = env.get("valueFrom") or {}
                if (vf.get("secretKeyRef") or {}).get("name"):
                    refs["secret"].add(vf["secretKeyRef"]["name"])
                if (vf.get("configMapKeyRef") or {}).get("name"):
                    refs["configmap"].add(vf["configMapKeyRef"]["name"])
                value = env.get("value")
                if isinstance(value, str):
                    for m in _SVC_HOST_RE.finditer(value):
                        refs["service"].add(f"{m.group(1)}.{m.group(3)}")
            for ef in container.get("envFrom") or []:
                if (ef.get("secretRef") or {}).get("name"):
                    refs["secret"].add(ef["secretRef"]["name"])
                if (ef.get("configMapRef") or {}).get("name"):
                    refs["configmap"].add(ef["configMapRef"]["name"])
    return refs


def undeclared_references(
    rendered: Iterable[Mapping[str, Any]],
    *,
    secrets: Iterable[Mapping[str, Any]] = (),
    dependencies: Iterable[Mapping[str, Any]] = (),
    extra_secret_names: Iterable[str] = (),
) -> list[str]:
    """Secrets, config maps, OpenBao paths and services the rendered pods need but nobody declared.

    ``secrets`` and ``dependencies`` are the declaration's ``[[secrets]]``/``[[dependencies]]``
    entries as dicts (``name``, ``kind``, ``health_url``). Objects rendered by the chart itself
    (ConfigMaps, Services) count as declared; Secrets must be declared even when rendered (Stage 1
    refuses plaintext ones). Each entry reads ``"<kind> <name>"``; an empty list means all declared.
    """
    docs = [d for d in rendered if isinstance(d, Mapping)]
    rendered_cm = {(d.get("metadata") or {}).get("name") for d in docs if d.get("kind") == "ConfigMap"}
    rendered_svc = {(d.get("metadata") or {}).get("name") for d in docs if d.get("kind") == "Service"}
    declared_secrets = {str(s.get("name")) for s in secrets} | set(extra_secret_names)
    dep_names: set[str] = set()
    for dep in dependencies:
        dep_names.add(str(dep.get("name")))
        m = _SVC_HOST_RE.search(str(dep.get("health_url") or ""))
        if m:
            dep_names.add(f"{m.group(1)}.{m.group(3)}")
            dep_names.add(m.group(1))
    refs = references(docs)
    out: list[str] = []
    out += [f"secret {n}" for n in sorted(refs["secret"] - declared_secrets)]
    out += [f"openbao {n}" for n in sorted(refs["openbao"] - declared_secrets)]
    out += [f"configmap {n}" for n in sorted(refs["configmap"] - {c for c in rendered_cm if c})]
    for host in sorted(refs["service"]):
        name = host.split(".", 1)[0]
        if host in dep_names or name in dep_names or name in rendered_svc:
            continue
        out.append(f"dependency {host}")
    return out
