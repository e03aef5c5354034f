"""State Hub for exceptions and approvals (issue 12, item 4), on the real control plane, helm, registry and
the recording State Hub: a production-critical approval and an emergency exception are State Hub notes, and
the stage that relies on one is blocked while its note is not delivered (never posted, or State Hub down),
unless a ``statehub_note`` waiver of that stage is recorded; re-posting it once State Hub answers clears it.
"""

from __future__ import annotations

from typing import Any

from railiance_ledger.lifecycle.approvals import record_exception
from railiance_ledger.lifecycle.notes import repost_undelivered, undelivered_notes
from railiance_ledger.lifecycle.waivers import record_waiver
from tests.fixtures.signing import signed_approve, test_keys
from tests.fixtures.stage2 import CanaryEnv, check_named, deploy_env, not_passed, statehub_poster
from tests.fixtures.statehub import StateHubServer


def critical(env: CanaryEnv) -> None:
    """Production-critical hello-web with its 4 s window waived (bob)."""
    env.edit("# critical = true", "critical = true")
    record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="observation_window",
        operator="bob",
        reason="test window: seconds, not an hour",
        candidate=env.digest,
        stage=2,
    )


def test_an_approval_whose_note_was_not_delivered_blocks_stage2_until_reposted(
    canary_env: CanaryEnv, statehub: StateHubServer
) -> None:
    env = canary_env
    critical(env)
    hub = statehub_poster(statehub.url)
    statehub.down()
    grant = signed_approve(
        keys=test_keys(),
        store=env.store,
        decl=env.decl(),
        operator="bob",
        stage=2,
        image=env.image,
        statehub=hub,
    )
    assert any("NOT delivered" in w for w in grant.warnings)
    out = deploy_env(env, statehub=hub)
    c = check_named(out.document, "operator_approval")
    assert (1, "fail") == (out.exit_code, c["status"]), c
    assert f"approval {grant.event_id} by bob is not recorded in State Hub" in c["reason"]
    assert "--repost" in c["reason"]
    assert env.cluster.get("deployments", "hello-web", "hello-web-canary") is None

    statehub.up()
    [outcome] = repost_undelivered(store=env.store, workload="hello-web", statehub=hub)
    assert outcome.delivered and [] == undelivered_notes(env.store, "hello-web")
    assert any(n["kind"] == "approval.granted" for n in statehub.notes)
    done = deploy_env(env, statehub=hub)
    assert 0 == done.exit_code, not_passed(done.document)
    assert (
        check_named(done.document, "operator_approval")["reason"]
        == f"approved by bob (event {grant.event_id})"
    )


def test_a_never_posted_approval_blocks_unless_statehub_note_is_waived(
    canary_env: CanaryEnv, statehub: StateHubServer
) -> None:
    env = canary_env
    critical(env)
    grant = signed_approve(
        keys=test_keys(), store=env.store, decl=env.decl(), operator="bob", stage=2, image=env.image
    )  # no State Hub configured: nothing posted
    assert [grant.event_id] == [n.ref_event_id for n in undelivered_notes(env.store, "hello-web")]
    hub = statehub_poster(statehub.url)
    out = deploy_env(env, statehub=hub)
    c = check_named(out.document, "operator_approval")
    assert (1, "fail") == (out.exit_code, c["status"]) and "no State Hub note was posted" in c["reason"], c
    waiver = record_waiver(
        store=env.store,
        decl=env.decl(),
        gate="statehub_note",
        operator="carol",
        reason="State Hub migration tonight; approval read out on the bridge call",
        candidate=env.digest,
        stage=2,
        statehub=hub,
    )
    done = deploy_env(env, statehub=hub)
    c = check_named(done.document, "operator_approval")
    assert (0, "pass") == (done.exit_code, c["status"]), not_passed(done.document)
    assert f"waived by {waiver.event_id}" in c["reason"]


def test_an_emergency_exception_not_in_statehub_does_not_unlock_stage2(
    canary_env: CanaryEnv, statehub: StateHubServer
) -> None:
    """Stage 1 skipped by an exception recorded while State Hub was down: Stage 2 refuses (stage1_passed)
    until the exception's note is delivered."""
    env = canary_env
    hub = statehub_poster(statehub.url)
    # a fresh candidate with no Stage 1 result, skipped by the exception
    digest = env.registry_helper.push_image(env.image.split("/", 1)[1].split("@")[0], "v9.9.9")
    image = env.image.split("@")[0] + "@" + digest
    from railiance_ledger.lifecycle.candidates import register_candidate

    register_candidate(store=env.store, decl=env.decl(), image=image, operator="ci", revision="1" * 40)
    statehub.down()
    exc = record_exception(
        store=env.store,
        decl=env.decl(),
        operator="carol",
        skip_stage=1,
        reason="CVE fix; local checks would delay it",
        image=image,
        statehub=hub,
    )
    out = deploy_env(env, image=image, statehub=hub)
    c = check_named(out.document, "stage1_passed")
    assert (1, "fail") == (out.exit_code, c["status"]), c
    assert f"emergency exception {exc.event_id} is not recorded in State Hub" in c["reason"]
    statehub.up()
    assert all(o.delivered for o in repost_undelivered(store=env.store, workload="hello-web", statehub=hub))
    done = deploy_env(env, image=image, statehub=hub)
    c = check_named(done.document, "stage1_passed")
    assert (0, "pass") == (done.exit_code, c["status"]), not_passed(done.document)
