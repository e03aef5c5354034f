"""Stage 3's ``readiness_answered`` precheck (issue 12 item 3): a production-critical workload with
an unanswered readiness question does not cut over (nothing changes in the cluster), naming the
question and what is missing; a Stage 3 waiver naming that question (``readiness:<id>``) lets it
through as ``waived``; the gate takes no blanket waiver. Real control plane, helm and registry."""

from __future__ import annotations

import pytest

from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.waivers import record_waiver
from tests.fixtures.stage3 import NS, Stage3Env
from tests.test_stage3_promote import check, critical_through_stage2, digest, failed, make_critical

QUESTIONS = ("data_protection", "rollback_verification")


def _database_without_readiness_answers(env: Stage3Env) -> None:
    """A database (stateful by its category) that declares neither how its data is protected nor how a
    rollback is verified without losing state: two readiness answers missing, every gate else fine."""
    make_critical(env)
    env.sub(r"^category = .*$", 'category = "database"')
    env.commit("hello-web is a database now")


def test_unanswered_readiness_question_blocks_the_cut_over(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _database_without_readiness_answers(env)
    v1 = critical_through_stage2(env, "v1.0.0")
    env.approve(v1, "bob")

    out = env.promote(v1)

    assert (1, ["readiness_answered"]) == (out.exit_code, failed(out.document))
    reason = check(out.document, "readiness_answered")["reason"]
    assert all(q in reason for q in QUESTIONS) and "[readiness].data_protection" in reason, reason
    assert "Stage 2 preparation" in reason
    assert env.live_image() == env.stable0  # nothing cut over
    assert 1 == len(env.helm.history(release="hello-web", namespace=NS))


def test_a_waiver_naming_the_question_lets_the_cut_over_through(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _database_without_readiness_answers(env)
    v1 = critical_through_stage2(env, "v1.0.0")
    env.approve(v1, "bob")
    with pytest.raises(InvalidInput, match="not a readiness question"):
        record_waiver(
            store=env.store,
            decl=env.decl(),
            gate="readiness:nope",
            operator="carol",
            reason="x",
            candidate=digest(v1),
            stage=3,
        )
    for question in QUESTIONS:
        out = env.promote(v1)  # refused while any question is neither answered nor waived
        reason = check(out.document, "readiness_answered")["reason"]
        assert (1, True) == (out.exit_code, question in reason), reason
        record_waiver(
            store=env.store,
            decl=env.decl(),
            gate=f"readiness:{question}",
            operator="carol",
            reason="answered by the platform team's restore drill on 2026-11-28 (ticket OPS-7)",
            candidate=digest(v1),
            stage=3,
            statehub=env.statehub,
        )
    out = env.promote(v1)

    assert 0 == out.exit_code, failed(out.document)
    c = check(out.document, "readiness_answered")
    assert "waived" == c["status"] and all(q in c["reason"] for q in QUESTIONS), c
    assert env.live_image().endswith(digest(v1))
