"""Stage 2's declared data-integrity probes (``[[integrity]]``), evaluated every sample of the window.

The spec's "no unexpected schema, storage, or queue side effects" (``canary_side_effects``) and its
immediate-rollback trigger "data integrity is at risk" are judged from these probes:

- ``promql``: the query (``$SELECTOR`` replaced by the canary's selector, the observability selector
  plus ``track="canary"``) is evaluated in Prometheus; every returned value must be within ``max`` /
  ``min``. An empty answer, an error or a non-finite value fails the probe: a fact that could not be
  collected is never "fine" (it fails ``canary_side_effects`` at the end of the window; only an answer
  showing a breach is the immediate rollback "data integrity is at risk");
- ``http``: GET ``path`` on the canary Service through the API server's service proxy; the status
  must be ``expect_status``.

The probes of one sample are folded into one ``domain.canary.Probe`` (``None`` when none is declared,
which the domain judges "not evaluated" and fails unless waived).
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.redaction import redact
from railiance_ledger.errors import AdapterError

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration, Integrity
    from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment
    from railiance_ledger.ports import KubePort, MetricsPort

SELECTOR_TOKEN = "$SELECTOR"
"""Replaced in a ``promql`` probe's query by the canary's label selector."""


def probe_integrity(
    decl: Declaration, dep: CanaryDeployment, kube: KubePort, metrics: MetricsPort, canary_selector: str
) -> dc.Probe | None:
    """Every declared probe for one sample, folded: ok only when all are ok; ``None`` when none."""
    if not decl.integrity:
        return None
    results = [(p.name, *_one(p, dep, kube, metrics, canary_selector)) for p in decl.integrity]
    breached = [f"{name}: {why}" for name, verdict, why in results if verdict is _Verdict.BREACH]
    unknown = [f"{name}: {why}" for name, verdict, why in results if verdict is _Verdict.UNKNOWN]
    if breached:  # a breach shown by an answer: data integrity is at risk (an immediate rollback)
        return dc.Probe(False, None, redact("; ".join(breached + unknown)), "integrity")
    if unknown:  # fails closed, but nothing showed a breach
        return dc.Probe(False, None, redact("; ".join(unknown)), "integrity", available=False)
    return dc.Probe(True, None, redact("; ".join(f"{name}: {why}" for name, _v, why in results)), "integrity")


class _Verdict(Enum):
    OK = "ok"
    BREACH = "breach"
    UNKNOWN = "unknown"


def _one(
    p: Integrity, dep: CanaryDeployment, kube: KubePort, metrics: MetricsPort, canary_selector: str
) -> tuple[_Verdict, str]:
    if p.kind == "http":
        spec = dep.spec
        try:
            code, _ = kube.service_proxy_get(
                namespace=dep.namespace, service=spec.canary_service, port=spec.port, path=str(p.path)
            )
        except AdapterError as exc:
            return _Verdict.UNKNOWN, f"GET {p.path} on the canary could not be asked: {exc.reason}"
        if code == p.expect_status:
            return _Verdict.OK, f"GET {p.path} HTTP {code}"
        return _Verdict.BREACH, f"GET {p.path} answered HTTP {code}, expected {p.expect_status}"
    query = str(p.query).replace(SELECTOR_TOKEN, canary_selector)
    try:
        samples = metrics.instant(query=query)
    except AdapterError as exc:
        return _Verdict.UNKNOWN, f"query could not be answered: {exc.reason}"
    if not samples:
        return _Verdict.UNKNOWN, "query returned no series (nothing to judge: fail closed)"
    values = [s.value for s in samples]
    if not all(math.isfinite(v) for v in values):
        return _Verdict.UNKNOWN, "query returned a non-finite value"
    worst_high, worst_low = max(values), min(values)
    if p.max is not None and worst_high > p.max:
        return _Verdict.BREACH, f"value {worst_high:g} above the declared max {p.max:g}"
    if p.min is not None and worst_low < p.min:
        return _Verdict.BREACH, f"value {worst_low:g} below the declared min {p.min:g}"
    return _Verdict.OK, f"value {worst_high:g} within bounds"
