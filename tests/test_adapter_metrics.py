"""PrometheusMetrics against a real Prometheus (1 s scrape) scraping MetricsApp workloads.

``httpx.MockTransport`` appears only for answers a real Prometheus cannot be made to give (a 500, a
body that is not JSON, a result of the wrong shape, a query timeout report).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from railiance_ledger.adapters.metrics import MetricValue, PrometheusMetrics, error_rate_query
from railiance_ledger.errors import AdapterProtocolError, AdapterTimeout, AdapterUnavailable
from tests.fixtures.prometheus import CANARY_STATE, STABLE_STATE, MetricsAppFactory
from tests.harness import SilentServer, free_port
from tests.harness.metrics_app import MetricsApp
from tests.harness.prometheus import MetricsStack, start_prometheus

WINDOW = "5s"


def eventually(
    read: Callable[[], MetricValue], accept: Callable[[MetricValue], bool], *, timeout: float = 15.0
) -> MetricValue:
    """Re-read a metric until ``accept`` holds (Prometheus scrapes once a second); return the last read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def near(target: float, tolerance: float) -> Callable[[MetricValue], bool]:
    """Accept an available value within ``tolerance`` of ``target``."""
    return lambda v: v.available and v.value is not None and abs(v.value - target) <= tolerance


def above(threshold: float) -> Callable[[MetricValue], bool]:
    """Accept an available value above ``threshold``."""
    return lambda v: v.available and v.value is not None and v.value > threshold


# -- steady stable vs canary -----------------------------------------------------------------------


def test_error_rate_differs_between_stable_and_canary(
    metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics
) -> None:
    stable = eventually(
        lambda: prometheus_metrics.error_rate(selector=metrics_stack.selector("stable"), window=WINDOW),
        near(STABLE_STATE["error_rate"], 0.01),
    )
    canary = eventually(
        lambda: prometheus_metrics.error_rate(selector=metrics_stack.selector("canary"), window=WINDOW),
        near(CANARY_STATE["error_rate"], 0.03),
    )
    assert near(STABLE_STATE["error_rate"], 0.01)(stable), stable
    assert near(CANARY_STATE["error_rate"], 0.03)(canary), canary
    assert 'track="canary"' in canary.query and "" == canary.reason


def test_p95_latency_differs_between_stable_and_canary(
    metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics
) -> None:
    # 30 ms +/-20 % lands in the 25-50 ms buckets; 250 ms +/-20 % in 200-300 ms.
    stable = eventually(
        lambda: prometheus_metrics.p95_latency_ms(selector=metrics_stack.selector("stable"), window=WINDOW),
        lambda v: v.available,
    )
    canary = eventually(
        lambda: prometheus_metrics.p95_latency_ms(selector=metrics_stack.selector("canary"), window=WINDOW),
        lambda v: v.available,
    )
    assert stable.value is not None and 25.0 <= stable.value <= 50.0, stable
    assert canary.value is not None and 200.0 <= canary.value <= 300.0, canary


def test_saturation_differs_between_stable_and_canary(
    metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics
) -> None:
    stable = prometheus_metrics.saturation(selector=metrics_stack.selector("stable"), window=WINDOW)
    canary = prometheus_metrics.saturation(selector=metrics_stack.selector("canary"), window=WINDOW)
    assert MetricValue.of(STABLE_STATE["saturation"], query=stable.query) == stable
    assert MetricValue.of(CANARY_STATE["saturation"], query=canary.query) == canary


def test_selector_accepts_braces(metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics) -> None:
    value = prometheus_metrics.saturation(
        selector="{" + metrics_stack.selector("canary") + "}", window=WINDOW
    )
    assert CANARY_STATE["saturation"] == value.value


def test_instant_returns_labelled_samples(
    metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics
) -> None:
    samples = prometheus_metrics.instant(query='sum by (job, track) (http_requests_total{job="hello-web"})')
    assert {("hello-web", "canary"), ("hello-web", "stable")} == {
        (s.labels["job"], s.labels["track"]) for s in samples
    }
    assert all(s.value > 0 and s.timestamp > 0 for s in samples)


def test_error_rate_samples_feed_a_mann_whitney_comparison(
    metrics_stack: MetricsStack, prometheus_metrics: PrometheusMetrics
) -> None:
    stats = pytest.importorskip("scipy.stats")

    def read(track: str, start: float, end: float) -> list[float]:
        return prometheus_metrics.error_rate_samples(
            selector=metrics_stack.selector(track), start=start, end=end, step=1, window="3s"
        )

    deadline = time.monotonic() + 15
    while True:  # the session stack may be only seconds old: wait for enough history
        end = time.time()
        start = end - 8
        stable, canary = read("stable", start, end), read("canary", start, end)
        if min(len(stable), len(canary)) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    series = prometheus_metrics.range(
        query=error_rate_query(selector=metrics_stack.selector("canary"), window="3s"),
        start=start,
        end=end,
        step="1s",
    )
    assert len(stable) >= 6 and len(canary) >= 6
    assert canary == series[0].values
    assert stats.mannwhitneyu(canary, stable, alternative="greater").pvalue < 0.05


# -- runtime changes (own apps, own jobs) ------------------------------------------------------------


def test_error_rate_reflects_runtime_change_via_control_endpoint(
    metrics_app_factory: MetricsAppFactory, prometheus_metrics: PrometheusMetrics
) -> None:
    app = metrics_app_factory("canary", error_rate=0.0, latency_ms=10.0)
    selector = f'job="{app.job}",track="canary"'
    before = eventually(lambda: prometheus_metrics.error_rate(selector=selector, window="3s"), near(0.0, 0.0))
    assert MetricValue.of(0.0, query=before.query) == before
    response = httpx.post(app.url + "/control", json={"error_rate": 0.5}, timeout=5.0)
    assert 200 == response.status_code and 0.5 == response.json()["error_rate"]
    after = eventually(lambda: prometheus_metrics.error_rate(selector=selector, window="3s"), above(0.4))
    assert above(0.4)(after), after


def test_p95_latency_and_saturation_reflect_runtime_change(
    metrics_app_factory: MetricsAppFactory, prometheus_metrics: PrometheusMetrics
) -> None:
    app = metrics_app_factory("canary", latency_ms=10.0, saturation=0.1)
    selector = f'job="{app.job}",track="canary"'
    before = eventually(
        lambda: prometheus_metrics.p95_latency_ms(selector=selector, window="3s"), lambda v: v.available
    )
    assert before.value is not None and before.value <= 25.0, before
    app.set(latency_ms=600.0, saturation=0.95)
    after = eventually(
        lambda: prometheus_metrics.p95_latency_ms(selector=selector, window="3s"), above(450.0)
    )
    assert above(450.0)(after), after
    saturation = eventually(
        lambda: prometheus_metrics.saturation(selector=selector, window="1s"), near(0.95, 0.001)
    )
    assert near(0.95, 0.001)(saturation), saturation


def test_app_serves_as_http_workload_and_counts_its_requests() -> None:
    app = MetricsApp("stable", error_rate=1.0, latency_ms=1.0, rate=0.0).start()
    try:
        assert 500 == httpx.get(app.url + "/", timeout=5.0).status_code
        app.set(error_rate=0.0)
        assert 200 == httpx.get(app.url + "/", timeout=5.0).status_code
        assert "ok" == httpx.get(app.url + "/healthz", timeout=5.0).text.strip()
        assert 400 == httpx.post(app.url + "/control", json={"error_rate": 2}, timeout=5.0).status_code
        exposition = httpx.get(app.url + "/metrics", timeout=5.0).text
    finally:
        app.stop()
    assert 'http_requests_total{code="500",track="stable"} 1.0' in exposition
    assert 'http_requests_total{code="200",track="stable"} 1.0' in exposition
    assert 'http_request_duration_seconds_count{track="stable"} 2.0' in exposition


# -- metrics unavailable ----------------------------------------------------------------------------


def test_no_data_for_selector_is_unavailable(prometheus_metrics: PrometheusMetrics) -> None:
    for read in (
        prometheus_metrics.error_rate,
        prometheus_metrics.p95_latency_ms,
        prometheus_metrics.saturation,
    ):
        value = read(selector='job="no-such-job",track="canary"', window=WINDOW)
        assert (None, False) == (value.value, value.available)
        assert "metrics unavailable: no data" in value.reason
        assert 'job="no-such-job"' in value.query


def test_no_traffic_reads_as_nan_and_is_unavailable(
    metrics_app_factory: MetricsAppFactory, prometheus_metrics: PrometheusMetrics
) -> None:
    app = metrics_app_factory("canary", rate=0.0)
    selector = f'job="{app.job}"'
    value = eventually(
        lambda: prometheus_metrics.error_rate(selector=selector, window="3s"), lambda v: "NaN" in v.reason
    )
    assert (None, False) == (value.value, value.available)
    assert value.reason.startswith("metrics unavailable: query returned NaN"), value.reason


def test_invalid_query_is_a_protocol_error_and_unavailable(prometheus_metrics: PrometheusMetrics) -> None:
    with pytest.raises(AdapterProtocolError) as caught:
        prometheus_metrics.instant(query="sum(")
    assert "bad_data" in str(caught.value) and "/api/v1/query" in str(caught.value)
    value = prometheus_metrics.error_rate(selector='job="hello-web",track=~"(', window=WINDOW)
    assert not value.available and "bad_data" in value.reason


def test_stopped_prometheus_is_unavailable(tmp_path: Path) -> None:
    server = start_prometheus(tmp_path)
    with httpx.Client(timeout=2.0) as client:
        metrics = PrometheusMetrics(client, server.url)
        assert [1.0] == [s.value for s in metrics.instant(query="vector(1)")]
        server.stop()
        value = metrics.error_rate(selector='job="hello-web"')
        with pytest.raises(AdapterUnavailable) as caught:
            metrics.instant(query="vector(1)")
    assert (None, False) == (value.value, value.available)
    assert value.reason.startswith("metrics unavailable: prometheus instant query"), value.reason
    assert server.url in value.reason and "cannot connect" in value.reason
    assert server.url + "/api/v1/query" in str(caught.value)


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with httpx.Client(timeout=2.0) as client:
        value = PrometheusMetrics(client, url).p95_latency_ms(selector='job="hello-web"', window="1m")
    assert not value.available and url in value.reason


def test_prometheus_that_never_answers_times_out() -> None:
    with SilentServer() as silent, httpx.Client(timeout=0.3) as client:
        metrics = PrometheusMetrics(client, silent.url)
        with pytest.raises(AdapterTimeout) as caught:
            metrics.instant(query="up")
        value = metrics.saturation(selector='job="hello-web"')
    assert "instant query 'up'" in str(caught.value) and silent.url in str(caught.value)
    assert not value.available and "no answer in time" in value.reason


def mock_metrics(status: int, body: bytes) -> PrometheusMetrics:
    """The adapter over ``httpx.MockTransport``: only for answers a real Prometheus will not give."""
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    return PrometheusMetrics(httpx.Client(transport=transport), "http://prometheus.test")


@pytest.mark.parametrize(
    ("status", "body", "reason_part"),
    [
        (500, b"internal server error", "HTTP 500"),
        (503, b'{"status":"error","errorType":"unavailable","error":"TSDB not ready"}', "TSDB not ready"),
        (
            503,
            b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}',
            "timed out",
        ),
        (200, b"<html>not prometheus</html>", "not JSON"),
        (200, b'{"status":"success"}', "without a 'data' object"),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "expected vector"),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}',
            "unexpected result shape",
        ),
    ],
)
def test_bad_answers_are_unavailable_with_reason(status: int, body: bytes, reason_part: str) -> None:
    value = mock_metrics(status, body).error_rate(selector='job="hello-web",track="canary"')
    assert (None, False) == (value.value, value.available)
    assert value.reason.startswith("metrics unavailable: prometheus instant query"), value.reason
    assert reason_part in value.reason and "http://prometheus.test/api/v1/query" in value.reason


def test_query_timeout_report_raises_adapter_timeout() -> None:
    body = b'{"status":"error","errorType":"timeout","error":"query timed out"}'
    with pytest.raises(AdapterTimeout):
        mock_metrics(503, body).instant(query="up")
