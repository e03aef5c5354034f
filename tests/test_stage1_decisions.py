"""Stage 1 gates that only need a decision: judged on a declaration and a ledger history in memory,
without git, helm, a local process or a ledger server (milliseconds each).

``tests/test_stage1.py`` runs the whole service against real things; the cases here are the ones
whose verdict depends only on the declaration, the history and the rendered objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.declaration import load_declaration
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import CheckStatus, FailureKind
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import StageRun
from railiance_ledger.lifecycle.stage1 import (
    REQUIRED_CHECKS,
    Stage1Context,
    check_artifact_deterministic,
    check_candidate_immutable,
    check_migrations,
    check_observability,
    check_secrets,
)
from railiance_ledger.lifecycle.stage1.run import assemble_checks
from tests.fixtures.stage1 import EXAMPLE, digest_of

W = "hello-web"
REV, OTHER_REV = "a" * 40, "b" * 40
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event(
    seq: int, kind: str, digest: str | None, payload: dict[str, Any], stage: int | None = None
) -> RecordedEvent:
    return RecordedEvent(
        seq=seq,
        event_id=f"ev-{seq}",
        stream=W,
        version=seq,
        kind=kind,
        candidate=digest,
        stage=stage,
        actor="op",
        recorded_at="2026-03-01T00:00:00.000000+00:00",
        payload=payload,
        prev_hash="0" * 64,
        hash=f"{seq:064x}",
    )


def registration(seq: int, ch: str, revision: str | None = REV) -> RecordedEvent:
    d = digest_of(ch)
    payload = {"image": f"registry.local/railiance/hello-web@{d}", "revision": revision}
    return event(seq, EventKind.CANDIDATE_REGISTERED, d, payload)


def context(history: list[RecordedEvent], *, decl: Any = None, revision: str | None = REV) -> Stage1Context:
    """A Stage 1 context on the example declaration, its candidate named by the last registration."""
    run = StageRun(
        store=None,  # type: ignore[arg-type]  # decisions never touch the store
        decl=decl if decl is not None else load_declaration(EXAMPLE),
        operator="op",
        stage=1,
        clock=None,  # type: ignore[arg-type]
        history=history,
        started_at=T0,
        revision=revision,
    )
    regs = [ev for ev in history if ev.kind == EventKind.CANDIDATE_REGISTERED]
    if regs:
        run.registration, run.digest = regs[-1], regs[-1].candidate
        run.image = str(regs[-1].payload["image"])
    return Stage1Context(run=run, app_dir=EXAMPLE)


def edited(**tables: dict[str, Any]) -> Any:
    """The example declaration with some tables' fields replaced."""
    decl = load_declaration(EXAMPLE)
    update = {name: getattr(decl, name).model_copy(update=fields) for name, fields in tables.items()}
    return decl.model_copy(update=update)


# ---------------------------------------------------------------------------------------- artifact


def test_artifact_deterministic_passes_for_the_only_digest_of_the_revision() -> None:
    c = check_artifact_deterministic(context([registration(1, "a")]), [registration(1, "a")])
    assert c.status == CheckStatus.PASS and REV[:12] in c.reason


def test_artifact_deterministic_fails_on_a_second_digest_for_the_revision() -> None:
    history = [registration(1, "a"), registration(2, "b")]
    c = check_artifact_deterministic(context(history), history)
    assert (c.status, c.failure) == (CheckStatus.FAIL, FailureKind.POLICY)
    assert digest_of("a") in c.reason and "(seq 1)" in c.reason


def test_artifact_deterministic_fails_when_built_from_another_revision() -> None:
    history = [registration(1, "a", revision=OTHER_REV)]
    c = check_artifact_deterministic(context(history), history)
    assert c.status == CheckStatus.FAIL and "registered for revision" in c.reason


def test_artifact_deterministic_without_a_revision_is_technical() -> None:
    history = [registration(1, "a")]
    c = check_artifact_deterministic(context(history, revision=None), history)
    assert (c.status, c.failure) == (CheckStatus.FAIL, FailureKind.TECHNICAL)


# ---------------------------------------------------------------------------------------- candidate


def test_candidate_immutable_refuses_a_tag_and_an_empty_ledger() -> None:
    ctx = context([])
    c, appended = check_candidate_immutable(ctx, image="registry.local/railiance/hello-web:v1.0.0")
    assert (c.status, appended, ctx.run.digest) == (CheckStatus.FAIL, [], None)
    assert c.reason.startswith("refused:")
    c, _ = check_candidate_immutable(context([]), image=None)
    assert "no candidate is registered" in c.reason


def test_candidate_immutable_names_the_newest_registration() -> None:
    ctx = context([registration(1, "a"), registration(2, "b")])
    ctx.run.digest = ctx.run.image = ctx.run.registration = None
    c, appended = check_candidate_immutable(ctx, image=None)
    assert (c.status, appended, ctx.run.digest) == (CheckStatus.PASS, [], digest_of("b"))


# ---------------------------------------------------------------------------------------- declaration


def test_migrations_classified() -> None:
    assert check_migrations(context([])).status == CheckStatus.PASS
    unclassified = check_migrations(context([], decl=edited(migrations={"classification": None})))
    assert unclassified.status == CheckStatus.FAIL and "unclassified" in unclassified.reason
    needs = check_migrations(context([], decl=edited(migrations={"classification": "requires-approval"})))
    assert needs.status == CheckStatus.PASS and "Stage 3 needs a human approval" in needs.reason


def test_observability_declared_needs_metrics() -> None:
    assert check_observability(context([])).status == CheckStatus.PASS
    c = check_observability(context([], decl=edited(observability={"metrics_path": None})))
    assert c.status == CheckStatus.FAIL and "observability.metrics_path" in c.reason


# ---------------------------------------------------------------------------------------- secrets


def test_secrets_by_reference_on_rendered_objects() -> None:
    ctx = context([])
    ctx.rendered = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"password": "Sup3r-Secret-Pa55word!"},
        }
    ]
    c = check_secrets(ctx)
    assert c.status == CheckStatus.FAIL and "Secret/db stringData.password" in c.reason
    assert "Sup3r" not in str(c.model_dump())
    ctx.rendered = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}}
    ]
    assert check_secrets(ctx).status == CheckStatus.PASS
    ctx.rendered, ctx.render_error = None, "chart does not render"
    c = check_secrets(ctx)
    assert (c.status, c.failure) == (CheckStatus.FAIL, FailureKind.TECHNICAL)


def test_secrets_by_reference_reads_values_files(tmp_path: Path) -> None:
    ctx = context([])
    ctx.rendered = []
    values = tmp_path / "values.yaml"
    values.write_text("database:\n  password: hunter2-Sup3rS3cret\n")
    ctx.values_files = [values]
    c = check_secrets(ctx)
    assert c.status == CheckStatus.FAIL and "database.password" in c.reason


# ---------------------------------------------------------------------------------------- assembly


def test_checks_are_reported_in_catalogue_order_with_local_checks_after_local_health() -> None:
    history = [registration(1, "a")]
    fixed = {name: make_check(name, True, "ok") for name in REQUIRED_CHECKS}
    local = [make_check("local_check:unit", False, "exit 1")]
    names = [c.name for c in assemble_checks(context(history), fixed, local, history)]
    assert names == [
        "source_revision_identified",
        "artifact_deterministic",
        "candidate_immutable",
        "manifests_valid",
        "secrets_by_reference",
        "local_health",
        "local_check:unit",
        "migrations_classified",
        "observability_declared",
        "artifact_traceable",
    ]


@pytest.mark.parametrize(("gate", "waived"), [("local_check:unit", True), ("secrets_by_reference", False)])
def test_recorded_waivers_apply_only_to_waivable_gates(gate: str, waived: bool) -> None:
    d = digest_of("a")
    grant = {"gate": gate, "reason": "known", "scope": {"gate": gate, "candidate": d, "stage": 1}}
    history = [registration(1, "a"), event(2, EventKind.WAIVER_GRANTED, d, grant, stage=1)]
    fixed = {name: make_check(name, True, "ok") for name in REQUIRED_CHECKS}
    fixed["secrets_by_reference"] = make_check("secrets_by_reference", False, "plaintext")
    local = [make_check("local_check:unit", False, "exit 1")]
    out = {c.name: c for c in assemble_checks(context(history), fixed, local, history)}
    assert (out[gate].status == CheckStatus.WAIVED) is waived
    if waived:
        assert out[gate].waiver == "ev-2" and out[gate].reason == "waived by op: known (was: exit 1)"
