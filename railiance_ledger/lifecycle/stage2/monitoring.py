"""Stage 2 precheck ``monitoring_available``: "monitoring and log queries are available for the canary
release", proven rather than assumed.

- Metrics: the canary's selector (the declared ``prometheus_selector`` plus ``track="canary"``)
  returns series; before the canary exists it cannot, so the stable's selector must (the canary's
  differs from it only by the track label, so the same query finds the canary once it runs). No
  series for either, or Prometheus not answering, fails closed.
- Logs, by the declared ``log_source``: ``kubernetes-pod-logs`` reads a running pod's log through the
  API server (the canary namespace's, else the stable's); ``file`` reads the declared ``log_query``
  path (relative to ``railiance/``); ``loki`` has no reader in this version and fails closed, naming
  the sources that work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from railiance_ledger.domain.stage_result import Check, Evidence
from railiance_ledger.errors import AdapterError
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.stage2.context import CanaryContext, join_selector, strip_braces

if TYPE_CHECKING:
    from railiance_ledger.ports import KubePort, MetricsPort

GATE = "monitoring_available"


def _series(metrics: MetricsPort, selector: str) -> int:
    """How many series ``{selector}`` matches now (0 when none)."""
    answer = metrics.instant(query=f"count({{{selector}}})")
    return int(sum(s.value for s in answer)) if answer else 0


def check_monitoring(ctx: CanaryContext, kube: KubePort, metrics: MetricsPort) -> Check:
    obs = ctx.decl.observability
    base = strip_braces(obs.prometheus_selector)
    canary = join_selector(base, f'{obs.track_label}="canary"')
    stable = join_selector(base, f'{obs.track_label}="stable"')
    try:
        n_canary = _series(metrics, canary)
        n_stable = 0 if n_canary else _series(metrics, stable)
    except AdapterError as exc:
        return make_check(GATE, False, f"metrics unavailable: {exc}", technical=True)
    if not (n_canary or n_stable):
        return make_check(
            GATE,
            False,
            f"Prometheus has no series for {{{canary}}} nor for the stable {{{stable}}}: the canary could "
            "not be watched; check [observability] prometheus_selector and track_label, and that "
            "Prometheus scrapes the workload",
            technical=True,
        )
    if n_canary:
        metrics_text = f"{n_canary} series for the canary {{{canary}}}"
    else:
        metrics_text = (
            f"{n_stable} series for the stable {{{stable}}} (the canary's selector differs only by "
            f"{obs.track_label})"
        )
    evidence = [Evidence(kind="query", ref=f"{{{canary}}}", detail=metrics_text)]
    logs_ok, logs_text = _logs(ctx, kube)
    evidence.append(Evidence(kind="summary", ref=f"log-source:{obs.log_source}", detail=logs_text))
    if not logs_ok:
        return make_check(GATE, False, f"{metrics_text}; but {logs_text}", technical=True, evidence=evidence)
    return make_check(GATE, True, f"{metrics_text}; {logs_text}", evidence=evidence)


def _logs(ctx: CanaryContext, kube: KubePort) -> tuple[bool, str]:
    obs = ctx.decl.observability
    if obs.log_source == "loki":
        return False, (
            "the loki log source has no reader in this version, so canary logs could not be read; "
            "declare log_source = kubernetes-pod-logs or file"
        )
    if obs.log_source == "file":
        if not obs.log_query:
            return False, "log_source = file needs log_query (the log file's path)"
        try:
            path = ctx.decl.resolve(obs.log_query)
            with path.open("rb") as fh:
                fh.read(1)
        except (OSError, ValueError) as exc:
            return False, f"log file {obs.log_query} not readable: {type(exc).__name__}"
        return True, f"log file {obs.log_query} readable"
    # Pod-log reads are proven on a running pod: the canary namespace's, else (an isolated canary
    # namespace is empty before the deploy) the stable namespace's.
    namespaces = list(dict.fromkeys([ctx.namespace, ctx.stable_namespace]))
    found = [(ns, p) for ns in namespaces for p in kube.list(api_version="v1", kind="Pod", namespace=ns)[:1]]
    if not found:
        return False, f"no pod in {' or '.join(namespaces)} to prove pod-log reads work"
    ns, pod = found[0]
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = f"{ns}/{pod['metadata']['name']}"
    kube.pod_logs(
        namespace=ns,
        selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        tail_lines=1,
        max_pods=1,
    )
    return True, f"pod logs readable ({name})"
