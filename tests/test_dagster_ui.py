"""The Dagster UI in a real browser (headless Debian Chromium via Python playwright): an operator finds the
candidate partition and its Stage 1 gates, then approves it from the launchpad; a self-approval is refused
with the reason. Screenshots go to artifacts/ui/; the assertions are on page content and on the ledger."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.domain.gates import names_for
from railiance_ledger.ledger.projections import partition_key

REQUIRED_CHECKS = names_for(1)
from tests.fixtures.dagster import DevEnv

pytestmark = [pytest.mark.slow, pytest.mark.ui]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"

RUNS = """
query Runs($key: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}) {
    ... on Runs { results { runId jobName status } }
  }
}"""


def _wait(what: str, probe: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _skip_onboarding(page: Any) -> None:
    """Dismiss the first-visit community dialog whenever it shows: a locator handler runs before every
    action Playwright takes on the page (the dialog may appear late, after the page loaded), plus one
    short wait for it now."""
    button = page.get_by_role("button", name="Skip")
    if not getattr(page, "_railiance_onboarding", False):
        page.add_locator_handler(button, lambda locator: locator.click())
        page._railiance_onboarding = True
    try:
        button.wait_for(timeout=2500)
        button.click(timeout=3000)
    except Exception:  # noqa: BLE001, S110 - the dialog only shows once per instance
        pass


def _dismiss_onboarding(page: Any) -> None:
    """Close the onboarding dialog if it is showing now (a screenshot is not an action, so the locator
    handler does not run before it)."""
    button = page.get_by_role("button", name="Skip")
    try:
        if button.is_visible():
            button.click(timeout=3000)  # the locator handler may click it first: then this times out
    except Exception:  # noqa: BLE001, S110 - gone already is what we want
        pass
    page.wait_for_timeout(300)


def _text(page: Any) -> str:
    return str(page.inner_text("body"))


def _wait_text(page: Any, needle: str | list[str], timeout: float = 30.0) -> str:
    """The page text once every needle is on it (the UI renders lists after their headings)."""
    needles = [needle] if isinstance(needle, str) else list(needle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _text(page)
        if all(n in text for n in needles):
            return text
        page.wait_for_timeout(500)
    raise AssertionError(f"{needles!r} not all on {page.url}:\n{_text(page)[:3000]}")


def _launch_approval(page: Any, base: str, key: str, operator: str, shot: str) -> str:
    """Open the approve job's launchpad, pick the partition, type the config, launch; return the run page text."""
    page.goto(f"{base}/locations/railiance/jobs/approve/playground")
    _skip_onboarding(page)
    partition = page.get_by_placeholder("Partition")
    partition.click()
    partition.fill(key)
    page.keyboard.press("Enter")
    _wait_text(page, f"partition: {key}")
    editor = page.locator(".CodeMirror").first
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.type(
        "ops: {promotion_approval: {config: {stage: 2, operator: "  # Stage 1 passed: the canary's approval
        + operator
        + ', rollback_target: "manual: helm rollback ui-web to the previous revision"}}}'
    )
    _wait_text(page, "No errors")
    page.screenshot(path=str(SHOTS / f"{shot}-launchpad.png"))
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**", timeout=30_000)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = _text(page)
        if "RUN_SUCCESS" in text or "RUN_FAILURE" in text:
            break
        page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / f"{shot}-run.png"), full_page=True)
    return _text(page)


def test_operator_finds_candidate_and_gates_then_approves_from_launchpad(
    dagster_dev_env: DevEnv, registry_helper: Any
) -> None:
    """The UI shows the pushed candidate's partition, its Stage 1 materialization (ledger seq) and all eight gates
    succeeded; the registrar's approval is refused with the separation-of-duties reason; alice's approval
    launched from the launchpad succeeds and lands in the ledger with her identity."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (./scripts/bootstrap --test-deps)")
    env = dagster_dev_env
    digest = registry_helper.push_image(env.repositories["ui-web"], "v1.0.0")
    key = partition_key("ui-web", digest)
    _wait(
        "the stage1 run of the pushed digest",
        lambda: [
            r
            for r in env.dev.graphql(RUNS, {"key": key})["runsOrError"]["results"]
            if r["jobName"] == "stage1" and r["status"] == "SUCCESS"
        ],
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = env.dev.url

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()

            page.goto(f"{base}/assets/stage1_validation?view=partitions&partition={quote(key)}")
            _skip_onboarding(page)
            text = _wait_text(page, ["ledger_seq", key, digest, "Materialized", "ledger_hash"])
            page.screenshot(path=str(SHOTS / "1-stage1-partition.png"), full_page=True)
            assert key in text and digest in text and "Materialized" in text
            assert "pass" in text and "ledger_hash" in text

            page.goto(f"{base}/assets/stage1_validation?view=checks")
            # every Stage 1 gate of the catalogue, and ui-web's declared local check `unit`
            stage1_checks = [*REQUIRED_CHECKS, "local_check_unit"]
            heading = f"Checks ({len(stage1_checks)})"
            text = _wait_text(page, [heading, *stage1_checks])
            page.screenshot(path=str(SHOTS / "2-stage1-checks.png"), full_page=True)
            assert all(name in text for name in stage1_checks)
            assert "Succeeded" in text and "Failed" not in text.split(heading)[1][:1500]

            refused = _launch_approval(page, base, key, "dagster-sensor", "3-self-approval")
            assert "RUN_FAILURE" in refused and "separation of duties" in refused

            approved = _launch_approval(page, base, key, "alice", "4-approval")
            assert "RUN_SUCCESS" in approved and "approved by alice" in approved
        finally:
            browser.close()

    store = env.store()
    try:
        grants = [e for e in store.read_stream("ui-web") if e.kind == EventKind.APPROVAL_GRANTED]
    finally:
        store.close()
    assert [("alice", digest, 2)] == [(g.actor, g.candidate, g.stage) for g in grants]


def test_production_after_rollback_names_stable_and_target_and_rolled_back_stage_is_red(
    dagster_dev_env: DevEnv,
) -> None:
    """After v1 -> v2 -> v3 -> rollback (recorded in the ledger, mirrored by ledger_mirror_sensor): the
    `production` asset names v2 stable and v1 the rollback target with the rollback's reason; v3's Stage 3
    partition is Failed and its run names the reason; the approval's principal is top-level metadata."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (./scripts/bootstrap --test-deps)")
    from tests.fixtures.dagster import ROLLBACK_REASON, seed_rollback_story

    env = dagster_dev_env
    store = env.store()
    try:
        digests = seed_rollback_story(store, "prod-web", approver="alice")
    finally:
        store.close()
    v2, v3 = partition_key("prod-web", digests["v2"]), partition_key("prod-web", digests["v3"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = env.dev.url
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
            page.goto(f"{base}/assets/production")
            _skip_onboarding(page)
            text = _wait_goto(
                page,
                f"{base}/assets/production?view=partitions&partition=prod-web",
                ["stable", digests["v2"], "rollback_target", digests["v1"], ROLLBACK_REASON],
            )
            _dismiss_onboarding(page)
            page.screenshot(path=str(SHOTS / "5-production.png"), full_page=True)
            stable_at = text.index(digests["v2"])
            assert "stable" in text[:stable_at] and digests["v1"] in text

            # Not asserted (a known gap, docs/dagster.md): the not_rolled_back check page may show the
            # record_rollback run's step as the latest execution, "not evaluated", instead of the red
            # evaluation the mirror reported; the partition's Failed state and its run carry the reason.

            # the mirror requested a `promote` run with record_rollback: it fails with the rollback's reason,
            # so v3's Stage 3 partition is Failed (red); v2's stays Materialized
            text = _wait_goto(
                page, f"{base}/assets/stage3_promotion?view=partitions&partition={quote(v3)}", [v3, "Failed"]
            )
            _dismiss_onboarding(page)
            page.screenshot(path=str(SHOTS / "7-stage3-v3-partition-failed.png"), full_page=True)
            runs = _wait(
                "the record_rollback run of v3 to end",
                lambda: [
                    r
                    for r in env.dev.graphql(RUNS, {"key": v3})["runsOrError"]["results"]
                    if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
                ],
                timeout=240,
            )
            assert [("promote", "FAILURE")] == [(r["jobName"], r["status"]) for r in runs]
            page.goto(f"{base}/runs/{runs[0]['runId']}")
            _wait_text(page, [ROLLBACK_REASON, "was rolled back"], timeout=60)
            _dismiss_onboarding(page)
            page.screenshot(path=str(SHOTS / "7b-stage3-v3-rollback-run.png"), full_page=True)
            page.screenshot(path=str(SHOTS / "7-stage3-v3-partition.png"), full_page=True)

            text = _wait_goto(
                page,
                f"{base}/assets/promotion_approval?view=partitions&partition={quote(v2)}",
                ["approved_by", "alice", "recorded_at"],
            )
            _dismiss_onboarding(page)
            page.screenshot(path=str(SHOTS / "8-approval-principal.png"), full_page=True)
        finally:
            browser.close()


def _wait_goto(page: Any, url: str, needles: list[str], timeout: float = 300.0) -> str:
    """Open ``url`` until its text has every needle (the mirror sensor catches up; the UI drops a partition
    parameter it does not know yet, so the URL is opened again rather than reloaded)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        page.goto(url)
        try:
            return _wait_text(page, needles, timeout=30.0)  # a loaded machine renders slowly
        except AssertionError as exc:
            text = str(exc)
    raise AssertionError(f"{needles!r} not all on {page.url}: {text[:3000]}")
