"""State Hub: post non-secret progress notes (approvals, waivers, exceptions, stage evidence).

The spec asks for State Hub notes at several points ("State Hub progress note with non-secret
evidence", "Approval must be recorded as a non-secret State Hub note", emergency exceptions
"recorded in State Hub"). This adapter presents exactly one call, ``post_note``, through an
injected ``httpx.Client``:

- every text it sends (title, body, evidence, workload, kind) passes ``domain.redaction.redact_value``
  first, so a secret pasted into a reason never leaves the process;
- connection failures, timeouts and 5xx answers are retried with bounded exponential backoff
  (``attempts`` in total, 3 by default);
- every failure is translated into the ``AdapterError`` hierarchy naming system ``statehub``, the
  operation ``post_note`` and the URL, with the number of attempts made (``error.attempts``).

Wire format: ``POST <base_url>/notes`` with JSON
``{"workload", "kind", "title", "body", "evidence": [{"kind", "ref", "detail"}, ...]}``; the answer is
JSON ``{"id": "<note id>"}`` (2xx). Anything else is a protocol error.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from railiance_ledger.domain.redaction import redact, redact_value
from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
)
from railiance_ledger.ports import StateHubPort

NotePoster = StateHubPort
"""Old name of :class:`railiance_ledger.ports.StateHubPort` (kept for importers outside the ports' owner)."""

__all__ = ["SYSTEM", "NotePoster", "StateHub"]

SYSTEM = "statehub"
"""The system name every State Hub error carries."""


class StateHub:
    """A State Hub reached over HTTP through an injected ``httpx.Client``."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        *,
        attempts: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        if not base_url:
            raise ValueError("State Hub base_url must not be empty")
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.attempts = max(1, int(attempts))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout

    @property
    def notes_url(self) -> str:
        """The endpoint notes are posted to (``<base_url>/notes``)."""
        return f"{self.base_url}/notes"

    def post_note(
        self, *, workload: str, kind: str, title: str, body: str, evidence: list[dict[str, Any]]
    ) -> str:
        """POST one redacted note and return the id State Hub assigned.

        Connection errors, timeouts and 5xx answers are retried (``attempts`` in total, sleeping
        ``backoff`` seconds and doubling up to ``max_backoff``); 4xx answers and malformed JSON are
        not retried. Raises ``AdapterUnavailable``, ``AdapterTimeout``, ``AdapterAuthError``,
        ``AdapterNotFound`` or ``AdapterProtocolError`` naming ``statehub``, ``post_note`` and the URL.
        """
        document = redact_value(
            {
                "workload": workload,
                "kind": kind,
                "title": title,
                "body": body,
                "evidence": [dict(e) for e in evidence],
            }
        )
        url = self.notes_url
        address = redact(url)
        delay = self.backoff
        last: AdapterError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.client.post(url, json=document, timeout=self.timeout)
            except httpx.TimeoutException as exc:
                last = _error(AdapterTimeout, f"timed out after {self.timeout:g}s", address, attempt, exc)
            except httpx.TransportError as exc:
                last = _error(AdapterUnavailable, _transport_reason(exc), address, attempt, exc)
            else:
                status = response.status_code
                if status >= 500:
                    last = _error(AdapterUnavailable, f"HTTP {status}", address, attempt, None)
                elif status in (401, 403):
                    raise _error(
                        AdapterAuthError,
                        f"HTTP {status}: credentials refused",
                        address,
                        attempt,
                        None,
                        hint="check the State Hub access configured for this operator",
                    )
                elif status == 404:
                    raise _error(
                        AdapterNotFound,
                        "HTTP 404: no notes endpoint",
                        address,
                        attempt,
                        None,
                        hint="check RAILIANCE_STATEHUB_URL (notes are posted to <url>/notes)",
                    )
                elif not 200 <= status < 300:
                    raise _error(AdapterProtocolError, f"HTTP {status}: note refused", address, attempt, None)
                else:
                    return _note_id(response, address, attempt)
            if attempt < self.attempts:
                time.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
        assert last is not None
        raise last

    def list_notes(self) -> list[dict[str, Any]]:
        """GET ``<base_url>/notes``: every note State Hub recorded (the witness of ``ledger verify``).

        One attempt; ``AdapterUnavailable``/``AdapterTimeout`` when State Hub does not answer,
        ``AdapterProtocolError`` when the answer is not a JSON list of notes.
        """
        url = self.notes_url
        address = redact(url)
        try:
            response = self.client.get(url, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise AdapterTimeout(
                f"timed out after {self.timeout:g}s", system=SYSTEM, operation="list_notes", address=address
            ) from exc
        except httpx.TransportError as exc:
            raise AdapterUnavailable(
                _transport_reason(exc), system=SYSTEM, operation="list_notes", address=address
            ) from exc
        if response.status_code != 200:
            raise AdapterUnavailable(
                f"HTTP {response.status_code}", system=SYSTEM, operation="list_notes", address=address
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise AdapterProtocolError(
                "answer is not JSON", system=SYSTEM, operation="list_notes", address=address
            ) from exc
        if not isinstance(data, list):
            data = data.get("notes") if isinstance(data, dict) else None
        if not isinstance(data, list):
            raise AdapterProtocolError(
                "answer is not a list of notes", system=SYSTEM, operation="list_notes", address=address
            )
        return [n for n in data if isinstance(n, dict)]


def _note_id(response: httpx.Response, address: str, attempt: int) -> str:
    """The ``id`` of a 2xx JSON answer, or ``AdapterProtocolError``."""
    try:
        data = response.json()
    except ValueError as exc:
        raise _error(AdapterProtocolError, "answer is not JSON", address, attempt, exc) from exc
    note_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(note_id, bool) or not isinstance(note_id, (str, int)) or str(note_id).strip() == "":
        raise _error(
            AdapterProtocolError, 'answer has no note id (expected {"id": ...})', address, attempt, None
        )
    return str(note_id)


def _transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc)
    if isinstance(exc, httpx.ConnectError):
        low = text.lower()
        if "refused" in low or "errno 111" in low:
            return "connection refused"
        return f"connection failed: {text}"
    return f"{type(exc).__name__}: {text}"


def _error(
    cls: type[AdapterError],
    message: str,
    address: str,
    attempt: int,
    cause: BaseException | None,
    *,
    hint: str = "",
) -> AdapterError:
    suffix = f" (after {attempt} attempt{'s' if attempt != 1 else ''})"
    err = cls(redact(message) + suffix, system=SYSTEM, operation="post_note", address=address, hint=hint)
    err.attempts = attempt  # type: ignore[attr-defined]
    if cause is not None:
        err.__cause__ = cause
    return err


if TYPE_CHECKING:
    _statehub_port: type[StateHubPort] = StateHub  # mypy: StateHub implements the State Hub port
