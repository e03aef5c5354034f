"""Operator names and reasons are checked by the services, so the Dagster launchpad (which does not
go through the CLI's click callbacks) gets the same refusal as the CLI: exit-2 ``InvalidInput``."""

from __future__ import annotations

import pytest

from railiance_ledger.domain.identity import Operator
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.approvals import require_identity, require_reason

RLO = "\u202e"


@pytest.mark.parametrize(
    "name",
    ["alice" + RLO + "eci", "bob\x00", "x" * 201, "carol\nmallory"],
    ids=["bidi", "nul", "too-long", "newline"],
)
def test_an_operator_name_from_any_entry_point_is_refused_when_not_plain_text(name: str) -> None:
    with pytest.raises(InvalidInput, match="operator name"):
        require_identity(Operator.given(name))
    with pytest.raises(InvalidInput, match="operator name"):
        require_identity(name)


def test_a_plain_operator_name_is_accepted() -> None:
    assert Operator("alice", True) == require_identity(Operator.given("alice"))


@pytest.mark.parametrize(
    "reason", ["x" * 2001, "ok" + RLO + "evil", "bell\x07"], ids=["long", "bidi", "ctrl"]
)
def test_a_reason_that_is_not_plain_text_is_refused(reason: str) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        require_reason(reason, what="a revocation")


def test_a_multi_line_reason_is_accepted_and_redacted() -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    got = require_reason(f"line one\nline two {token}", what="a revocation")
    assert got.startswith("line one\nline two ") and token not in got


@pytest.mark.parametrize(
    ("operator", "reason", "match"),
    [("alice" + RLO, "fine", "operator name"), ("alice", "y" * 2001, "reason")],
    ids=["bidi-operator", "long-reason"],
)
def test_a_waiver_checks_its_operator_and_reason_before_reading_anything(
    operator: str, reason: str, match: str
) -> None:
    from railiance_ledger.lifecycle.waivers import record_waiver

    # store and declaration are never reached: the refusal comes first, so nothing can be written
    with pytest.raises(InvalidInput, match=match):
        record_waiver(store=None, decl=None, gate="local_health", operator=operator, reason=reason)  # type: ignore[arg-type]
