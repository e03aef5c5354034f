"""Human approval gates against a real SQLite ledger and a real local State Hub.

Pins the spec's "Human Approval Gates": the approval record names operator, candidate, stage,
window, rollback target and waived gates; separation of duties; operator identity; revocation;
retrospective approvals only after an emergency exception; every decision noted in State Hub,
redacted, and an unreachable State Hub reported in the ledger rather than dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from railiance_ledger.adapters.statehub import StateHub
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle import approvals
from railiance_ledger.lifecycle.approvals import (
    approval_state,
    pending_retrospective,
    record_exception,
    revoke,
)
from railiance_ledger.lifecycle.notes import NotedEvent, undelivered_notes
from tests.fixtures.signing import install_signers, signed_approve, test_keys
from tests.fixtures.statehub import StateHubServer

REPO = "registry.local/railiance/hello-web"
SECRET = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"

REGISTRAR, DEPLOYER, APPROVER, OTHER = "rita", "dave", "alice", "bob"


def digest_of(ch: str) -> str:
    return "sha256:" + ch * 64


def image_of(ch: str) -> str:
    return f"{REPO}@{digest_of(ch)}"


BASE_TOML = """\
schema = "railiance.app/v1"

[workload]
name = "{name}"
repo = "railiance-apps/{name}"
category = "{category}"

[source]
revision_policy = "git-commit"

[image]
repository = "registry.local/railiance/hello-web"

[chart]
path = "../chart"

[stages.local]
namespace = "{name}-local"
release = "{name}"

[stages.canary]
namespace = "{name}"
release = "{name}-canary"

[stages.production]
namespace = "{name}"
release = "{name}"

[[health]]
name = "healthz"
path = "/healthz"
key = true

[observability]
prometheus_selector = 'job="{name}"'
log_source = "kubernetes-pod-logs"

[routing]
host = "{name}.example.internal"
service = "{name}"
port = 8080

[canary]
form = "weighted"
provider = "ingress-nginx"
weight = 10
sample_interval = "30s"

[canary.thresholds]
max_error_rate = 0.01
max_p95_latency_ms = 300
min_samples = 8

[rollback]
strategy = "helm-revision"
command = "railiance rollback {name}"
verification = "healthz"
tested = true
"""
"""A small, valid declaration of its own, so these tests do not follow edits to the example."""


def write_app(
    tmp_path: Path,
    *,
    name: str = "forge",
    category: str = "source-forge",
    extra: str = "",
    rollback_extra: str = "",
    signed: bool = True,
) -> Any:
    """A declaration (default: a production-critical forge) written to ``tmp_path/name`` and loaded;
    ``signed`` declares ``allowed_signers`` listing every test operator's key (tests.fixtures.signing)."""
    from railiance_ledger.declaration.loader import load_declaration

    app = tmp_path / name
    (app / "railiance").mkdir(parents=True)
    text = BASE_TOML.format(name=name, category=category)
    if rollback_extra:
        text += rollback_extra + "\n"
    (app / "railiance" / "app.toml").write_text(text + "\n" + extra, encoding="utf-8")
    if signed:
        install_signers(app / "railiance", test_keys())
    return load_declaration(app)


def approve(**kwargs: Any) -> Any:
    """``approvals.approve``, signed by the operator's test key (production-critical approvals must be)."""
    return signed_approve(keys=test_keys(), **kwargs)


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


@pytest.fixture
def decl(tmp_path: Path) -> Any:
    return write_app(tmp_path)


@pytest.fixture
def hub(statehub: StateHubServer) -> Iterator[StateHub]:
    with httpx.Client(trust_env=False) as client:
        yield StateHub(client, statehub.url, backoff=0.01, max_backoff=0.02)


def register(store: Any, decl: Any, ch: str = "a", operator: str = REGISTRAR) -> str:
    from railiance_ledger.lifecycle.candidates import register_candidate

    register_candidate(
        store=store, decl=decl, image=image_of(ch), operator=operator, revision="c0ffee" * 6 + "abcd"
    )
    return digest_of(ch)


def append(
    store: Any,
    decl: Any,
    kind: EventKind,
    actor: str,
    digest: str | None,
    stage: int | None = None,
    payload: dict[str, Any] | None = None,
) -> RecordedEvent:
    event = NewEvent(
        stream=decl.workload.name,
        kind=kind,
        actor=actor,
        candidate=digest,
        stage=stage,
        payload=payload or {},
    )
    return store.append([event])[0]


def pass_stage(store: Any, decl: Any, digest: str, stage: int, actor: str = "ci") -> None:
    append(
        store,
        decl,
        EventKind.STAGE_COMPLETED,
        actor,
        digest,
        stage,
        {"stage": stage, "status": "pass", "candidate": {"digest": digest}},
    )


def reach(store: Any, decl: Any, digest: str, stage: int) -> str:
    """Every stage before ``stage`` passed for ``digest``: the candidate may be approved for ``stage``."""
    for before in range(1, stage):
        pass_stage(store, decl, digest, before)
    return digest


def deploy_canary(store: Any, decl: Any, digest: str, actor: str = DEPLOYER) -> None:
    """Stage 1 passed, Stage 2 started by ``actor`` (the canary is in its observation window)."""
    pass_stage(store, decl, digest, 1)
    append(store, decl, EventKind.STAGE_STARTED, actor, digest, 2, {"stage": 2})


def events_of(store: Any, decl: Any, kind: str) -> list[RecordedEvent]:
    return [e for e in store.read_stream(decl.workload.name) if e.kind == kind]


def raw_ledger(store: Any) -> str:
    with store.engine.connect() as conn:
        return "\n".join(p for (p,) in conn.execute(sa.text("SELECT payload FROM events ORDER BY seq")))


# ---------------------------------------------------------------------------- the approval record


def test_approval_record_names_operator_candidate_stage_window_rollback_target_and_waived_gates(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    """Every field the spec lists is in ``approval.granted``; the note is posted and its id kept."""
    from railiance_ledger.lifecycle.waivers import record_waiver

    digest = register(store, decl)
    deploy_canary(store, decl, digest)
    pass_stage(store, decl, digest, 2)
    record_waiver(
        store=store,
        decl=decl,
        gate="smoke:home",
        operator=OTHER,
        reason="home page redesign in flight",
        candidate=digest,
        stage=3,
        statehub=hub,
    )

    event = approve(
        store=store,
        decl=decl,
        operator=APPROVER,
        stage=3,
        image=image_of("a"),
        window="2h",
        rollback_target=image_of("f"),
        waived_gates={"metrics_window": "Prometheus outage; logs reviewed by hand"},
        statehub=hub,
    )

    assert isinstance(event, NotedEvent)
    assert (EventKind.APPROVAL_GRANTED, APPROVER, digest, 3) == (
        event.kind,
        event.actor,
        event.candidate,
        event.stage,
    )
    p = event.payload
    assert APPROVER == p["operator"]
    assert {"image": image_of("a"), "digest": digest, "revision": "c0ffee" * 6 + "abcd"} == p["candidate"]
    assert 3 == p["stage"]
    assert (7200, "2h", "operator") == (
        p["observation_window"]["seconds"],
        p["observation_window"]["text"],
        p["observation_window"]["source"],
    )
    assert {
        "kind": "digest-and-values",
        "image": image_of("f"),
        "digest": digest_of("f"),
        "source": "operator",
    } == (p["rollback_target"])
    gates = {w["gate"]: (w["reason"], w["source"]) for w in p["waived_gates"]}
    assert {
        "metrics_window": ("Prometheus outage; logs reviewed by hand", "this approval"),
        "smoke:home": ("home page redesign in flight", "waiver.granted"),
    } == gates
    assert (True, False) == (p["production_critical"], p["retrospective"])
    assert {"registered_by": [REGISTRAR], "deployed_by": [DEPLOYER], "approver_is_independent": True} == (
        p["separation_of_duties"]
    )
    # the State Hub note, and the ledger's record of it
    assert event.note is not None and event.note.delivered
    assert [] == event.warnings
    approval_note = statehub.notes[-1]
    assert ("forge", "approval.granted") == (approval_note["workload"], approval_note["kind"])
    assert image_of("a") in approval_note["body"] and "2h" in approval_note["body"]
    posted = [e for e in events_of(store, decl, "note.posted") if e.payload["ref_event_id"] == event.event_id]
    assert 1 == len(posted)
    assert (True, approval_note["id"]) == (posted[0].payload["delivered"], posted[0].payload["note_id"])
    # a NotedEvent is exactly the stored event
    assert store.read_candidate("forge", digest)[-2] == event


def test_approval_defaults_window_to_the_declaration_and_rollback_target_to_previous_stable(
    store: Any, tmp_path: Path, hub: StateHub
) -> None:
    """Without ``window`` and ``rollback_target``: the declared window and the declared previous stable."""
    decl = write_app(tmp_path, rollback_extra=f'previous_stable = "{image_of("e")}"')
    digest = register(store, decl)
    reach(store, decl, digest, 3)

    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, statehub=hub)

    assert 3600 == event.payload["observation_window"]["seconds"]
    target = event.payload["rollback_target"]
    assert (image_of("e"), "declaration rollback.previous_stable") == (target["image"], target["source"])
    assert digest == event.candidate


def test_approval_rollback_target_defaults_to_the_ledger_current_stable(
    store: Any, decl: Any, hub: StateHub
) -> None:
    """The default rollback target is what we would roll back to: the lineage's current stable."""
    pytest.importorskip("railiance_ledger.ledger.projections")
    old = register(store, decl, "b")
    pass_stage(store, decl, old, 1)
    pass_stage(store, decl, old, 2)
    append(
        store, decl, EventKind.PROMOTION_COMPLETED, DEPLOYER, old, 3, {"image": image_of("b"), "digest": old}
    )
    reach(store, decl, register(store, decl, "a"), 3)

    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, image=image_of("a"), statehub=hub)

    target = event.payload["rollback_target"]
    assert ("ledger-stable", old) == (target["kind"], target["digest"])


def test_approval_refused_when_rollback_target_unknown(store: Any, decl: Any, hub: StateHub) -> None:
    """No stable in the ledger, none declared, none given: fail closed, nothing written."""
    reach(store, decl, register(store, decl), 3)
    before = len(store.read_stream("forge"))

    with pytest.raises(GateFailed, match="rollback target"):
        approve(store=store, decl=decl, operator=APPROVER, stage=3, statehub=hub)

    assert before == len(store.read_stream("forge"))


# ---------------------------------------------------------------------------- who may approve


def test_approval_without_operator_identity_is_invalid_input(store: Any, decl: Any) -> None:
    """No ``--operator`` and no RAILIANCE_OPERATOR: refused with exit 2, nothing written."""
    register(store, decl)

    with pytest.raises(InvalidInput) as info:
        approve(
            store=store, decl=decl, operator=None, stage=3, rollback_target="manual: redeploy previous chart"
        )

    assert 2 == info.value.exit_code
    assert "RAILIANCE_OPERATOR" in str(info.value)
    assert [] == events_of(store, decl, "approval.granted")


def test_approval_takes_the_operator_from_railiance_operator(
    store: Any, decl: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAILIANCE_OPERATOR is an explicit identity."""
    reach(store, decl, register(store, decl), 3)
    monkeypatch.setenv("RAILIANCE_OPERATOR", APPROVER)

    event = approve(store=store, decl=decl, operator=None, stage=3, rollback_target="manual: redeploy")

    assert APPROVER == event.actor


def test_registrar_cannot_approve_own_candidate(store: Any, decl: Any) -> None:
    """The operator who registered the candidate is refused (exit 1), naming the role."""
    register(store, decl)

    with pytest.raises(GateFailed) as info:
        approve(store=store, decl=decl, operator=REGISTRAR, stage=3, rollback_target="manual: x")

    assert 1 == info.value.exit_code
    assert "separation of duties" in str(info.value) and "registered the candidate" in str(info.value)
    assert [] == events_of(store, decl, "approval.granted")


def test_deployer_cannot_approve_and_the_error_names_both_roles(store: Any, decl: Any) -> None:
    """An operator who registered and deployed the candidate is told both."""
    digest = register(store, decl, operator=DEPLOYER)
    deploy_canary(store, decl, digest, actor=DEPLOYER)

    with pytest.raises(GateFailed) as info:
        approve(store=store, decl=decl, operator=DEPLOYER, stage=3, rollback_target="manual: x")

    message = str(info.value)
    assert "registered the candidate" in message
    assert "deployed it (stage.started stage 2" in message


def test_routing_changer_cannot_approve(store: Any, decl: Any) -> None:
    """Whoever changed routing for the candidate deployed it."""
    digest = register(store, decl)
    append(store, decl, EventKind.ROUTING_CHANGED, OTHER, digest, None, {"weight": 10})

    with pytest.raises(GateFailed, match=r"deployed it \(routing.changed"):
        approve(store=store, decl=decl, operator=OTHER, stage=3, rollback_target="manual: x")


def test_operator_outside_declared_approvers_is_refused(store: Any, tmp_path: Path) -> None:
    """``[approval] approvers`` restricts who may approve."""
    decl = write_app(tmp_path, extra='[approval]\napprovers = ["alice"]\n')
    reach(store, decl, register(store, decl), 3)

    with pytest.raises(GateFailed, match="not a declared approver"):
        approve(store=store, decl=decl, operator=OTHER, stage=3, rollback_target="manual: x")
    assert (
        APPROVER
        == approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x").actor
    )


@pytest.mark.parametrize("stage", [1, 4])
def test_approval_only_for_stages_2_and_3(store: Any, decl: Any, stage: int) -> None:
    register(store, decl)
    with pytest.raises(InvalidInput, match="stage"):
        approve(store=store, decl=decl, operator=APPROVER, stage=stage, rollback_target="manual: x")


def test_short_window_of_production_critical_workload_needs_a_waiver(store: Any, decl: Any) -> None:
    """Under 60 minutes for a production-critical workload: refused unless the window is waived."""
    reach(store, decl, register(store, decl), 3)

    with pytest.raises(GateFailed, match="minimum"):
        approve(store=store, decl=decl, operator=APPROVER, stage=3, window="30m", rollback_target="manual: x")

    event = approve(
        store=store,
        decl=decl,
        operator=APPROVER,
        stage=3,
        window="30m",
        rollback_target="manual: x",
        waived_gates={approvals.WINDOW_GATE: "hotfix; stable metrics reviewed"},
    )
    assert (True, "this approval") == (
        event.payload["observation_window"]["needs_waiver"],
        event.payload["observation_window"]["waived_by"],
    )


def test_recorded_stage2_window_waiver_covers_a_stage3_approval(store: Any, decl: Any) -> None:
    """The window waiver Stage 2 honours (gate observation_window, stage 2) also satisfies the approval."""
    from railiance_ledger.lifecycle.waivers import record_waiver

    digest = register(store, decl)
    reach(store, decl, digest, 3)
    waiver = record_waiver(
        store=store,
        decl=decl,
        gate=approvals.WINDOW_GATE,
        operator=OTHER,
        reason="maintenance window is 30 minutes",
        candidate=digest,
        stage=2,
    )

    event = approve(
        store=store, decl=decl, operator=APPROVER, stage=3, window="30m", rollback_target="manual: x"
    )

    assert waiver.event_id == event.payload["observation_window"]["waived_by"]


def test_empty_waiver_reason_is_refused(store: Any, decl: Any) -> None:
    register(store, decl)
    with pytest.raises(InvalidInput, match="needs a reason"):
        approve(
            store=store,
            decl=decl,
            operator=APPROVER,
            stage=3,
            rollback_target="manual: x",
            waived_gates={"smoke": "  "},
        )


def test_unregistered_candidate_is_invalid_input(store: Any, decl: Any) -> None:
    register(store, decl)
    with pytest.raises(InvalidInput, match="not registered"):
        approve(
            store=store,
            decl=decl,
            operator=APPROVER,
            stage=3,
            image=image_of("9"),
            rollback_target="manual: x",
        )


# ---------------------------------------------------------------------------- revocation


def test_revoke_withdraws_the_approval(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    """``approval.revoked`` references the approval; approval_state says revoked; a note is posted."""
    digest = register(store, decl)
    reach(store, decl, digest, 3)
    granted = approve(
        store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x", statehub=hub
    )
    assert approval_state(store, "forge", digest, 3).granted

    revoked = revoke(
        store=store,
        decl=decl,
        operator=OTHER,
        reason="error budget burned overnight",
        image=image_of("a"),
        statehub=hub,
    )

    assert (EventKind.APPROVAL_REVOKED, granted.event_id, APPROVER) == (
        revoked.kind,
        revoked.payload["approval_id"],
        revoked.payload["approved_by"],
    )
    assert False is revoked.payload["immediate_rollback"]
    state = approval_state(store, "forge", digest, 3)
    assert (False, True, revoked.recorded_at, OTHER, granted.event_id) == (
        state.granted,
        state.revoked,
        state.revoked_at,
        state.revoked_by,
        state.approval_id,
    )
    assert "approval.revoked" == statehub.notes[-1]["kind"]
    with pytest.raises(InvalidInput, match="nothing to revoke"):
        revoke(store=store, decl=decl, operator=OTHER, reason="again", image=image_of("a"), statehub=hub)


def test_revoke_during_observation_window_requires_immediate_rollback(store: Any, decl: Any) -> None:
    """A revocation while the canary is observed is an immediate-rollback condition, and says so."""
    digest = register(store, decl)
    deploy_canary(store, decl, digest)
    granted = approve(store=store, decl=decl, operator=APPROVER, stage=2, rollback_target="manual: x")

    revoked = revoke(
        store=store, decl=decl, operator=APPROVER, reason="saw auth failures", approval_id=granted.event_id
    )

    assert (True, 2, True) == (
        revoked.payload["in_observation_window"],
        revoked.payload["observing_stage"],
        revoked.payload["immediate_rollback"],
    )
    assert any("immediate rollback" in w for w in revoked.warnings)
    assert approval_state(store, "forge", digest, 2).revoked


def test_a_new_approval_after_revocation_is_in_force(store: Any, decl: Any) -> None:
    digest = register(store, decl)
    reach(store, decl, digest, 3)
    approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x")
    revoke(store=store, decl=decl, operator=OTHER, reason="wrong window", image=digest)
    again = approve(store=store, decl=decl, operator=OTHER, stage=3, rollback_target="manual: x")

    state = approval_state(store, "forge", digest, 3)
    assert (True, False, again.event_id) == (state.granted, state.revoked, state.approval_id)


def test_revoke_needs_operator_and_reason_and_a_known_approval(store: Any, decl: Any) -> None:
    register(store, decl)
    with pytest.raises(InvalidInput, match="operator identity"):
        revoke(store=store, decl=decl, operator=None, reason="x", image=image_of("a"))
    with pytest.raises(InvalidInput, match="needs a reason"):
        revoke(store=store, decl=decl, operator=OTHER, reason="", image=image_of("a"))
    with pytest.raises(InvalidInput, match="no approval"):
        revoke(store=store, decl=decl, operator=OTHER, reason="x", approval_id="not-an-id")


# ---------------------------------------------------------------------------- emergencies


def test_retrospective_approval_refused_without_emergency_exception(store: Any, decl: Any) -> None:
    reach(store, decl, register(store, decl), 3)
    with pytest.raises(GateFailed, match="no emergency exception"):
        approve(
            store=store,
            decl=decl,
            operator=APPROVER,
            stage=3,
            retrospective=True,
            rollback_target="manual: x",
        )
    assert [] == events_of(store, decl, "approval.granted")


def test_emergency_skip_of_stage_2_is_pending_until_its_retrospective_approval(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    """exception.emergency carries its scope, unlocks promotion, and stays pending until approved."""
    digest = register(store, decl)
    pass_stage(store, decl, digest, 1)

    exc = record_exception(
        store=store,
        decl=decl,
        operator=DEPLOYER,
        skip_stage=2,
        reason="CVE under active exploitation; canary would prolong exposure",
        statehub=hub,
    )

    assert (EventKind.EXCEPTION_EMERGENCY, 2, True) == (
        exc.kind,
        exc.payload["skip_stage"],
        exc.payload["awaiting_retrospective_approval"],
    )
    assert {"workload": "forge", "candidate": digest, "skipped_stage": 2, "unlocks_stage": 3} == exc.payload[
        "scope"
    ]
    assert "exception.emergency" == statehub.notes[-1]["kind"]
    # the ledger now lets the candidate be promoted without Stage 2
    append(store, decl, EventKind.PROMOTION_COMPLETED, DEPLOYER, digest, 3, {"digest": digest})
    pending = pending_retrospective(store, "forge")
    assert [(exc.event_id, digest, 2, DEPLOYER)] == [
        (p["exception_id"], p["digest"], p["skip_stage"], p["operator"]) for p in pending
    ]
    # the deployer who took the emergency action cannot approve it retrospectively
    with pytest.raises(GateFailed, match="separation of duties"):
        approve(
            store=store,
            decl=decl,
            operator=DEPLOYER,
            stage=3,
            retrospective=True,
            rollback_target="manual: x",
        )

    retro = approve(
        store=store,
        decl=decl,
        operator=APPROVER,
        stage=3,
        retrospective=True,
        rollback_target="manual: x",
        statehub=hub,
    )

    assert (True, [exc.event_id]) == (retro.payload["retrospective"], retro.payload["covers_exceptions"])
    assert [] == pending_retrospective(store, "forge")
    # revoking the retrospective approval puts the emergency back on the list
    revoke(
        store=store,
        decl=decl,
        operator=OTHER,
        reason="post-incident review disagrees",
        approval_id=retro.event_id,
    )
    assert [exc.event_id] == [p["exception_id"] for p in pending_retrospective(store, "forge")]


@pytest.mark.parametrize("skip", [0, 3])
def test_exception_only_skips_stage_1_or_2(store: Any, decl: Any, skip: int) -> None:
    register(store, decl)
    with pytest.raises(InvalidInput, match="cannot be skipped"):
        record_exception(store=store, decl=decl, operator=DEPLOYER, skip_stage=skip, reason="x")


def test_retrospective_approval_deadline_overdue_in_status_and_a_state_hub_note(
    store: Any, tmp_path: Path, hub: StateHub, statehub: StateHubServer
) -> None:
    """The declared deadline (here 2h; default 24h) is recorded with the exception; past it the pending
    exception is overdue: ``status`` says so and one State Hub note reports it (retried while undelivered),
    without touching the exception's own note."""
    from datetime import datetime, timedelta

    from click.testing import CliRunner

    from railiance_ledger.cli import app
    from railiance_ledger.lifecycle.notes import note_problem

    decl = write_app(tmp_path, extra='[approval]\nretrospective_deadline = "2h"\n')
    digest = register(store, decl)
    pass_stage(store, decl, digest, 1)
    exc = record_exception(
        store=store, decl=decl, operator=DEPLOYER, skip_stage=2, reason="CVE hotfix", statehub=hub
    )
    assert (7200, "declaration approval.retrospective_deadline") == (
        exc.payload["retrospective_deadline"]["seconds"],
        exc.payload["retrospective_deadline"]["source"],
    )
    recorded = datetime.fromisoformat(exc.recorded_at)
    [early] = pending_retrospective(store, "forge", now=recorded + timedelta(hours=1))
    [late] = pending_retrospective(store, "forge", now=recorded + timedelta(hours=3))
    assert (False, True) == (early["overdue"], late["overdue"])
    assert datetime.fromisoformat(late["due_at"]) == recorded + timedelta(hours=2)

    # status (text and JSON) shows the deadline; not overdue yet in real time
    shown = CliRunner().invoke(app, ["--ledger", store.url, "status", "forge", "--json"])
    assert shown.exit_code == 0, shown.output
    import json

    [entry] = json.loads(shown.output)["awaiting_retrospective"]
    assert (False, late["due_at"]) == (entry["overdue"], entry["due_at"])

    # past the deadline: one note, not repeated once delivered; State Hub down -> recorded, retried
    later = recorded + timedelta(hours=3)
    statehub.down()
    [failed] = approvals.post_overdue_notes(store=store, workload="forge", statehub=hub, now=later)
    assert not failed.delivered
    statehub.up()
    [sent] = approvals.post_overdue_notes(store=store, workload="forge", statehub=hub, now=later)
    assert sent.delivered and "OVERDUE" in statehub.notes[-1]["title"]
    assert [] == approvals.post_overdue_notes(store=store, workload="forge", statehub=hub, now=later)
    assert note_problem(store.read_stream("forge"), exc.event_id) is None  # its own note still counts
    assert [] == undelivered_notes(store, "forge")
    # the default deadline is 24h
    other = write_app(tmp_path / "b", name="blog", category="internal-service")
    blog = register(store, other, "b")
    pass_stage(store, other, blog, 1)
    record_exception(store=store, decl=other, operator=DEPLOYER, skip_stage=2, reason="outage", statehub=hub)
    [pending] = pending_retrospective(store, "blog")
    assert (86400, False) == (pending["deadline_seconds"], pending["overdue"])


def test_overdue_retrospective_approval_shows_in_status_text(store: Any, tmp_path: Path) -> None:
    import time

    from click.testing import CliRunner

    from railiance_ledger.cli import app

    decl = write_app(tmp_path, extra='[approval]\nretrospective_deadline = "1s"\n')
    digest = register(store, decl)
    record_exception(store=store, decl=decl, operator=DEPLOYER, skip_stage=1, reason="outage")
    time.sleep(1.5)
    shown = CliRunner().invoke(app, ["--ledger", store.url, "status", "forge"])
    assert shown.exit_code == 0, shown.output
    assert "OVERDUE since" in shown.output and digest in shown.output
    # what the Dagster production asset shows (overdue_approvals, with due_at)
    from railiance_ledger.lifecycle.production import production_view

    [overdue] = production_view(store, "forge", decl).overdue_approvals
    assert (True, digest) == (overdue["overdue"], overdue["digest"]) and overdue["due_at"]


def test_exception_without_statehub_warns_that_the_spec_wants_it_there(store: Any, decl: Any) -> None:
    """The spec asks emergency exceptions be recorded in State Hub: no State Hub is a warning."""
    register(store, decl)
    exc = record_exception(store=store, decl=decl, operator=DEPLOYER, skip_stage=2, reason="outage")
    assert 1 == len(exc.warnings) and "no State Hub configured" in exc.warnings[0]
    assert [] == events_of(store, decl, "note.posted")


def test_waiver_is_recorded_with_scope_and_noted(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    from railiance_ledger.lifecycle.waivers import record_waiver

    digest = register(store, decl)
    waiver = record_waiver(
        store=store,
        decl=decl,
        gate="canary_metrics",
        operator=OTHER,
        reason="metrics pipeline migration",
        candidate=digest,
        stage=2,
        statehub=hub,
    )

    assert {"gate": "canary_metrics", "candidate": digest, "stage": 2} == waiver.payload["scope"]
    assert ("waiver.granted", "forge") == (statehub.notes[-1]["kind"], statehub.notes[-1]["workload"])
    posted = events_of(store, decl, "note.posted")
    assert [(waiver.event_id, True, statehub.notes[-1]["id"])] == [
        (e.payload["ref_event_id"], e.payload["delivered"], e.payload["note_id"]) for e in posted
    ]


# ---------------------------------------------------------------------------- State Hub trouble


def test_statehub_down_is_retried_then_reported_in_the_ledger_not_dropped(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    """The approval stands; ``note.posted`` says delivered false with the error; a warning is returned."""
    reach(store, decl, register(store, decl), 3)
    statehub.down()

    event = approve(
        store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x", statehub=hub
    )

    assert 1 == len(events_of(store, decl, "approval.granted"))
    posted = events_of(store, decl, "note.posted")
    assert 1 == len(posted)
    p = posted[0].payload
    assert (event.event_id, False, None, 3, "AdapterUnavailable") == (
        p["ref_event_id"],
        p["delivered"],
        p["note_id"],
        p["attempts"],
        p["error_type"],
    )
    assert "connection refused" in p["error"]
    assert 1 == len(event.warnings) and "NOT delivered after 3 attempt(s)" in event.warnings[0]
    assert [event.event_id] == [n.ref_event_id for n in undelivered_notes(store, "forge")]


def test_statehub_5xx_then_recovers_delivers_the_note(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    reach(store, decl, register(store, decl), 3)
    statehub.fail_next(2, 502)

    event = approve(
        store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x", statehub=hub
    )

    assert event.note is not None and event.note.delivered and [] == event.warnings
    assert 1 == len(statehub.notes)


def test_services_never_build_a_statehub_from_the_environment(
    store: Any, decl: Any, statehub: StateHubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAILIANCE_STATEHUB_URL is read by the composition root (``Environment``), not by the service:
    without an injected State Hub nothing is posted and the missing note is reported."""
    reach(store, decl, register(store, decl), 3)
    monkeypatch.setenv("RAILIANCE_STATEHUB_URL", statehub.url)

    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x")

    assert [] == statehub.notes
    assert any("no State Hub configured" in w for w in event.warnings)


def test_production_critical_approval_without_statehub_warns(store: Any, decl: Any) -> None:
    reach(store, decl, register(store, decl), 3)
    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x")
    assert any("no State Hub configured" in w for w in event.warnings)


def test_secrets_in_reasons_reach_neither_statehub_nor_the_ledger(
    store: Any, decl: Any, hub: StateHub, statehub: StateHubServer
) -> None:
    """A token pasted into a reason is redacted in every approval, waiver, exception and revocation."""
    from railiance_ledger.lifecycle.waivers import record_waiver

    reach(store, decl, register(store, decl), 3)
    record_waiver(
        store=store,
        decl=decl,
        gate="canary_metrics",
        operator=OTHER,
        stage=2,
        reason=f"used token {SECRET} to check",
        statehub=hub,
    )
    approve(
        store=store,
        decl=decl,
        operator=APPROVER,
        stage=3,
        rollback_target=f"manual: curl -H 'Authorization: Bearer {SECRET}'",
        waived_gates={"smoke": f"password={SECRET}"},
        statehub=hub,
    )
    record_exception(
        store=store, decl=decl, operator=OTHER, skip_stage=2, reason=f"api_key={SECRET}", statehub=hub
    )
    revoke(
        store=store, decl=decl, operator=OTHER, reason=f"leaked {SECRET}", image=image_of("a"), statehub=hub
    )

    assert 4 == len(statehub.notes)
    assert SECRET not in statehub.raw_text()
    assert SECRET not in raw_ledger(store)
    assert "[REDACTED:" in raw_ledger(store)


def test_noted_event_round_trips_as_the_stored_event(store: Any, decl: Any) -> None:
    """The warnings ride outside the envelope: dump and hash are the stored event's."""
    reach(store, decl, register(store, decl), 3)
    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x")

    stored = next(e for e in store.read_stream("forge") if e.event_id == event.event_id)
    assert stored.model_dump() == event.model_dump()
    assert event.hash == event.expected_hash()
    assert {"event", "note", "warnings"} == set(event.as_dict())


def test_approval_of_non_critical_workload_is_recorded_without_warning(store: Any, tmp_path: Path) -> None:
    decl = write_app(tmp_path, name="hello-web", category="internal-service")
    reach(store, decl, register(store, decl), 3)
    event = approve(store=store, decl=decl, operator=APPROVER, stage=3, rollback_target="manual: x")
    assert (False, False, []) == (
        event.payload["production_critical"],
        event.payload["approval_required"],
        event.warnings,
    )
