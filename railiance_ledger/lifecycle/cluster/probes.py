"""Probes: declared checks (HTTP through the production URL, or a command), smoke runs, the
outside-in probe of the canary and the status of a probe answer.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from railiance_ledger.adapters.process import run_command
from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import (
    AdapterError,
)

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ports import KubePort


def status_of(answer: Any) -> int | None:
    if isinstance(answer, int):
        return answer
    if isinstance(answer, tuple) and answer:
        return int(answer[0])
    for attr in ("status_code", "status"):
        v = getattr(answer, attr, None)
        if isinstance(v, int):
            return v
    return None


def outside_probe(
    http: httpx.Client, spec: dc.RoutingSpec, path: str, expect: int, ingress_url: str | None = None
) -> dc.Probe:
    """GET the production URL the way operator traffic reaches the canary (header / path / weighted).

    ``ingress_url`` (``RAILIANCE_INGRESS_URL``) sends the request to that ingress address instead of
    ``routing.host`` from DNS, with ``Host: <routing.host>`` (as ``curl --resolve`` would).
    """
    scheme = "https" if spec.tls_secret else "http"
    headers: dict[str, str] = {}
    url_path = path
    if spec.form is dc.CanaryForm.HEADER:
        headers[spec.header] = spec.header_value
    elif spec.form is dc.CanaryForm.PATH:
        url_path = spec.path_prefix.rstrip("/") + path
    url = f"{scheme}://{spec.host}{url_path}"
    if ingress_url:
        url = ingress_url.rstrip("/") + url_path
        headers["Host"] = spec.host
    try:
        r = http.get(url, headers=headers, timeout=5.0)
        return dc.Probe(r.status_code == expect, r.status_code, f"HTTP {r.status_code}", url)
    except Exception as exc:  # noqa: BLE001 - httpx errors of any shape fail the probe
        return dc.Probe(False, None, redact(f"{type(exc).__name__}: {exc}"), url)


def run_smoke(decl: Declaration, kube: KubePort, http: httpx.Client, namespace: str) -> list[dict[str, Any]]:
    """Every declared ``[[smoke]]`` check through the production URL (else the stable service proxy),
    then every declared ``[[acceptance]]`` check again against production (``acceptance:<name>``): the
    checks that accepted the canary must hold for the promoted release too."""
    out: list[dict[str, Any]] = []
    for s in decl.smoke:
        if decl.routing.host:
            res = probe_url(http, decl, s.path, s.expect_status, retries=2)
        else:
            res = run_check(decl=decl, kube=kube, http=http, name=s.name, namespace=namespace)
        out.append({"name": s.name, "path": s.path, "expect_status": s.expect_status, **res})
    for a in decl.acceptance:
        res = run_check(decl=decl, kube=kube, http=http, name=a.name, namespace=namespace)
        out.append({"name": f"acceptance:{a.name}", "path": a.path, "expect_status": a.expect_status, **res})
    return out


def ready_pod_ips(kube: KubePort, namespace: str, selector: str) -> list[tuple[str, str]]:
    """``(pod name, pod IP)`` of every ready pod matching ``selector``."""
    out: list[tuple[str, str]] = []
    for pod in kube.list(api_version="v1", kind="Pod", namespace=namespace, label_selector=selector):
        status: dict[str, Any] = pod.get("status") or {}
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if ready and status.get("podIP"):
            out.append((str((pod.get("metadata") or {}).get("name", "?")), str(status["podIP"])))
    return out


def tcp_connect_all(
    pods: list[tuple[str, str]], port: int, timeout: float
) -> list[tuple[str, str, str | None]]:
    """Connect to ``port`` on each pod: ``(pod, ip, None)`` when it accepted, else the redacted error."""
    out: list[tuple[str, str, str | None]] = []
    for name, ip in pods:
        try:
            with socket.create_connection((ip, port), timeout=timeout):
                out.append((name, ip, None))
        except OSError as exc:
            out.append((name, ip, redact(f"{type(exc).__name__}: {exc}")))
    return out


def _tcp_check(
    kube: KubePort, name: str | None, namespace: str, service: str, port: int, timeout: float
) -> dict[str, Any]:
    """A ``tcp`` acceptance check against production: connect to ``port`` on every ready pod the
    stable Service selects (no ready pod, or any refusing, fails)."""
    target = f"service/{namespace}/{service} pods:{port}"
    svc = kube.get(api_version="v1", kind="Service", namespace=namespace, name=service)
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    if not selector:
        return {"check": name, "ok": False, "detail": f"service {service} selects no pods", "target": target}
    pods = ready_pod_ips(kube, namespace, ",".join(f"{k}={v}" for k, v in sorted(selector.items())))
    if not pods:
        return {"check": name, "ok": False, "detail": "no ready pod to connect to", "target": target}
    refused = [f"{pod} {ip}: {err}" for pod, ip, err in tcp_connect_all(pods, port, timeout) if err]
    if refused:
        return {
            "check": name,
            "ok": False,
            "detail": "tcp connect failed: " + "; ".join(refused),
            "target": target,
        }
    return {
        "check": name,
        "ok": True,
        "detail": f"tcp {port} accepted on {len(pods)} pod(s)",
        "target": target,
    }


def find_check(decl: Declaration, name: str | None) -> tuple[str, Any] | None:
    if not name:
        return None
    for kind, table in (("health", decl.health), ("smoke", decl.smoke), ("acceptance", decl.acceptance)):
        for item in table:
            if item.name == name:
                return kind, item
    return None


def run_check(
    *,
    decl: Declaration,
    kube: KubePort,
    http: httpx.Client,
    name: str | None,
    namespace: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """Run one declared check by name (the rollback verification); ``{"check", "ok", "detail", "target"}``.

    health checks go through the API server's service proxy to the stable service (inside the
    cluster); smoke and http acceptance checks go through the production ingress URL when a host is
    declared (outside), else through the service proxy; command acceptance checks run locally.
    """
    found = find_check(decl, name)
    if found is None:
        return {
            "check": name,
            "ok": False,
            "detail": "no rollback verification check declared",
            "target": None,
        }
    kind, item = found
    ns = namespace or decl.stages.production.namespace
    svc = service or decl.routing.service
    if kind == "acceptance" and item.kind == "command":
        try:
            res = run_command(argv=list(item.command), cwd=decl.railiance_dir, timeout=float(item.timeout))
        except AdapterError as exc:
            return {"check": name, "ok": False, "detail": redact(str(exc)), "target": "command"}
        return {"check": name, "ok": res.ok, "detail": f"exit {res.exit_code}", "target": "command"}
    if kind == "acceptance" and item.kind == "tcp":
        try:
            return _tcp_check(kube, name, ns, svc, int(item.port), float(item.timeout))
        except AdapterError as exc:
            return {"check": name, "ok": False, "detail": redact(exc.reason), "target": f"service/{ns}/{svc}"}
    path, expect = str(item.path), int(item.expect_status)
    retries = int(getattr(item, "retries", 2) or 0)
    if kind != "health" and decl.routing.host:
        return probe_url(http, decl, path, expect, retries=retries) | {"check": name}
    target = f"service/{ns}/{svc}:{decl.routing.port}{path}"
    detail = "not probed"
    for attempt in range(retries + 1):
        try:
            code, _body = kube.service_proxy_get(namespace=ns, service=svc, port=decl.routing.port, path=path)
            if code == expect:
                return {"check": name, "ok": True, "detail": f"HTTP {code}", "target": target}
            detail = f"HTTP {code}, expected {expect}"
        except AdapterError as exc:
            detail = redact(exc.reason)
        if attempt < retries:
            time.sleep(0.2)
    return {"check": name, "ok": False, "detail": detail, "target": target}


def probe_url(
    http: httpx.Client, decl: Declaration, path: str, expect: int, *, retries: int = 0
) -> dict[str, Any]:
    """GET ``path`` on the production URL (``https`` when a TLS secret is declared)."""
    scheme = "https" if decl.routing.tls_secret else "http"
    url = f"{scheme}://{decl.routing.host}{path}"
    detail = "not probed"
    for attempt in range(retries + 1):
        try:
            r = http.get(url, timeout=5.0)
            if r.status_code == expect:
                return {"ok": True, "detail": f"HTTP {r.status_code}", "target": url, "status": r.status_code}
            detail = f"HTTP {r.status_code}, expected {expect}"
        except Exception as exc:  # noqa: BLE001 - any transport failure fails the probe closed
            detail = redact(f"{type(exc).__name__}: {exc}")
        if attempt < retries:
            time.sleep(0.2)
    return {"ok": False, "detail": detail, "target": url, "status": None}
