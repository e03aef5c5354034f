"""Stage 1 local validation: one passing run, and one failing run per check and fail-closed condition.

Every failing case changes exactly one thing in a clean, committed copy of examples/hello-web and
asserts exit code 1, the named failing check, and that every other check passed, so the failure is
that reason alone. Everything runs for real: git, helm template, kubernetes-validate, a local
process, HTTP probes and a SQLite ledger.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.stage1 import REQUIRED_CHECKS
from railiance_ledger.lifecycle.waivers import record_waiver
from tests.fixtures.stage1 import OPERATOR, STAGE1_APPS, Stage1Env, digest_of

PY = sys.executable
LEAKED = (
    "Sup3r-Secret-Pa55word!",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "Sup3rS3cret",
)


def statuses(outcome: Any) -> dict[str, str]:
    return {c["name"]: c["status"] for c in outcome.document["checks"]}


def check(outcome: Any, name: str) -> dict[str, Any]:
    return next(c for c in outcome.document["checks"] if c["name"] == name)


def assert_fails_only(outcome: Any, *names: str) -> None:
    """Exit 1, exactly ``names`` failed, every other check passed."""
    failed = {n for n, s in statuses(outcome).items() if s == "fail"}
    assert (1, "fail", set(names)) == (outcome.exit_code, outcome.document["status"], failed), statuses(
        outcome
    )
    others = {n: s for n, s in statuses(outcome).items() if n not in names}
    assert all(s == "pass" for s in others.values()), others


# ---------------------------------------------------------------------------------------------- pass


def test_stage1_passes_on_clean_hello_web(stage1_env: Stage1Env) -> None:
    """The example workload, committed and with a registered candidate, passes every check."""
    digest = stage1_env.register("a")
    out = stage1_env.run()

    assert 0 == out.exit_code
    assert "pass" == out.document["status"]
    assert [*REQUIRED_CHECKS[:6], "local_check:unit", *REQUIRED_CHECKS[6:]] == [
        c["name"] for c in out.document["checks"]
    ]
    assert all(s == "pass" for s in statuses(out).values())
    doc = out.document
    assert {"digest": digest, "image": stage1_env.image("a"), "revision": stage1_env.head()} == doc[
        "candidate"
    ]
    assert ("local", None, {"required": False, "decision": "not required", "operator": None}) == (
        doc["target_environment"],
        doc["rollback_target"],
        doc["approval"],
    )
    events = stage1_env.events()
    assert ["candidate.registered", "stage.started", "stage.completed"] == [e.kind for e in events]
    completed = events[-1]
    assert {"seq": completed.seq, "hash": completed.hash} == doc["ledger"]
    assert (digest, 1) == (completed.candidate, completed.stage)
    assert {**doc, "ledger": None} == completed.payload
    assert "stage.completed" == out.recorded_as
    kinds = {e["kind"] for e in doc["evidence"]}
    assert {"commit", "digest", "timestamp", "summary"} <= kinds
    # the rendered Deployment names the candidate's image by digest
    assert any(e["ref"] == "Deployment/hello-web" for e in check(out, "manifests_valid")["evidence"])
    assert "Stage 1 never authorizes production" in out.human_lines()[-1]


def test_stage1_registers_given_image_and_passes(stage1_env: Stage1Env) -> None:
    """``--image REF@sha256:...`` not yet registered is registered by the run, with the revision."""
    out = stage1_env.run(image=stage1_env.image("b"))

    assert 0 == out.exit_code, statuses(out)
    reg = stage1_env.events()[0]
    assert (EventKind.CANDIDATE_REGISTERED, digest_of("b"), stage1_env.head()) == (
        reg.kind,
        reg.candidate,
        reg.payload["revision"],
    )


# ---------------------------------------------------------------------------------------- manifests


def test_stage1_fails_when_chart_renders_secret_with_literal_password(stage1_env: Stage1Env) -> None:
    """A Secret with a literal ``stringData`` password fails secrets_by_reference; the value is never stored."""
    stage1_env.write(
        "chart/templates/secret.yaml",
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hello-web-db\ntype: Opaque\n"
            "stringData:\n  password: correct-horse-battery-staple-77\n"
        ),
    )
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "secrets_by_reference")
    c = check(out, "secrets_by_reference")
    assert "policy" == c["failure"]
    assert any(
        e["ref"] == "Secret/hello-web-db" and "stringData.password" in e["detail"] for e in c["evidence"]
    )
    text = stage1_env.stored_payload_text() + json.dumps(out.document)
    assert "correct-horse-battery-staple-77" not in text


def test_stage1_fails_when_values_file_holds_plaintext_secret(stage1_env: Stage1Env) -> None:
    """A secret-named key with a literal value in the local values file fails secrets_by_reference."""
    stage1_env.edit("chart/values-local.yaml", "track: local", "track: local\napiToken: q8Zr4Kp2Lm9Xw3Tn")
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "secrets_by_reference")
    assert any(
        e["ref"] == "chart/values-local.yaml" and e["detail"].startswith("apiToken")
        for e in check(out, "secrets_by_reference")["evidence"]
    )
    assert "q8Zr4Kp2Lm9Xw3Tn" not in stage1_env.stored_payload_text()


def test_stage1_fails_when_env_value_is_a_plaintext_secret(stage1_env: Stage1Env) -> None:
    """A container env literal that looks like a credential fails; secretKeyRef stays fine."""
    stage1_env.edit(
        "chart/templates/deployment.yaml",
        "            - name: TRACK\n",
        '            - name: DB_PASSWORD\n              value: "hunter2-Zq9"\n            - name: TRACK\n',
    )
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "secrets_by_reference")
    assert any("DB_PASSWORD" in e["detail"] for e in check(out, "secrets_by_reference")["evidence"])
    assert "hunter2-Zq9" not in stage1_env.stored_payload_text() + json.dumps(out.document)


EXTRA_OBJECTS = {
    "unknown_field": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello-web-extra\ndata:\n  a: b\nbogusField: 1\n",
        "ConfigMap/hello-web-extra",
        "bogusField",
    ),
    "wrong_type": (
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello-web-extra\nspec:\n  ports:\n"
            "    - port: eighty\n"
        ),
        "Service/hello-web-extra",
        "spec.ports.0.port",
    ),
    "unknown_kind": (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: hello-web-extra\n",
        "Widget/hello-web-extra",
        "unknown kind",
    ),
}


@pytest.mark.parametrize("case", sorted(EXTRA_OBJECTS))
def test_stage1_fails_when_manifest_is_invalid(stage1_env: Stage1Env, case: str) -> None:
    """An unknown field, a wrong type or an unknown kind fails manifests_valid, naming the object."""
    text, ref, needle = EXTRA_OBJECTS[case]
    stage1_env.write("chart/templates/extra.yaml", text)
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "manifests_valid")
    c = check(out, "manifests_valid")
    assert ref in c["reason"] and needle in c["reason"], c["reason"]
    assert any(e["ref"] == ref for e in c["evidence"])


def test_stage1_fails_when_chart_does_not_render(stage1_env: Stage1Env) -> None:
    """A template error fails manifests_valid (policy) and secrets_by_reference (cannot be shown clean)."""
    stage1_env.write("chart/templates/broken.yaml", "{{ .Values.nope.deeper }}\n")
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "manifests_valid", "secrets_by_reference")
    assert "helm template failed" in check(out, "manifests_valid")["reason"]
    assert "technical" == check(out, "secrets_by_reference")["failure"]


# ---------------------------------------------------------------------------------------- local health


@pytest.mark.parametrize(
    ("argv", "expected", "failure"),
    [
        (
            [PY, str(STAGE1_APPS / "status_server.py"), "--port", "{port}", "--status", "500"],
            "HTTP 500, expected 200",
            "policy",
        ),
        (
            [PY, str(STAGE1_APPS / "status_server.py"), "--port", "{port}", "--delay", "3"],
            "timed out after 1s",
            "technical",
        ),
        ([PY, str(STAGE1_APPS / "never_listens.py"), "--port", "{port}"], "connection refused", "technical"),
    ],
    ids=["http-500", "timeout", "refused"],
)
def test_stage1_fails_when_health_endpoint_fails(
    stage1_env: Stage1Env, argv: list[str], expected: str, failure: str
) -> None:
    """A health endpoint answering 500, timing out, or refusing connections fails local_health."""
    stage1_env.set_local_command(argv, ready_timeout="1s")
    stage1_env.set_health(timeout="1s", retries=1)
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "local_health")
    c = check(out, "local_health")
    assert expected in c["reason"], c["reason"]
    assert failure == c["failure"]
    assert any(e["kind"] == "http-status" and e["ref"] == "GET /healthz" for e in c["evidence"])


def test_stage1_fails_when_local_command_exits_early(stage1_env: Stage1Env) -> None:
    """A workload that exits before answering fails local_health with its exit code."""
    stage1_env.set_local_command([PY, "-c", "import sys; print('boom'); sys.exit(4)", "{port}"])
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "local_health")
    assert "exited with code 4" in check(out, "local_health")["reason"]


# ---------------------------------------------------------------------------------------- source


def test_stage1_fails_when_work_tree_is_dirty(stage1_env: Stage1Env) -> None:
    """A modified tracked file fails source_revision_identified."""
    stage1_env.register("a")
    stage1_env.edit("app/server.py", "hello\\n", "hello, dirty\\n", commit=False)
    out = stage1_env.run()

    assert_fails_only(out, "source_revision_identified")
    assert "1 modified" in check(out, "source_revision_identified")["reason"]


def test_stage1_fails_when_untracked_files_exist(stage1_env: Stage1Env) -> None:
    """An untracked file fails source_revision_identified."""
    stage1_env.register("a")
    stage1_env.write("app/new_module.py", "x = 1\n", commit=False)
    out = stage1_env.run()

    assert_fails_only(out, "source_revision_identified")
    assert "1 untracked" in check(out, "source_revision_identified")["reason"]


def test_stage1_dirty_tree_is_waivable(stage1_env: Stage1Env) -> None:
    """A recorded waiver for source_revision_identified turns the failure into ``waived``."""
    stage1_env.register("a")
    stage1_env.write("notes.txt", "scratch\n", commit=False)
    waiver = record_waiver(
        store=stage1_env.store,
        decl=stage1_env.decl(),
        gate="source_revision_identified",
        operator=OPERATOR,
        reason="scratch file, not part of the build",
    )
    out = stage1_env.run()

    assert 0 == out.exit_code
    c = check(out, "source_revision_identified")
    assert ("waived", waiver.event_id) == (c["status"], c["waiver"])


# ---------------------------------------------------------------------------------------- candidate


def test_stage1_refuses_image_given_by_tag_only(stage1_env: Stage1Env) -> None:
    """A tag is mutable: candidate_immutable fails, nothing is registered, the refusal is a note."""
    out = stage1_env.run(image="registry.local/railiance/hello-web:v1.0.0")

    # artifact_deterministic cannot pass without a digest to trace (fail closed): same root cause
    assert_fails_only(out, "candidate_immutable", "artifact_deterministic")
    assert "not pinned by digest" in check(out, "candidate_immutable")["reason"]
    assert "no candidate digest" in check(out, "artifact_deterministic")["reason"]
    events = stage1_env.events()
    assert ["note.posted"] == [e.kind for e in events]
    assert ("stage1.refused", "fail") == (
        events[0].payload["topic"],
        events[0].payload["stage_result"]["status"],
    )
    assert ({"seq": events[0].seq, "hash": events[0].hash}, "note.posted") == (
        out.document["ledger"],
        out.recorded_as,
    )


def test_stage1_fails_without_any_candidate(stage1_env: Stage1Env) -> None:
    """With no --image and nothing registered, candidate_immutable fails closed."""
    out = stage1_env.run()

    assert_fails_only(out, "candidate_immutable", "artifact_deterministic")
    assert "no candidate is registered" in check(out, "candidate_immutable")["reason"]


def test_stage1_fails_on_second_digest_for_same_revision(stage1_env: Stage1Env) -> None:
    """A different digest for a revision that already produced one fails artifact_deterministic."""
    stage1_env.register("a")
    assert 0 == stage1_env.run().exit_code
    out = stage1_env.run(image=stage1_env.image("b"))

    assert_fails_only(out, "artifact_deterministic")
    c = check(out, "artifact_deterministic")
    assert digest_of("a") in c["reason"]
    with pytest.raises(InvalidInput):
        record_waiver(
            store=stage1_env.store,
            decl=stage1_env.decl(),
            gate="artifact_deterministic",
            operator=OPERATOR,
            reason="try",
            candidate=digest_of("b"),
        )


# Declaration-only gates (migrations_classified, observability_declared) and the revision rule of
# artifact_deterministic are judged without servers in tests/test_stage1_decisions.py.


# ---------------------------------------------------------------------------------------- local checks


def test_stage1_fails_when_declared_local_check_exits_nonzero(stage1_env: Stage1Env) -> None:
    """A declared check exiting 3 fails ``local_check:<name>`` with exit code and duration as evidence."""
    stage1_env.add_local_check(
        "integration", [PY, "-c", "import sys; print('1 failed'); sys.exit(3)"], kind="integration"
    )
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "local_check:integration")
    c = check(out, "local_check:integration")
    assert "exited 3" in c["reason"]
    assert any(e["detail"].startswith("exit 3 in ") for e in c["evidence"])
    assert any("1 failed" in e["detail"] for e in c["evidence"])


def test_stage1_fails_when_local_check_times_out(stage1_env: Stage1Env) -> None:
    """A declared check that outlives its timeout is killed and fails (technical)."""
    stage1_env.add_local_check("slow", [PY, "-c", "import time; time.sleep(30)"], timeout="1s")
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "local_check:slow")
    c = check(out, "local_check:slow")
    assert ("technical", True) == (c["failure"], "timed out after 1s" in c["reason"])


def test_stage1_skipped_check_fails_without_waiver_and_is_waived_with_one(stage1_env: Stage1Env) -> None:
    """``--skip-check unit`` fails local_check:unit; after a recorded waiver it is ``waived`` and Stage 1 passes."""
    stage1_env.register("a")
    out = stage1_env.run(skip_checks=["unit"])

    assert_fails_only(out, "local_check:unit")
    assert "skipped" in check(out, "local_check:unit")["reason"]

    waiver = record_waiver(
        store=stage1_env.store,
        decl=stage1_env.decl(),
        gate="local_check:unit",
        operator="alice",
        reason="unit suite runs in CI for this revision",
    )
    assert {"gate": "local_check:unit", "candidate": digest_of("a"), "stage": 1} == waiver.payload["scope"]
    again = stage1_env.run(skip_checks=["unit"])

    assert (0, "pass") == (again.exit_code, again.document["status"])
    c = check(again, "local_check:unit")
    assert ("waived", waiver.event_id) == (c["status"], c["waiver"])
    assert "alice" in c["reason"]


def test_stage1_waiver_for_other_candidate_does_not_apply(stage1_env: Stage1Env) -> None:
    """A waiver names one candidate: it never covers another digest."""
    stage1_env.register("a", revision=None)
    record_waiver(
        store=stage1_env.store,
        decl=stage1_env.decl(),
        gate="local_check:unit",
        operator="alice",
        reason="for a only",
        candidate=digest_of("a"),
    )
    stage1_env.register("c", revision=None)
    out = stage1_env.run(image=stage1_env.image("c"), skip_checks=["unit"])

    assert_fails_only(out, "local_check:unit")


def test_stage1_secret_printed_by_local_check_fails_and_never_reaches_ledger(stage1_env: Stage1Env) -> None:
    """ "Secrets are not printed": a local check that prints secrets fails ``secrets_by_reference``
    (naming the check and the kinds), and its output is redacted: no secret in any event or the
    document. The local check itself, which exited 0, passes."""
    stage1_env.add_local_check("leaky", [PY, str(STAGE1_APPS / "prints_secrets.py")])
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "secrets_by_reference")
    reason = check(out, "secrets_by_reference")["reason"]
    assert "local_check:leaky printed a" in reason, reason
    stored = stage1_env.stored_payload_text()
    returned = json.dumps(out.document) + "\n".join(out.human_lines())
    for secret in LEAKED:
        assert secret not in stored
        assert secret not in returned
    tail = " ".join(e["detail"] for e in check(out, "local_check:leaky")["evidence"])
    assert "[REDACTED:" in tail and "starting smoke check" in tail


def test_stage1_secret_printed_by_the_local_workload_fails_secrets_by_reference(
    stage1_env: Stage1Env,
) -> None:
    """The workload started for ``local_health`` printing a credential fails ``secrets_by_reference``
    while its health endpoints pass; the credential is in no event."""
    leak = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
    stage1_env.set_local_command([PY, str(STAGE1_APPS / "leaky_server.py"), "--port", "{port}"])
    stage1_env.register("a")
    out = stage1_env.run()

    assert_fails_only(out, "secrets_by_reference")
    assert "local workload printed a" in check(out, "secrets_by_reference")["reason"]
    assert leak not in stage1_env.stored_payload_text()
    assert leak not in json.dumps(out.document)


def test_stage1_refuses_unknown_skip_check_before_recording(stage1_env: Stage1Env) -> None:
    """``--skip-check`` of an undeclared check is invalid input (exit 2) and records nothing."""
    stage1_env.register("a")
    with pytest.raises(InvalidInput) as err:
        stage1_env.run(skip_checks=["nope"])
    assert 2 == err.value.exit_code
    assert ["candidate.registered"] == [e.kind for e in stage1_env.events()]


@pytest.mark.parametrize(
    "gate",
    [
        "secrets_by_reference",
        "observability_declared",
        "candidate_immutable",
        "no_such_gate",
        "local_check:undeclared",
    ],
)
def test_stage1_refuses_waiver_for_non_waivable_or_unknown_gate(stage1_env: Stage1Env, gate: str) -> None:
    """Gates the spec makes fail closed, and names that are not gates, cannot be waived."""
    stage1_env.register("a")
    with pytest.raises(InvalidInput):
        record_waiver(
            store=stage1_env.store, decl=stage1_env.decl(), gate=gate, operator=OPERATOR, reason="r"
        )
    assert ["candidate.registered"] == [e.kind for e in stage1_env.events()]
