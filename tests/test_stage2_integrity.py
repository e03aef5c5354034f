"""Stage 2's data-integrity probes (issue 12 item 1) on the real control plane and real Prometheus:
the example declares ``[[integrity]] dead-letters`` (``max(app_dead_letters{$SELECTOR}) <= 0``).
Dead letters appearing mid-window roll the canary back at once ("data integrity is at risk"); a
probe whose series does not exist fails closed; no probe declared is "not evaluated" and fails
``canary_side_effects`` unless a stage 2 waiver records why."""

from __future__ import annotations

from typing import Any

from railiance_ledger.domain.events import EventKind
from railiance_ledger.lifecycle.waivers import record_waiver
from tests.fixtures.stage2 import CanaryEnv, check_named, deploy_env, events_of, not_passed, observe_env

PROBE = '[[integrity]]\nname = "dead-letters"\nkind = "promql"\nquery = "max(app_dead_letters{$SELECTOR})"\nmax = 0\n'


def _deployed(env: CanaryEnv) -> None:
    out = deploy_env(env)
    assert 0 == out.exit_code, not_passed(out.document)


def test_declared_probe_passes_with_real_evidence(canary_env: CanaryEnv) -> None:
    _deployed(canary_env)
    res = observe_env(canary_env)

    assert 0 == res.exit_code, not_passed(res.document)
    c = check_named(res.document, "canary_side_effects")
    assert "pass" == c["status"] and "dead-letters: value 0 within bounds" in c["reason"], c
    sample = events_of(canary_env, EventKind.CANARY_SAMPLE)[0].payload
    assert sample["integrity"]["ok"] is True


def test_dead_letters_mid_window_roll_the_canary_back_at_once(canary_env: CanaryEnv) -> None:
    canary_env.edit('observation_window = "4s"', 'observation_window = "8s"')
    _deployed(canary_env)

    def progress(done: int, total: int, sample: Any) -> None:
        if done == 2:
            canary_env.metrics.pair.canary.set(dead_letters=3)

    res = observe_env(canary_env, on_progress=progress)

    assert (1, True) == (res.exit_code, res.rolled_back), not_passed(res.document)
    started = events_of(canary_env, EventKind.ROLLBACK_STARTED)
    assert (
        "data integrity at risk: dead-letters: value 3 above the declared max 0"
        in started[0].payload["symptom"]
    )
    assert "fail" == check_named(res.document, "canary_side_effects")["status"]
    assert canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None


def test_probe_without_series_fails_closed(canary_env: CanaryEnv) -> None:
    canary_env.edit("max(app_dead_letters{$SELECTOR})", "max(app_no_such_series{$SELECTOR})")
    _deployed(canary_env)
    res = observe_env(canary_env)

    assert (1, True) == (res.exit_code, res.rolled_back)
    assert "query returned no series" in check_named(res.document, "canary_side_effects")["reason"]


def test_no_probe_declared_is_not_evaluated_and_fails(canary_env: CanaryEnv) -> None:
    canary_env.edit(PROBE, "")
    _deployed(canary_env)
    res = observe_env(canary_env)

    c = check_named(res.document, "canary_side_effects")
    assert (1, "fail") == (res.exit_code, c["status"]) and c["reason"].startswith("not evaluated"), c


def test_no_probe_declared_passes_only_with_a_recorded_waiver(canary_env: CanaryEnv) -> None:
    canary_env.edit(PROBE, "")
    record_waiver(
        store=canary_env.store,
        decl=canary_env.decl(),
        gate="canary_side_effects",
        operator="carol",
        reason="stateless web app: no schema, storage or queue to watch",
        stage=2,
        candidate=canary_env.digest,
    )
    _deployed(canary_env)
    res = observe_env(canary_env)

    assert 0 == res.exit_code, not_passed(res.document)
    assert "waived" == check_named(res.document, "canary_side_effects")["status"]
