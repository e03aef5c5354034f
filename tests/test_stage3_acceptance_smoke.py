"""The declared ``[[acceptance]]`` checks run again as part of the post-promotion smoke (issue 12
item 3): through the production URL after the cut-over; one failing there rolls the promotion back
automatically. Real control plane, helm and registry."""

from __future__ import annotations

from tests.fixtures.stage3 import Stage3Env
from tests.test_stage3_promote import check, failed


def _declare_registry_check(env: Stage3Env) -> None:
    env.append_toml('[[acceptance]]\nname = "registry"\nkind = "http"\npath = "/v2/"\nexpect_status = 200\n')


def test_acceptance_checks_are_part_of_the_post_promotion_smoke(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _declare_registry_check(env)
    v1 = env.through_stage2("v1.0.0")
    out = env.promote(v1)

    assert 0 == out.exit_code, failed(out.document)
    smoke = check(out.document, "post_promotion_smoke")
    assert "acceptance:registry" in smoke["reason"] and "/v2/" in smoke["reason"], smoke


def test_acceptance_check_failing_after_the_cut_over_rolls_back(stage3_env: Stage3Env) -> None:
    env = stage3_env
    _declare_registry_check(env)
    v1 = env.through_stage2("v1.0.0")
    env.app.statuses["/v2/"] = 503  # the registry API breaks once the candidate serves production
    out = env.promote(v1)

    assert (1, True) == (out.exit_code, out.rolled_back)
    smoke = check(out.document, "post_promotion_smoke")
    assert "fail" == smoke["status"] and "acceptance:registry" in smoke["reason"], smoke
    assert env.live_image() == env.stable0
