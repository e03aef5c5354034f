"""HTTP health probes: ask an endpoint, with a timeout and retries, and say what happened.

``HttpProbe.probe`` never raises for an HTTP outcome: refused connections, timeouts, 5xx and
unexpected statuses all come back as ``ProbeResult(ok=False, reason=...)``. The client is injected
so tests point it at real local servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from railiance_ledger.domain.redaction import redact_log


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one URL: the last status seen (``None`` when none was), whether it
    matched, how many attempts were made, why it failed, and the total elapsed milliseconds."""

    url: str
    status_code: int | None
    ok: bool
    attempts: int
    reason: str
    elapsed_ms: int

    @property
    def answered(self) -> bool:
        """True when the endpoint answered with an HTTP status (the failure, if any, is policy)."""
        return self.status_code is not None


MAX_RETRIES = 20
"""Retries beyond this are not honoured (the declaration refuses more; a caller passing 10**18 gets 20)."""
DEFAULT_DEADLINE_S = 300.0
"""The overall deadline of one check: every attempt and every pause together."""


class HttpProbe:
    """Probe HTTP endpoints through an injected ``httpx.Client``."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def probe(
        self,
        *,
        url: str,
        expect_status: int = 200,
        timeout: float = 2.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 2.0,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> ProbeResult:
        """GET ``url`` until it answers ``expect_status`` or ``1 + retries`` attempts are used.

        Bounded: at most ``1 + MAX_RETRIES`` attempts, and all of them (with their pauses) within
        ``deadline_s`` seconds; each attempt's timeout is cut to what is left of the deadline.
        Between attempts it sleeps ``backoff`` seconds, doubling up to ``max_backoff``. The result
        carries the last reason (``connection refused``, ``timed out after 2s``,
        ``HTTP 500, expected 200``); the reason text is redacted.
        """
        attempts_allowed = 1 + min(MAX_RETRIES, max(0, retries))
        started = time.monotonic()
        deadline = started + max(0.0, deadline_s)
        status: int | None = None
        reason = "not probed"
        delay = backoff
        attempt = 0
        for attempt in range(1, attempts_allowed + 1):
            status = None
            left = deadline - time.monotonic()
            if left <= 0:
                reason = f"{reason}; overall deadline of {deadline_s:g}s reached after {attempt - 1} attempts"
                attempt -= 1
                break
            try:
                response = self.client.get(url, timeout=min(timeout, left), follow_redirects=False)
                status = response.status_code
                if status == expect_status:
                    return ProbeResult(url, status, True, attempt, f"HTTP {status}", _ms(started))
                reason = f"HTTP {status}, expected {expect_status}"
            except httpx.ConnectTimeout:
                reason = f"connect timed out after {timeout:g}s"
            except httpx.TimeoutException:
                reason = f"timed out after {timeout:g}s"
            except httpx.ConnectError as exc:
                reason = (
                    "connection refused"
                    if "refused" in str(exc).lower() or "errno 111" in str(exc).lower()
                    else f"connection failed: {exc}"
                )
            except httpx.RemoteProtocolError as exc:
                reason = f"protocol error: {exc}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < attempts_allowed:
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(max_backoff, delay * 2)
        return ProbeResult(url, status, False, attempt, redact_log(reason), _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
