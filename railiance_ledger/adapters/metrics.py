"""Prometheus adapter: instant and range queries, and the canary signals the gates compare.

Talks to the Prometheus HTTP API (``/api/v1/query``, ``/api/v1/query_range``) through an injected
``httpx.Client``; timeouts come from that client.

Metric naming convention
------------------------
Workloads (and our test apps, ``tests/harness/metrics_app.py``) export, with ``prometheus_client``:

``http_requests_total{track, code}``
    counter of served requests; ``code`` is the HTTP status (``200``, ``500``...). 5xx are errors.
``http_request_duration_seconds{track}``
    histogram of request latency in seconds (``_bucket``/``_sum``/``_count``).
``app_saturation_ratio{track}``
    gauge in ``[0, 1]``: how full the busiest resource is (worker pool, queue, CPU share).

``track`` is ``stable`` or ``canary`` (the declaration's ``track_label``); Prometheus adds ``job``
(the declaration's ``prometheus_selector``) and ``instance``. A *selector* is the inside of a label
matcher list, with or without braces: ``job="hello-web",track="canary"``.

Queries (``W`` is the window, e.g. ``1m``; ``S`` the selector)::

    error rate   (sum(rate(http_requests_total{S,code=~"5.."}[W])) or vector(0))
                   / sum(rate(http_requests_total{S}[W]))
    p95 (ms)     histogram_quantile(0.95, sum by (le)
                   (rate(http_request_duration_seconds_bucket{S}[W]))) * 1000
    saturation   max(avg_over_time(app_saturation_ratio{S}[W]))

Fail closed
-----------
``instant``/``range`` and the ``*_samples`` helpers raise typed ``AdapterError``s. The gate signals
(``error_rate``, ``p95_latency_ms``, ``saturation``) never raise for a technical failure: they
return ``MetricValue(available=False, reason="metrics unavailable: ...")`` when Prometheus is down,
slow, answers an error or garbage, or has no data (empty result, NaN, infinity) for the selector.
A gate must treat ``available=False`` as a failed check with that reason, never as a pass.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
)
from railiance_ledger.ports import MetricsPort, MetricValue, Sample, Series, Timestamp

__all__ = [
    "ERROR_RATE_QUERY",
    "P95_LATENCY_MS_QUERY",
    "SATURATION_QUERY",
    "MetricValue",
    "PrometheusMetrics",
    "Sample",
    "Series",
    "error_rate_query",
    "p95_latency_ms_query",
    "saturation_query",
]

SYSTEM = "prometheus"

ERROR_RATE_QUERY = (
    '(sum(rate(http_requests_total{{{sel}code=~"5.."}}[{window}])) or vector(0))'
    " / sum(rate(http_requests_total{{{sel_only}}}[{window}]))"
)
P95_LATENCY_MS_QUERY = (
    "histogram_quantile(0.95, sum by (le) "
    "(rate(http_request_duration_seconds_bucket{{{sel_only}}}[{window}])))"
    " * 1000"
)
SATURATION_QUERY = "max(avg_over_time(app_saturation_ratio{{{sel_only}}}[{window}]))"


def _selector_parts(selector: str) -> tuple[str, str]:
    """``(inner + ",", inner)`` for a selector given with or without braces."""
    inner = selector.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    inner = inner.rstrip(",").strip()
    return (f"{inner}," if inner else ""), inner


def error_rate_query(*, selector: str, window: str = "1m") -> str:
    """The PromQL of ``error_rate`` for ``selector`` and ``window``."""
    sel, sel_only = _selector_parts(selector)
    return ERROR_RATE_QUERY.format(sel=sel, sel_only=sel_only, window=window)


def p95_latency_ms_query(*, selector: str, window: str = "1m") -> str:
    """The PromQL of ``p95_latency_ms`` for ``selector`` and ``window``."""
    _, sel_only = _selector_parts(selector)
    return P95_LATENCY_MS_QUERY.format(sel_only=sel_only, window=window)


def saturation_query(*, selector: str, window: str = "1m") -> str:
    """The PromQL of ``saturation`` for ``selector`` and ``window``."""
    _, sel_only = _selector_parts(selector)
    return SATURATION_QUERY.format(sel_only=sel_only, window=window)


def _unix(value: Timestamp) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: give an aware UTC datetime or unix seconds")
        return value.timestamp()
    return float(value)


def _step(value: float | str) -> str:
    return value if isinstance(value, str) else f"{float(value):g}"


class PrometheusMetrics:
    """``Metrics`` over the Prometheus HTTP API."""

    def __init__(self, client: httpx.Client, base_url: str) -> None:
        """Use ``client`` (its timeouts apply) to query Prometheus at ``base_url``."""
        self._client = client
        self._base = base_url.rstrip("/")

    # -- raw queries -------------------------------------------------------------------------------

    def instant(self, *, query: str) -> list[Sample]:
        """Evaluate ``query`` now; raise a typed ``AdapterError`` on any failure."""
        operation = f"instant query {query!r}"
        data = self._get("/api/v1/query", {"query": query}, operation)
        result_type, result = data.get("resultType"), data.get("result")
        try:
            if result_type == "scalar":
                ts, raw = result  # type: ignore[misc]
                return [Sample(labels={}, value=float(raw), timestamp=float(ts))]
            if result_type != "vector" or not isinstance(result, list):
                raise TypeError(f"resultType {result_type!r}, expected vector")
            return [
                Sample(
                    labels=dict(item["metric"]),
                    value=float(item["value"][1]),
                    timestamp=float(item["value"][0]),
                )
                for item in result
            ]
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            self._protocol(f"unexpected result shape ({exc})", operation, "/api/v1/query", exc)

    def range(self, *, query: str, start: Timestamp, end: Timestamp, step: float | str) -> list[Series]:
        """Evaluate ``query`` over ``[start, end]`` every ``step`` (seconds or ``"15s"``); raise on
        failure."""
        operation = f"range query {query!r}"
        params = {
            "query": query,
            "start": f"{_unix(start):.3f}",
            "end": f"{_unix(end):.3f}",
            "step": _step(step),
        }
        data = self._get("/api/v1/query_range", params, operation)
        result = data.get("result")
        try:
            if data.get("resultType") != "matrix" or not isinstance(result, list):
                raise TypeError(f"resultType {data.get('resultType')!r}, expected matrix")
            return [
                Series(
                    labels=dict(item["metric"]), points=[(float(ts), float(v)) for ts, v in item["values"]]
                )
                for item in result
            ]
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            self._protocol(f"unexpected result shape ({exc})", operation, "/api/v1/query_range", exc)

    # -- gate signals ------------------------------------------------------------------------------

    def error_rate(self, *, selector: str, window: str = "1m") -> MetricValue:
        """Fraction (0..1) of responses with a 5xx code over ``window``; unavailable without traffic."""
        return self._value(error_rate_query(selector=selector, window=window))

    def p95_latency_ms(self, *, selector: str, window: str = "1m") -> MetricValue:
        """95th percentile latency in milliseconds over ``window`` (histogram interpolation)."""
        return self._value(p95_latency_ms_query(selector=selector, window=window))

    def saturation(self, *, selector: str, window: str = "1m") -> MetricValue:
        """Mean ``app_saturation_ratio`` over ``window`` of the busiest matching instance (0..1)."""
        return self._value(saturation_query(selector=selector, window=window))

    # -- samples for statistical comparison --------------------------------------------------------

    def error_rate_samples(
        self, *, selector: str, start: Timestamp, end: Timestamp, step: float | str = 15.0, window: str = "1m"
    ) -> list[float]:
        """Error-rate values over time (NaN points, i.e. no traffic, dropped), e.g. for Mann-Whitney U."""
        return self.samples(
            query=error_rate_query(selector=selector, window=window), start=start, end=end, step=step
        )

    def p95_latency_ms_samples(
        self, *, selector: str, start: Timestamp, end: Timestamp, step: float | str = 15.0, window: str = "1m"
    ) -> list[float]:
        """p95 latency (ms) values over time, non-finite points dropped."""
        return self.samples(
            query=p95_latency_ms_query(selector=selector, window=window), start=start, end=end, step=step
        )

    def saturation_samples(
        self, *, selector: str, start: Timestamp, end: Timestamp, step: float | str = 15.0, window: str = "1m"
    ) -> list[float]:
        """Saturation values over time, non-finite points dropped."""
        return self.samples(
            query=saturation_query(selector=selector, window=window), start=start, end=end, step=step
        )

    def samples(self, *, query: str, start: Timestamp, end: Timestamp, step: float | str) -> list[float]:
        """Finite values of every series of a range query, in time order per series; raise on failure."""
        return [
            value
            for series in self.range(query=query, start=start, end=end, step=step)
            for value in series.values
            if math.isfinite(value)
        ]

    # -- internals -----------------------------------------------------------------------------------

    def _value(self, query: str) -> MetricValue:
        try:
            samples = self.instant(query=query)
        except AdapterError as exc:
            return MetricValue.unavailable(str(exc), query=query)
        if not samples:
            return MetricValue.unavailable("no data for this selector and window", query=query)
        values = [s.value for s in samples]
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) != len(values):
            bad = next(v for v in values if not math.isfinite(v))
            why = (
                "NaN (no traffic in the window?)"
                if math.isnan(bad)
                else f"{bad} (beyond the largest bucket?)"
            )
            return MetricValue.unavailable(f"query returned {why}", query=query)
        return MetricValue.of(max(finite), query=query)

    def _get(self, path: str, params: dict[str, str], operation: str) -> dict[str, Any]:
        url = self._base + path
        try:
            response = self._client.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise AdapterTimeout(
                f"no answer in time ({type(exc).__name__})",
                system=SYSTEM,
                operation=operation,
                address=url,
                hint="Prometheus is slow or hung",
            ) from exc
        except httpx.ConnectError as exc:
            raise AdapterUnavailable(
                f"cannot connect ({exc})",
                system=SYSTEM,
                operation=operation,
                address=url,
                hint="is Prometheus running at this address?",
            ) from exc
        except httpx.HTTPError as exc:
            raise AdapterUnavailable(
                f"{type(exc).__name__}: {exc}", system=SYSTEM, operation=operation, address=url
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            self._raise_status(response, body, operation, url)
        data = body.get("data")
        if not isinstance(data, dict):
            self._protocol("answer without a 'data' object", operation, path, None)
        return data

    def _raise_status(self, response: httpx.Response, body: Any, operation: str, url: str) -> NoReturn:
        status = response.status_code
        error_type = body.get("errorType", "") if isinstance(body, dict) else ""
        error_text = body.get("error", "") if isinstance(body, dict) else response.text[:200].strip()
        text = (
            f"HTTP {status}"
            + (f" {error_type}" if error_type else "")
            + (f": {error_text}" if error_text else "")
        )
        error: type[AdapterError]
        if error_type == "timeout":
            error = AdapterTimeout
        elif status in (401, 403):
            error = AdapterAuthError
        elif status == 404:
            error = AdapterNotFound
        elif status >= 500 or status == 429:
            error = AdapterUnavailable
        elif status == 200 and body is None:
            text = f"HTTP 200 with a body that is not JSON: {response.text[:80]!r}"
            error = AdapterProtocolError
        else:
            error = AdapterProtocolError
        raise error(text, system=SYSTEM, operation=operation, address=url)

    def _protocol(self, message: str, operation: str, path: str, exc: Exception | None) -> NoReturn:
        raise AdapterProtocolError(
            message, system=SYSTEM, operation=operation, address=self._base + path
        ) from exc


if TYPE_CHECKING:
    _metrics_port: type[MetricsPort] = (
        PrometheusMetrics  # mypy: PrometheusMetrics implements the metrics port
    )
