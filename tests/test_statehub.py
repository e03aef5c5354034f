"""The State Hub adapter against a real local HTTP server: notes, retries, errors, redaction."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from railiance_ledger.adapters.statehub import StateHub
from railiance_ledger.errors import (
    AdapterAuthError,
    AdapterNotFound,
    AdapterProtocolError,
    AdapterTimeout,
    AdapterUnavailable,
)
from tests.fixtures.statehub import StateHubServer

SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
"""A GitHub-token-shaped secret that must never reach State Hub."""


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def hub_for(client: httpx.Client, url: str, **kw: float) -> StateHub:
    return StateHub(client, url, backoff=0.01, max_backoff=0.02, **kw)  # type: ignore[arg-type]


def post(hub: StateHub, body: str = "approved") -> str:
    return hub.post_note(
        workload="forge",
        kind="approval.granted",
        title="stage 3 approved",
        body=body,
        evidence=[{"kind": "digest", "ref": "sha256:" + "a" * 64, "detail": "candidate"}],
    )


def test_post_note_returns_the_id_and_the_server_records_the_note(
    statehub: StateHubServer, client: httpx.Client
) -> None:
    """A note posted to ``<url>/notes`` comes back with the id State Hub assigned, every field intact."""
    note_id = post(hub_for(client, statehub.url))

    assert "note-1" == note_id
    assert 1 == len(statehub.notes)
    note = statehub.notes[0]
    assert ("forge", "approval.granted", "stage 3 approved", "approved") == (
        note["workload"],
        note["kind"],
        note["title"],
        note["body"],
    )
    assert [{"kind": "digest", "ref": "sha256:" + "a" * 64, "detail": "candidate"}] == note["evidence"]


def test_post_note_retries_5xx_then_succeeds(statehub: StateHubServer, client: httpx.Client) -> None:
    """Two 503 answers are retried; the third attempt delivers the note."""
    statehub.fail_next(2, 503)

    note_id = post(hub_for(client, statehub.url))

    assert "note-1" == note_id
    assert 3 == statehub.attempts


@pytest.mark.parametrize("status", [500, 502, 503])
def test_post_note_gives_up_after_bounded_attempts_on_5xx(
    statehub: StateHubServer, client: httpx.Client, status: int
) -> None:
    """A State Hub answering 5xx every time is tried exactly ``attempts`` times, then reported."""
    statehub.fail_always(status)

    with pytest.raises(AdapterUnavailable) as info:
        post(hub_for(client, statehub.url))

    assert 3 == statehub.attempts
    assert 3 == info.value.attempts  # type: ignore[attr-defined]
    message = str(info.value)
    assert "statehub post_note failed" in message
    assert f"{statehub.url}/notes" in message
    assert f"HTTP {status}" in message
    assert [] == statehub.notes


def test_post_note_to_a_down_statehub_is_refused_after_retries(
    statehub: StateHubServer, client: httpx.Client
) -> None:
    """Connection refused is retried, then raised as AdapterUnavailable naming system, operation, URL."""
    statehub.down()

    with pytest.raises(AdapterUnavailable) as info:
        post(hub_for(client, statehub.url))

    assert ("statehub", "post_note", f"{statehub.url}/notes") == (
        info.value.system,
        info.value.operation,
        info.value.address,
    )
    assert "connection refused" in info.value.reason
    assert 3 == info.value.attempts  # type: ignore[attr-defined]


def test_post_note_times_out_as_adapter_timeout(statehub: StateHubServer, client: httpx.Client) -> None:
    """A State Hub slower than the timeout fails as AdapterTimeout after the bounded attempts."""
    statehub.slow(0.5)

    with pytest.raises(AdapterTimeout) as info:
        hub_for(client, statehub.url, timeout=0.1, attempts=2).post_note(
            workload="w",
            kind="k",
            title="t",
            body="b",
            evidence=[],
        )

    assert "timed out after 0.1s" in info.value.reason
    assert 2 == info.value.attempts  # type: ignore[attr-defined]


def test_post_note_malformed_answer_is_a_protocol_error_not_retried(
    statehub: StateHubServer, client: httpx.Client
) -> None:
    """A 200 answer that is not JSON is a protocol error at once: retrying would not fix it."""
    statehub.malformed()

    with pytest.raises(AdapterProtocolError) as info:
        post(hub_for(client, statehub.url))

    assert "not JSON" in info.value.reason
    assert 1 == statehub.attempts


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AdapterAuthError),
        (403, AdapterAuthError),
        (400, AdapterProtocolError),
        (409, AdapterProtocolError),
    ],
)
def test_post_note_4xx_is_translated_and_not_retried(
    statehub: StateHubServer, client: httpx.Client, status: int, error: type[Exception]
) -> None:
    """4xx answers fail at once with the matching AdapterError and a readable reason."""
    statehub.fail_next(1, status)

    with pytest.raises(error) as info:
        post(hub_for(client, statehub.url))

    assert f"HTTP {status}" in str(info.value)
    assert 1 == statehub.attempts


def test_post_note_wrong_base_url_is_not_found(statehub: StateHubServer, client: httpx.Client) -> None:
    """A base URL whose ``/notes`` does not exist fails as AdapterNotFound with a hint."""
    with pytest.raises(AdapterNotFound) as info:
        post(hub_for(client, statehub.url + "/nowhere"))

    assert "RAILIANCE_STATEHUB_URL" in str(info.value)


def test_post_note_redacts_every_text_before_sending(statehub: StateHubServer, client: httpx.Client) -> None:
    """A secret in the title, body or evidence never reaches the State Hub server; a marker does."""
    hub = hub_for(client, statehub.url)

    hub.post_note(
        workload="forge",
        kind="waiver.granted",
        title=f"token {SECRET}",
        body=f"reason: password=hunter2-{SECRET}",
        evidence=[{"kind": "summary", "ref": f"Authorization: Bearer {SECRET}", "detail": ""}],
    )

    raw = statehub.raw_text()
    assert SECRET not in raw
    assert "hunter2" not in raw
    assert "[REDACTED:" in statehub.notes[0]["body"]


def test_the_composition_root_builds_the_statehub_once_from_its_url_and_closes_it(
    statehub: StateHubServer,
) -> None:
    """``Environment.statehub()`` is the one State Hub builder: a client for RAILIANCE_STATEHUB_URL that
    posts there and is closed when the command ends; no URL means ``None`` (nothing configured)."""
    from railiance_ledger.lifecycle.environment import Environment

    with Environment.from_env({"RAILIANCE_STATEHUB_URL": f"  {statehub.url}  "}).statehub() as hub:
        assert hub is not None
        assert "note-1" == hub.post_note(workload="forge", kind="note", title="t", body="b", evidence=[])
        built = hub
    assert isinstance(built, StateHub) and built.client.is_closed
    assert 1 == len(statehub.notes)

    with Environment.from_env({"RAILIANCE_STATEHUB_URL": "  "}).statehub() as none:
        assert none is None
