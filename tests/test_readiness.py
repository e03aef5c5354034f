"""The spec's readiness questions for a forge-like workload, answered from declaration and ledger.

"If any answer is missing, Forgejo remains in Stage 1 or Stage 2 preparation and must not cut over
to Stage 3": each missing answer is named with where the workload must remain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.readiness import QUESTIONS, Preparation, readiness_report
from tests.test_approvals import digest_of, image_of, register, write_app

FORGE_ACCEPTANCE = """
[[acceptance]]
name = "web"
kind = "http"
path = "/"

[[acceptance]]
name = "registry"
kind = "http"
path = "/v2/"
expect_status = 401

[[acceptance]]
name = "ssh"
kind = "tcp"
port = 2222

[[acceptance]]
name = "actions-runner"
kind = "command"
command = ["scripts/check-runner"]

[[acceptance]]
name = "email-recovery"
kind = "command"
command = ["scripts/check-password-reset-mail"]
"""

FORGE_DATA = """
[backup]
stateful = true
check = ["scripts/backup-posture"]
max_age = "24h"

[readiness]
data_protection = "repositories and packages snapshotted before cutover; restic to object store after"
rollback_verification = "healthz, then clone a canary repo over ssh and pull a known package digest"
canary_isolation = "operator-only header routing; no user traffic"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAILIANCE_OPERATOR", raising=False)
    monkeypatch.delenv("RAILIANCE_STATEHUB_URL", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from railiance_ledger.ledger.store import EventStore

    s = EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


def pass_stage1(store: Any, workload: str, digest: str) -> None:
    store.append(
        [
            NewEvent(
                stream=workload,
                kind=EventKind.STAGE_COMPLETED,
                actor="ci",
                candidate=digest,
                stage=1,
                payload={
                    "stage": 1,
                    "status": "pass",
                    "candidate": {"digest": digest},
                    "checks": [
                        {"name": "local_health", "status": "pass"},
                        {"name": "local_check:unit", "status": "pass"},
                    ],
                },
            )
        ]
    )


def test_forge_with_nothing_prepared_names_every_missing_answer_and_stays_in_stage1(
    store: Any, tmp_path: Path
) -> None:
    """A bare forge declaration and an empty ledger: each unanswered question is named, with its stage."""
    decl = write_app(tmp_path)

    report = readiness_report(store=store, decl=decl)

    assert (False, Preparation.STAGE1) == (report.ready, report.must_remain_in)
    assert [
        "artifact",
        "local_checks",
        "acceptance_checks",
        "previous_stable",
        "data_protection",
        "rollback_verification",
    ] == report.missing
    remain = {a.id: a.must_remain_in for a in report.answers}
    assert {
        "artifact": Preparation.STAGE1,
        "local_checks": Preparation.STAGE1,
        "canary_isolation": None,
        "acceptance_checks": Preparation.STAGE1,
        "stage3_approver": None,
        "previous_stable": Preparation.STAGE1,
        "data_protection": Preparation.STAGE2,
        "rollback_verification": Preparation.STAGE2,
    } == remain
    acceptance = report.answer("acceptance_checks")
    assert [
        "[[acceptance]] check for registry",
        "[[acceptance]] check for ssh",
        "[[acceptance]] check for web",
        "[[acceptance]] check for actions",
        "[[acceptance]] check for email-recovery",
    ] == acceptance.missing
    assert any("backup.stateful = true" in m for m in report.answer("data_protection").missing)
    approver = report.answer("stage3_approver")
    assert (
        "other than the one who registered or deployed" in approver.text
        and "production-critical" in approver.text
    )


def test_forge_ready_for_canary_but_not_cutover_remains_in_stage2_preparation(
    store: Any, tmp_path: Path
) -> None:
    """Everything Stage 2 needs is answered; data protection and rollback verification are not."""
    decl = write_app(
        tmp_path,
        extra=FORGE_ACCEPTANCE,
        rollback_extra=f'previous_stable = "{image_of("e")}"',
    )
    digest = register(store, decl)
    pass_stage1(store, "forge", digest)

    report = readiness_report(store=store, decl=decl)

    assert ["data_protection", "rollback_verification"] == report.missing
    assert Preparation.STAGE2 == report.must_remain_in
    assert "Stage 2 preparation" == report.as_dict()["must_remain_in"]
    assert False is report.as_dict()["may_cut_over_to_stage3"]


def test_complete_forge_declaration_passes(store: Any, tmp_path: Path) -> None:
    """Every question answered with its source: ready, nowhere to remain, may cut over."""
    decl = write_app(
        tmp_path,
        extra=FORGE_ACCEPTANCE + FORGE_DATA + '\n[approval]\napprovers = ["alice", "bob"]\n',
        rollback_extra=f'previous_stable = "{image_of("e")}"',
    )
    digest = register(store, decl)
    pass_stage1(store, "forge", digest)

    report = readiness_report(store=store, decl=decl)

    assert (True, None, []) == (report.ready, report.must_remain_in, report.missing)
    assert list(QUESTIONS) == [a.id for a in report.answers]
    assert all(a.source for a in report.answers)
    artifact = report.answer("artifact")
    assert image_of("a") in artifact.text and "c0ffee" in artifact.text
    assert "local_health pass" in report.answer("local_checks").text
    assert "weighted ingress split: 10%" in report.answer("canary_isolation").text
    assert "operator-only header routing" in report.answer("canary_isolation").text
    assert "registry" in report.answer("acceptance_checks").text
    assert "alice, bob" in report.answer("stage3_approver").text
    assert image_of("e") in report.answer("previous_stable").text
    assert "snapshotted before cutover" in report.answer("data_protection").text
    assert "clone a canary repo" in report.answer("rollback_verification").text
    data = json.loads(json.dumps(report.as_dict()))
    assert (True, None, digest) == (data["ready"], data["must_remain_in"], data["candidate"]["digest"])
    assert {"id", "question", "answered", "text", "source", "missing", "must_remain_in"} == set(
        data["answers"][0]
    )


def test_failed_stage1_leaves_local_checks_unanswered(store: Any, tmp_path: Path) -> None:
    decl = write_app(
        tmp_path, extra=FORGE_ACCEPTANCE + FORGE_DATA, rollback_extra=f'previous_stable = "{image_of("e")}"'
    )
    digest = register(store, decl)
    store.append(
        [
            NewEvent(
                stream="forge",
                kind=EventKind.STAGE_COMPLETED,
                actor="ci",
                candidate=digest,
                stage=1,
                payload={"stage": 1, "status": "fail", "candidate": {"digest": digest}},
            )
        ]
    )

    report = readiness_report(store=store, decl=decl)

    assert (["local_checks"], Preparation.STAGE1) == (report.missing, report.must_remain_in)
    assert "Stage 1 failed" in report.answer("local_checks").text


def test_previous_stable_comes_from_the_ledger_lineage(store: Any, tmp_path: Path) -> None:
    """A promotion recorded in the ledger answers 'What is the previous stable target?'."""
    pytest.importorskip("railiance_ledger.ledger.projections")
    decl = write_app(tmp_path)
    old = register(store, decl, "b")
    for stage in (1, 2):
        store.append(
            [
                NewEvent(
                    stream="forge",
                    kind=EventKind.STAGE_COMPLETED,
                    actor="ci",
                    candidate=old,
                    stage=stage,
                    payload={"stage": stage, "status": "pass", "candidate": {"digest": old}},
                )
            ]
        )
    store.append(
        [
            NewEvent(
                stream="forge",
                kind=EventKind.PROMOTION_COMPLETED,
                actor="dave",
                candidate=old,
                stage=3,
                payload={"image": image_of("b"), "digest": old},
            )
        ]
    )
    register(store, decl, "a")

    answer = readiness_report(store=store, decl=decl).answer("previous_stable")

    assert (True, "ledger lineage") == (answer.answered, answer.source)
    assert image_of("b") in answer.text


def test_non_critical_stateless_workload_needs_no_forge_checks(store: Any, tmp_path: Path) -> None:
    decl = write_app(
        tmp_path,
        name="hello-web",
        category="internal-service",
        rollback_extra=f'previous_stable = "{image_of("e")}"',
    )
    digest = register(store, decl)
    pass_stage1(store, "hello-web", digest)

    report = readiness_report(store=store, decl=decl)

    assert (True, []) == (report.ready, report.missing)
    assert "no persistent data" in report.answer("data_protection").text


def test_unregistered_image_is_invalid_input(store: Any, tmp_path: Path) -> None:
    decl = write_app(tmp_path)
    with pytest.raises(InvalidInput):
        readiness_report(store=store, decl=decl, image=f"registry.local/railiance/hello-web@{digest_of('9')}")
