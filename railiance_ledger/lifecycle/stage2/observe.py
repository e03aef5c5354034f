"""Stage 2 observation: one sample per call (metrics, pods, logs, outside probe) until the window ends."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.errors import AdapterError, InvalidInput
from railiance_ledger.lifecycle.candidates import parse_candidate_image
from railiance_ledger.lifecycle.cluster.probes import outside_probe, status_of
from railiance_ledger.lifecycle.cluster.routing import read_routing
from railiance_ledger.lifecycle.stage2.acceptance import finish, rollback_and_fail
from railiance_ledger.lifecycle.stage2.canary import CanaryDeployment, open_deployment
from railiance_ledger.lifecycle.stage2.context import (
    CanaryContext,
    StageOutcome,
    canary_thresholds,
    candidate_of,
    join_selector,
    make_context,
    strip_braces,
)
from railiance_ledger.lifecycle.stage2.integrity import probe_integrity
from railiance_ledger.ports import SYSTEM_CLOCK

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, MetricsPort, StateHubPort


def _metric(value: Any) -> dc.Metric:
    if value is None:
        return dc.Metric(None, False, dc.METRICS_UNAVAILABLE)
    v = getattr(value, "value", None)
    ok = bool(getattr(value, "available", False))
    reason = str(getattr(value, "reason", "") or "")
    if ok and (v is None or not math.isfinite(float(v))):
        ok, reason = False, "no finite value"
    return dc.Metric(
        float(v) if v is not None else None, ok, redact(reason), str(getattr(value, "query", "") or "")
    )


def _track(metrics: MetricsPort, selector: str, window: str) -> dc.TrackMetrics:
    out: dict[str, dc.Metric] = {}
    for name in ("error_rate", "p95_latency_ms", "saturation"):
        try:
            out[name] = _metric(getattr(metrics, name)(selector=selector, window=window))
        except AdapterError as exc:
            out[name] = dc.Metric(None, False, f"{dc.METRICS_UNAVAILABLE}: {exc.reason}")
    return dc.TrackMetrics(**out)


def _scan_pod_logs(kube: KubePort, namespace: str, selector: str) -> dc.LogScan:
    """Scan the canary pods' recent logs; only kinds and counts are kept, never the text."""
    kinds: dict[str, int] = {}
    auth = lines = 0
    try:
        by_pod = kube.pod_logs(namespace=namespace, selector=selector, tail_lines=500)
    except AdapterError as exc:
        return dc.LogScan(read_ok=False, reason=redact(exc.reason))
    for text in by_pod.values():
        scan = dc.scan_logs(text)
        for k, n in scan.secret_kinds.items():
            kinds[k] = kinds.get(k, 0) + n
        auth += scan.auth_failures
        lines += scan.lines
    return dc.LogScan(read_ok=True, secret_kinds=kinds, auth_failures=auth, lines=lines)


def _collect(
    *,
    index: int,
    at: datetime,
    elapsed: float,
    decl: Declaration,
    dep: CanaryDeployment,
    kube: KubePort,
    metrics: MetricsPort,
    http: httpx.Client,
    thresholds: dc.Thresholds,
    history: Sequence[RecordedEvent],
    digest: str,
    metrics_window: str,
    ingress_url: str | None = None,
) -> dc.CanarySample:
    spec = dep.spec
    try:
        summary = kube.pod_summary(namespace=dep.namespace, selector=dep.selector)
        pod_state = dc.PodState(
            total=summary.total,
            ready=summary.ready,
            restarts=summary.restarts_max,
            crashloop=summary.crashlooping,
            pending=summary.pending,
            pending_reasons=sorted(
                {p.waiting_reason for p in summary.pods if p.phase == "Pending" and p.waiting_reason}
            ),
            reasons=sorted({p.waiting_reason for p in summary.pods if p.waiting_reason}),
        )
    except AdapterError as exc:
        pod_state = dc.PodState(available=False, reason=redact(exc.reason))
    key = decl.key_health
    inside: dc.Probe | None
    try:
        answer = kube.service_proxy_get(
            namespace=dep.namespace, service=spec.canary_service, port=spec.port, path=key.path
        )
        code = status_of(answer)
        inside = dc.Probe(
            code == key.expect_status, code, f"HTTP {code}", f"service/{spec.canary_service}{key.path}"
        )
    except AdapterError as exc:
        inside = dc.Probe(False, None, redact(exc.reason), f"service/{spec.canary_service}{key.path}")
    outside: dc.Probe | None = None
    if spec.form in (dc.CanaryForm.WEIGHTED, dc.CanaryForm.HEADER, dc.CanaryForm.PATH) and spec.host:
        outside = outside_probe(http, spec, key.path, key.expect_status, ingress_url)
    obs = decl.observability
    base = strip_braces(obs.prometheus_selector)
    canary_selector = join_selector(base, f'{obs.track_label}="canary"')
    canary_m = _track(metrics, canary_selector, metrics_window)
    stable_m = _track(metrics, join_selector(base, f'{obs.track_label}="stable"'), metrics_window)
    try:
        observed = read_routing(kube, spec)
        ok, reason = dc.routing_matches(spec, observed)
        routing = dc.RoutingState(ok, redact(reason), (not ok) and reason.startswith(dc.MORE_TRAFFIC))
    except AdapterError as exc:
        routing = dc.RoutingState(
            False, f"routing read-back failed: {redact(exc.reason)}", False, available=False
        )
    logs = _scan_pod_logs(kube, dep.namespace, dep.selector)
    revoked = CandidateState.from_events(history, digest).revoked_since(2, dep.started.seq)
    er = stable_m.error_rate
    prod_ok = not (er.usable and er.value is not None and er.value > thresholds.max_error_rate)
    return dc.CanarySample(
        index=index,
        at=format_timestamp(at),
        elapsed_seconds=round(elapsed, 3),
        pods=pod_state,
        health_inside=inside,
        health_outside=outside,
        canary=canary_m,
        stable=stable_m,
        routing=routing,
        logs=logs,
        integrity=probe_integrity(decl, dep, kube, metrics, canary_selector),
        approval_revoked=revoked,
        production_available=prod_ok,
    )


def observe_canary(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    metrics: MetricsPort,
    http: httpx.Client,
    helm: HelmPort,
    statehub: StateHubPort | None = None,
    image: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = SYSTEM_CLOCK.now,
    on_progress: Callable[[int, int, dc.CanarySample], None] | None = None,
    max_samples: int | None = None,
    metrics_window: str | None = None,
    ingress_url: str | None = None,
) -> StageOutcome:
    """Observe the deployed canary over the window; accept, reject or roll it back.

    Resumable: samples already recorded since the last stage 2 ``stage.started`` of the candidate
    count toward the window. ``max_samples`` stops after that many new samples (exit 0, phase
    ``observing``) without completing the stage. ``on_progress(done, expected, sample)`` is called
    after every sample. ``helm`` (built by the composition root) uninstalls the canary on rollback.
    ``metrics_window`` is the PromQL range of each sample (default ``default_metrics_window``);
    ``ingress_url`` is where outside probes enter (default: ``routing.host`` as DNS resolves it).
    """
    digest: str | None = None
    if image:
        digest = parse_candidate_image(image)[1]
    workload = decl.workload.name
    dep = open_deployment(store.read_stream(workload), digest)
    if dep is None:
        raise InvalidInput(
            f"no Stage 2 canary of {workload} is being observed",
            hint="deploy one first with `railiance deploy --stage 2 APP_DIR`",
        )
    digest = str(dep.started.candidate)
    ctx = make_context(
        store, decl, str(dep.started.payload["release"]["image"]), operator=operator, clock=now
    )
    ctx.rollback_target = dep.started.payload.get("rollback_target")
    thresholds = canary_thresholds(decl)
    interval = float(decl.canary.sample_interval)
    window = float(decl.observation_window_seconds)
    expected = max(1, math.ceil(window / interval))
    mwin = metrics_window or default_metrics_window(interval)
    samples = list(dep.samples)
    resumed = len(samples)
    events: list[RecordedEvent] = []
    t0 = clock()
    taken = 0
    while len(samples) < expected:
        if max_samples is not None and taken >= max_samples:
            return StageOutcome(
                document=_progress_doc(ctx, dep, samples, expected, resumed),
                exit_code=0,
                events=events,
                samples=len(samples),
                expected_samples=expected,
            )
        tick = clock()
        history = store.read_stream(workload)
        ctx.history = history  # approvals revoked mid-window count in the final operator_approval check
        sample = _collect(
            index=len(samples),
            at=now(),
            elapsed=tick - t0 + (samples[-1].elapsed_seconds if samples else 0.0),
            decl=decl,
            dep=dep,
            kube=kube,
            metrics=metrics,
            http=http,
            thresholds=thresholds,
            history=history,
            digest=digest,
            metrics_window=mwin,
            ingress_url=ingress_url,
        )
        events += store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.CANARY_SAMPLE,
                    actor=operator,
                    candidate=digest,
                    stage=2,
                    payload=redact_value(sample.to_payload()),
                )
            ]
        )
        samples.append(sample)
        taken += 1
        if on_progress is not None:
            on_progress(len(samples), expected, sample)
        symptom = dc.immediate_rollback_reason(sample, thresholds)
        if symptom is not None:
            return rollback_and_fail(
                store=store,
                ctx=ctx,
                dep=dep,
                kube=kube,
                helm=helm,
                statehub=statehub,
                operator=operator,
                samples=samples,
                thresholds=thresholds,
                symptom=symptom,
                expected=expected,
                events=events,
                now=now,
            )
        if len(samples) < expected:
            sleep(max(0.0, interval - (clock() - tick)))
    return finish(
        store=store,
        ctx=ctx,
        dep=dep,
        kube=kube,
        helm=helm,
        statehub=statehub,
        operator=operator,
        samples=samples,
        thresholds=thresholds,
        expected=expected,
        events=events,
        now=now,
    )


def default_metrics_window(interval: float) -> str:
    """The PromQL range each sample reads: three sample intervals, at least 3 s.

    ``rate()`` needs two scrapes inside the range; three intervals keep that true when the scrape
    interval equals the sample interval, and a rise in errors still shows in the next sample.
    """
    return f"{max(math.ceil(interval * 3), 3)}s"


def _progress_doc(
    ctx: CanaryContext, dep: CanaryDeployment, samples: Sequence[dc.CanarySample], expected: int, resumed: int
) -> dict[str, Any]:
    return {
        "phase": "observing",
        "stage": 2,
        "workload": {"name": ctx.workload, "repo": ctx.decl.workload.repo},
        "candidate": candidate_of(ctx).model_dump(mode="json"),
        "samples": len(samples),
        "expected_samples": expected,
        "resumed_from": resumed,
        "status": "pass",
        "checks": [
            v.to_check().model_dump(mode="json")
            for v in dc.evaluate_sample(samples[-1], canary_thresholds(ctx.decl))
        ]
        if samples
        else [],
    }
