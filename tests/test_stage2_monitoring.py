"""Stage 2's ``monitoring_available`` precheck proves monitoring works for the canary (issue 12
item 2), on real Prometheus and the real control plane: the canary's (or, before it exists, the
stable's) selector must return series, and the declared log source must answer."""

from __future__ import annotations

import re

from tests.fixtures.stage2 import CanaryEnv, check_named, deploy_env, not_passed


def _monitoring(env: CanaryEnv) -> tuple[int, dict[str, object]]:
    out = deploy_env(env)
    return out.exit_code, check_named(out.document, "monitoring_available")


def test_series_and_pod_logs_pass(canary_env: CanaryEnv) -> None:
    code, c = _monitoring(canary_env)

    assert 0 == code and "pass" == c["status"], c
    assert re.search(r"\d+ series for the (canary|stable)", str(c["reason"])), c
    assert "pod logs readable" in str(c["reason"])


def test_selector_without_series_fails_closed(canary_env: CanaryEnv) -> None:
    """Prometheus answers, but nothing matches the declared selector: no longer a pass."""
    canary_env.sub(r"^prometheus_selector = .*$", "prometheus_selector = 'job=\"no-such-job\"'")
    code, c = _monitoring(canary_env)

    assert 1 == code and "fail" == c["status"], c
    assert "no series" in str(c["reason"]) and "no-such-job" in str(c["reason"]), c
    assert canary_env.helm.deployed_revision(release="hello-web-canary", namespace="hello-web") is None


def test_loki_log_source_fails_closed_naming_what_works(canary_env: CanaryEnv) -> None:
    canary_env.sub(r"^log_source = .*$", 'log_source = "loki"\nlog_query = \'{app="hello-web"}\'')
    code, c = _monitoring(canary_env)

    assert (1, "fail") == (code, c["status"]), c
    assert "loki log source has no reader" in str(c["reason"]), c


def test_file_log_source_must_be_readable(canary_env: CanaryEnv) -> None:
    canary_env.sub(r"^log_source = .*$", 'log_source = "file"\nlog_query = "logs/canary.log"')
    code, c = _monitoring(canary_env)
    assert (1, "fail") == (code, c["status"]) and "not readable" in str(c["reason"]), c

    log = canary_env.app_dir / "railiance" / "logs" / "canary.log"
    log.parent.mkdir()
    log.write_text("started\n")
    out = deploy_env(canary_env)
    assert 0 == out.exit_code, not_passed(out.document)
    assert "log file logs/canary.log readable" in str(
        check_named(out.document, "monitoring_available")["reason"]
    )
