"""Pure domain rules: digests, durations, the hash chain and the lifecycle rules at append time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref, partition_key, short_digest
from railiance_ledger.domain.durations import DurationFormatError, format_duration, parse_duration
from railiance_ledger.domain.events import GENESIS_HASH, EventKind, NewEvent, canonical_json, compute_hash
from railiance_ledger.domain.rules import RuleBroken, check_append
from railiance_ledger.domain.stage_result import Check, CheckStatus, overall_status

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def test_image_ref_pinned_by_digest_parses_with_registry_port_and_tag() -> None:
    ref = parse_image_ref(f"registry.local:5000/railiance/hello-web:v1.2.3@{D1}")
    assert ("registry.local:5000/railiance/hello-web", D1, "v1.2.3") == (ref.repository, ref.digest, ref.tag)
    assert f"registry.local:5000/railiance/hello-web@{D1}" == ref.pinned


@pytest.mark.parametrize(
    "bad",
    [
        "registry.local/hello-web:v1",  # tag only
        "registry.local/hello-web",  # nothing
        "registry.local/hello-web@sha256:abc",  # short digest
        "registry.local/hello-web@sha256:" + "A" * 64,  # uppercase
        "registry.local/hello-web@md5:" + "a" * 32,  # wrong algorithm
        "registry.local/hello-web@sha256:" + "g" * 64,  # not hex
    ],
)
def test_image_ref_refuses_tags_and_malformed_digests(bad: str) -> None:
    with pytest.raises(DigestFormatError):
        parse_image_ref(bad)


def test_partition_key_uses_first_twelve_hex_of_digest() -> None:
    assert "hello-web@aaaaaaaaaaaa" == partition_key("hello-web", D1)
    assert "bbbbbbbbbbbb" == short_digest(D2)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2h", 7200), (30, 30)]
)
def test_durations_parse_to_seconds(text: str | int, seconds: int) -> None:
    assert seconds == parse_duration(text)


@pytest.mark.parametrize("bad", ["", "15", "15 minutes", "m15", "1h1h", "0s", "-5m", "1.5h"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(DurationFormatError):
        parse_duration(bad)


def test_format_duration_round_trips() -> None:
    assert ["1h", "1h30m", "15m", "1m30s"] == [format_duration(s) for s in (3600, 5400, 900, 90)]


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_utf8() -> None:
    assert '{"a":1,"b":"é"}' == canonical_json({"b": "é", "a": 1})


def test_hash_covers_prev_hash_and_envelope() -> None:
    env = {"seq": 1, "kind": "candidate.registered", "payload": {"x": 1}}
    h = compute_hash(GENESIS_HASH, env)
    assert 64 == len(h)
    assert h != compute_hash("1" * 64, env)
    assert h != compute_hash(GENESIS_HASH, {**env, "payload": {"x": 2}})


@dataclass
class Ev:
    kind: str
    candidate: str | None
    stage: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def _new(
    kind: EventKind, digest: str | None, stage: int | None = None, payload: dict[str, Any] | None = None
) -> NewEvent:
    return NewEvent(
        stream="w", kind=kind, actor="alice", candidate=digest, stage=stage, payload=payload or {}
    )


def _result(digest: str, stage: int, status: str) -> dict[str, Any]:
    return {"candidate": {"digest": digest}, "stage": stage, "status": status}


REG1 = Ev("candidate.registered", D1)
REG2 = Ev("candidate.registered", D2)


def test_stage_events_need_a_registered_candidate() -> None:
    with pytest.raises(RuleBroken, match="not registered"):
        check_append([], _new(EventKind.STAGE_STARTED, D1, 1))


def test_stage2_refused_until_stage1_passed_for_same_digest() -> None:
    with pytest.raises(RuleBroken, match="stage 1"):
        check_append([REG1], _new(EventKind.STAGE_STARTED, D1, 2))
    passed = Ev("stage.completed", D1, 1, _result(D1, 1, "pass"))
    check_append([REG1, passed], _new(EventKind.STAGE_STARTED, D1, 2))


def test_stage1_pass_for_one_digest_never_satisfies_another() -> None:
    passed_d1 = Ev("stage.completed", D1, 1, _result(D1, 1, "pass"))
    with pytest.raises(RuleBroken, match="stage 1"):
        check_append([REG1, REG2, passed_d1], _new(EventKind.STAGE_STARTED, D2, 2))


def test_latest_stage_result_decides_so_a_later_failure_revokes_eligibility() -> None:
    hist = [
        REG1,
        Ev("stage.completed", D1, 1, _result(D1, 1, "pass")),
        Ev("stage.completed", D1, 1, _result(D1, 1, "fail")),
    ]
    with pytest.raises(RuleBroken):
        check_append(hist, _new(EventKind.STAGE_STARTED, D1, 2))


def test_emergency_exception_allows_skipping_a_stage() -> None:
    exc = Ev("exception.emergency", D1, None, {"skip_stage": 1})
    check_append([REG1, exc], _new(EventKind.STAGE_STARTED, D1, 2))


def test_stage3_needs_stage1_and_stage2() -> None:
    s1 = Ev("stage.completed", D1, 1, _result(D1, 1, "pass"))
    with pytest.raises(RuleBroken, match="stage 2"):
        check_append([REG1, s1], _new(EventKind.STAGE_STARTED, D1, 3))
    with pytest.raises(RuleBroken, match="stage 2"):
        check_append([REG1, s1], _new(EventKind.PROMOTION_COMPLETED, D1))


def test_stage_result_document_must_name_the_event_digest() -> None:
    with pytest.raises(RuleBroken, match="never stands for another"):
        check_append([REG1], _new(EventKind.STAGE_COMPLETED, D1, 1, _result(D2, 1, "pass")))


def test_overall_status_fails_closed_on_no_checks_and_any_failure() -> None:
    ok = Check(name="a", status=CheckStatus.PASS)
    waived = Check(name="b", status=CheckStatus.WAIVED)
    bad = Check(name="c", status=CheckStatus.FAIL, reason="x")
    assert ("fail", "pass", "fail") == (
        overall_status([]),
        overall_status([ok, waived]),
        overall_status([ok, bad]),
    )


S1_PASS = Ev("stage.completed", D1, 1, _result(D1, 1, "pass"))
S2_PASS = Ev("stage.completed", D1, 2, _result(D1, 2, "pass"))


def test_rollback_returns_candidate_to_stage1_so_earlier_passes_no_longer_count() -> None:
    rolled = Ev("rollback.completed", D1, 3, {"candidate_fate": "returned-to-stage1"})
    with pytest.raises(RuleBroken, match="stage 1"):
        check_append([REG1, S1_PASS, S2_PASS, rolled], _new(EventKind.STAGE_STARTED, D1, 2))
    again = Ev("stage.completed", D1, 1, _result(D1, 1, "pass"))
    check_append([REG1, S1_PASS, S2_PASS, rolled, again], _new(EventKind.STAGE_STARTED, D1, 2))


def test_stage2_canary_rollback_prose_disposition_also_returns_to_stage1() -> None:
    rolled = Ev("rollback.completed", D1, 2, {"candidate_disposition": "returned to Stage 1"})
    with pytest.raises(RuleBroken, match="stage 1"):
        check_append([REG1, S1_PASS, rolled], _new(EventKind.STAGE_STARTED, D1, 2))


@pytest.mark.parametrize("fate", ["blocked", "abandoned"])
def test_blocked_or_abandoned_candidate_may_never_progress(fate: str) -> None:
    rolled = Ev("rollback.completed", D1, 3, {"candidate_fate": fate})
    hist = [REG1, S1_PASS, S2_PASS, rolled]
    for new in (
        _new(EventKind.STAGE_STARTED, D1, 1),
        _new(EventKind.APPROVAL_GRANTED, D1, 3),
        _new(EventKind.STAGE_COMPLETED, D1, 1, _result(D1, 1, "pass")),
    ):
        with pytest.raises(RuleBroken, match=fate):
            check_append(hist, new)


def test_failing_results_are_always_recorded_even_out_of_order() -> None:
    """Evidence of a failure is never refused: a Stage 2 precheck failure lands without a Stage 1 pass."""
    check_append([REG1], _new(EventKind.STAGE_COMPLETED, D1, 2, _result(D1, 2, "fail")))
    blocked = Ev("rollback.completed", D1, 3, {"candidate_fate": "blocked"})
    check_append([REG1, blocked], _new(EventKind.STAGE_COMPLETED, D1, 3, _result(D1, 3, "fail")))
