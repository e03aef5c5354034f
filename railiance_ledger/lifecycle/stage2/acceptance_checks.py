"""Stage 2's declared ``[[acceptance]]`` checks, run against the live canary at the end of the window.

Each declared check is the gate ``acceptance:<name>`` (waivable, like Stage 1's local checks):

- ``http``: GET ``path`` on the canary Service through the API server's service proxy (the same
  route the key health probe takes) and compare the status with ``expect_status``;
- ``tcp``: connect to ``port`` on every ready canary pod's IP (a forge's SSH, say); no ready pod, or
  any pod refusing, fails;
- ``command``: run ``command`` in ``railiance/`` with ``CANARY_NAMESPACE``, ``CANARY_SERVICE``,
  ``CANARY_PORT``, ``CANARY_SELECTOR`` and ``TRACK=canary`` in its environment; exit 0 passes. A secret
  the command prints fails the check; the output kept as evidence is redacted.

A check that could not be run (API server unreachable, command missing) fails closed as technical.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import TYPE_CHECKING, Any

from railiance_ledger.adapters.process import run_command
from railiance_ledger.domain.gates import ACCEPTANCE_PREFIX
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import Check, Evidence
from railiance_ledger.lifecycle.checks import judge, make_check
from railiance_ledger.lifecycle.stage1.context import local_env, seconds_of

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Acceptance
    from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment
    from railiance_ledger.lifecycle.stage2.context import CanaryContext
    from railiance_ledger.ports import KubePort

OUTPUT_TAIL_CHARS = 2048
"""The longest redacted output tail of a command acceptance check kept as evidence."""


def acceptance_gate(name: str) -> str:
    """The gate name of the declared acceptance check ``name``."""
    return f"{ACCEPTANCE_PREFIX}{name}"


def run_acceptance_checks(ctx: CanaryContext, dep: CanaryDeployment, kube: KubePort) -> list[Check]:
    """Every declared ``[[acceptance]]`` check against the live canary, in declaration order."""
    out: list[Check] = []
    for item in ctx.decl.acceptance:
        gate = acceptance_gate(item.name)
        out.append(judge(gate, partial(_run_one, ctx, dep, kube, item, gate)))
    return out


def not_run(ctx: CanaryContext, why: str) -> list[Check]:
    """The declared acceptance checks as failed "not run" checks (the canary is gone)."""
    return [make_check(acceptance_gate(a.name), False, f"not run: {why}") for a in ctx.decl.acceptance]


def _run_one(ctx: CanaryContext, dep: CanaryDeployment, kube: KubePort, item: Acceptance, gate: str) -> Check:
    timeout = seconds_of(item.timeout, 10.0)
    if item.kind == "http":
        return _http(dep, kube, item, gate, timeout)
    if item.kind == "tcp":
        return _tcp(dep, kube, item, gate, timeout)
    return _command(ctx, dep, item, gate, timeout)


def _http(dep: CanaryDeployment, kube: KubePort, item: Acceptance, gate: str, timeout: float) -> Check:
    spec = dep.spec
    path = str(item.path)
    target = f"service/{dep.namespace}/{spec.canary_service}:{spec.port}{path}"
    code, _body = kube.service_proxy_get(
        namespace=dep.namespace, service=spec.canary_service, port=spec.port, path=path, timeout=timeout
    )
    evidence = [Evidence(kind="http-status", ref=target, detail=f"HTTP {code}")]
    if code == int(item.expect_status):
        return make_check(gate, True, f"GET {path} on the canary answered HTTP {code}", evidence=evidence)
    return make_check(
        gate,
        False,
        f"GET {path} on the canary answered HTTP {code}, expected {item.expect_status}",
        evidence=evidence,
    )


def _ready_pod_ips(dep: CanaryDeployment, kube: KubePort) -> list[tuple[str, str]]:
    pods = kube.list(api_version="v1", kind="Pod", namespace=dep.namespace, label_selector=dep.selector)
    out: list[tuple[str, str]] = []
    for pod in pods:
        status: dict[str, Any] = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        ip = status.get("podIP")
        if ready and ip:
            out.append((str((pod.get("metadata") or {}).get("name", "?")), str(ip)))
    return out


def _tcp(dep: CanaryDeployment, kube: KubePort, item: Acceptance, gate: str, timeout: float) -> Check:
    port = int(item.port or 0)
    pods = _ready_pod_ips(dep, kube)
    if not pods:
        return make_check(gate, False, f"no ready canary pod to connect to on port {port}", technical=True)
    evidence: list[Evidence] = []
    refused: list[str] = []
    for name, ip in pods:
        try:
            with socket.create_connection((ip, port), timeout=timeout):
                evidence.append(
                    Evidence(kind="summary", ref=f"pod/{name}", detail=f"tcp {ip}:{port} connected")
                )
        except OSError as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")
            refused.append(f"pod/{name} {ip}:{port}: {reason}")
            evidence.append(Evidence(kind="summary", ref=f"pod/{name}", detail=f"tcp {ip}:{port}: {reason}"))
    if refused:
        return make_check(gate, False, "tcp connect failed: " + "; ".join(refused), evidence=evidence)
    return make_check(
        gate, True, f"tcp port {port} accepted on {len(pods)} ready canary pod(s)", evidence=evidence
    )


def _command(ctx: CanaryContext, dep: CanaryDeployment, item: Acceptance, gate: str, timeout: float) -> Check:
    spec = dep.spec
    env = local_env(
        {
            "TRACK": "canary",
            "CANARY_NAMESPACE": dep.namespace,
            "CANARY_SERVICE": str(spec.canary_service),
            "CANARY_PORT": str(spec.port),
            "CANARY_SELECTOR": dep.selector,
        }
    )
    res = run_command(
        argv=list(item.command or ()),
        cwd=ctx.decl.railiance_dir,
        timeout=timeout,
        env=env,
        tail_bytes=OUTPUT_TAIL_CHARS,
    )
    exit_text = "none (killed)" if res.timed_out else str(res.exit_code)
    evidence = [Evidence(kind="summary", ref=gate, detail=f"exit {exit_text} in {res.duration_s:.2f}s")]
    if res.output_tail:
        evidence.append(
            Evidence(kind="summary", ref=f"{gate} output tail (redacted)", detail=res.output_tail)
        )
    if res.secret_kinds:
        kinds = ", ".join(res.secret_kinds)
        return make_check(
            gate, False, f"the acceptance command printed secret(s) ({kinds}); it must not", evidence=evidence
        )
    if res.timed_out:
        return make_check(
            gate, False, f"timed out after {timeout:g}s and was killed", technical=True, evidence=evidence
        )
    if res.exit_code != 0:
        return make_check(
            gate, False, f"exited {res.exit_code} after {res.duration_s:.2f}s", evidence=evidence
        )
    return make_check(gate, True, f"exited 0 in {res.duration_s:.2f}s", evidence=evidence)
