"""Stage 2 context: gate names, the canary context (candidate, waivers, approval, rendering), the
result assembly and the State Hub progress note.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger import config
from railiance_ledger.domain import canary as dc
from railiance_ledger.domain import gates
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.stage_result import (
    Approval,
    Candidate,
    Check,
    Evidence,
    StageResult,
)
from railiance_ledger.lifecycle.cluster.objects import first_of_kind
from railiance_ledger.lifecycle.kit import ApprovalDecision, RunView, StageRun
from railiance_ledger.lifecycle.notes import post_and_record

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.lifecycle.notes import NoteOutcome
    from railiance_ledger.ports import Clock, StateHubPort


PRECHECKS: tuple[str, ...] = gates.names_for(2, gates.GatePhase.PRECHECK)
"""Every Stage 2 precheck, in the order they run (all before anything is applied)."""


STATEHUB_GATE: str = gates.Gate.STATEHUB_NOTE.value
"""The end-of-window check that the Stage 2 progress note reached State Hub (required evidence)."""


IDENTITY_GATE: str = gates.Gate.CANARY_RELEASE_IDENTITY.value
"""The end-of-window check that the recorded canary release (name, namespace, revision, rendered
manifests sha256) is still what is deployed, pinned to the candidate digest."""


ACCEPTANCE_CHECKS: tuple[str, ...] = gates.names_for(2, gates.GatePhase.ACCEPTANCE)
"""Every check of a Stage 2 result completed at the end of the window, in order (an immediate
rollback puts ``immediate_rollback`` first)."""


@dataclass
class StageOutcome:
    """What a Stage 2 service call did: the document to render, the exit code, the events appended.

    ``document`` is a stage-result document (``railiance.stage-result/v1``) when the stage completed
    (prechecks failed, canary accepted, canary rejected or rolled back); for a successful deploy or
    an observation that is still running it is a progress document with ``"phase"`` set to
    ``"deployed"`` or ``"observing"`` and the checks run so far.
    """

    document: dict[str, Any]
    exit_code: int
    events: list[RecordedEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rolled_back: bool = False
    samples: int = 0
    expected_samples: int = 0

    @property
    def passed(self) -> bool:
        """True when the call succeeded (exit 0)."""
        return self.exit_code == 0


@dataclass
class CanaryContext(RunView):
    """One Stage 2 call: the stage run (candidate, history, operator, clock) and the canary's facts."""

    run: StageRun
    namespace: str
    release: str
    stable_release: str
    stable_namespace: str
    waivers: dict[str, RecordedEvent]
    rendered_text: str = ""
    rendered_docs: list[dict[str, Any]] = field(default_factory=list)
    routing: dc.RoutingSpec | None = None
    form_decision: dc.FormDecision | None = None
    rollback_target: dict[str, Any] | None = None
    approval_event: ApprovalDecision | None = None
    home: Path | None = None


def repo_path(repository: str) -> str:
    """The registry path of ``registry.host[:port]/path`` (the host part is the registry itself)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repository


def values_files(decl: Declaration) -> list[Path]:
    files: list[Path] = []
    if decl.chart.values:
        files.append(decl.resolve(decl.chart.values))
    if decl.stages.canary.values:
        files.append(decl.resolve(decl.stages.canary.values))
    return files


def set_values(ctx: CanaryContext) -> dict[str, str]:
    """Pin the candidate digest (literal strings); booleans go in ``CANARY_OVERRIDES`` instead."""
    return {
        "image.repository": ctx.repository,
        "image.digest": ctx.digest,
        "track": "canary",
    }


CANARY_OVERRIDES = (
    "# Railiance Stage 2: the canary's routing objects belong to the ledger\n"
    "ingress:\n  enabled: false\ncanary:\n  enabled: false\n"
)
"""Typed values applied last to the canary release: the chart's own Ingress (and its canary
annotations) off. They are a values file, not ``--set-literal``: a literal ``"false"`` is a
non-empty string, which Go templates treat as true (the chart would render its Ingress anyway)."""


def overrides_file(home: Path | None = None) -> Path:
    """``CANARY_OVERRIDES`` written once to ``$RAILIANCE_HOME/values/canary-overrides-<sha12>.yaml``."""

    sha = hashlib.sha256(CANARY_OVERRIDES.encode()).hexdigest()[:12]
    base = (home or config.railiance_home()) / "values"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"canary-overrides-{sha}.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != CANARY_OVERRIDES:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(CANARY_OVERRIDES, encoding="utf-8")
        tmp.replace(path)
    return path


def canary_values_files(ctx: CanaryContext) -> list[Path]:
    """The declared values files, then the typed canary overrides."""
    return [*values_files(ctx.decl), overrides_file(ctx.home)]


def canary_selector(ctx: CanaryContext) -> str:
    dep = first_of_kind(ctx.rendered_docs, "Deployment") or first_of_kind(ctx.rendered_docs, "StatefulSet")
    labels = (((dep or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        labels = {"app.kubernetes.io/instance": ctx.release}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def canary_service(ctx: CanaryContext) -> str:
    svc = first_of_kind(ctx.rendered_docs, "Service")
    return str(((svc or {}).get("metadata") or {}).get("name") or ctx.release)


def routing_spec(
    ctx: CanaryContext, form: dc.CanaryForm, provider: dc.Provider, fallback_from: str | None
) -> dc.RoutingSpec:
    decl = ctx.decl
    c = decl.canary
    return dc.RoutingSpec(
        workload=ctx.workload,
        namespace=ctx.namespace,
        host=decl.routing.host or "",
        stable_service=decl.routing.service,
        canary_service=canary_service(ctx),
        port=int(decl.routing.port),
        form=form,
        provider=provider,
        weight=int(c.weight or 0) if form is dc.CanaryForm.WEIGHTED else 0,
        header=c.header or dc.DEFAULT_HEADER,
        path_prefix=c.path_prefix or "/canary",
        ingress_class=decl.routing.ingress_class or "nginx",
        tls_secret=decl.routing.tls_secret,
        canary_release=ctx.release,
        route_name=decl.routing.service,
        fallback_from=fallback_from,
    )


def join_selector(*parts: str) -> str:
    return ",".join(strip_braces(p) for p in parts if strip_braces(p))


def strip_braces(selector: str) -> str:
    return selector.strip().removeprefix("{").removesuffix("}").strip()


def candidate_of(ctx: CanaryContext) -> Candidate:
    """The result's candidate (the stage kit's)."""
    return ctx.run.candidate_model()


def approval_model(ctx: CanaryContext) -> Approval:
    """The result's approval: the one recorded at deploy time, else the one in force now."""
    return ctx.run.approval_model(ctx.approval_event or ctx.run.approval_in_force())


def stage_result(
    ctx: CanaryContext, checks: list[Check], evidence: list[Evidence], started: datetime, finished: datetime
) -> StageResult:
    """The Stage 2 result of ``checks`` (started when the canary call or window started)."""
    ctx.run.started_at = started
    return ctx.run.result(
        checks,
        evidence=evidence,
        approval=approval_model(ctx),
        rollback_target=ctx.rollback_target,
        candidate=candidate_of(ctx),
        finished_at=finished,
    )


def complete_stage(
    ctx: CanaryContext, result: StageResult
) -> tuple[dict[str, Any], list[RecordedEvent], list[str]]:
    """Append ``stage.completed`` and return the document with its ledger reference."""
    done = ctx.run.complete(result)
    return done.document, [done.event] if done.event is not None else [], done.warnings


def make_context(
    store: EventStore,
    decl: Declaration,
    image: str | None,
    *,
    operator: str,
    clock: Clock | Callable[[], datetime] | None = None,
) -> CanaryContext:
    """The context of one Stage 2 call for ``image`` (else the newest registered candidate)."""
    run = StageRun.open(store=store, decl=decl, operator=operator, stage=2, image=image, clock=clock)
    return CanaryContext(
        run=run,
        namespace=decl.stages.canary.namespace,
        release=decl.stages.canary.release,
        stable_release=decl.stages.production.release,
        stable_namespace=decl.stages.production.namespace,
        waivers=run.waivers(),
    )


def target_text(target: Mapping[str, Any] | None) -> str:
    if not target:
        return "unknown"
    return str(
        target.get("image")
        or target.get("digest")
        or (
            f"{target.get('release')} revision {target.get('revision')}"
            if target.get("release")
            else target.get("detail")
        )
    )


def post_note(
    store: EventStore,
    statehub: StateHubPort | None,
    event: RecordedEvent,
    decl: Declaration,
    *,
    title: str,
    body: str,
    evidence: list[dict[str, Any]],
    warnings: list[str],
) -> NoteOutcome:
    """Post a Stage 2 progress note about ``event`` to ``statehub`` (none configured: nothing is sent)
    and record the outcome as ``note.posted``; an undelivered or unposted note adds a warning."""
    note = post_and_record(
        store=store,
        statehub=statehub,
        event=event,
        title=title,
        body=body,
        evidence=evidence,
        required=True,
        required_reason="Stage 2 evidence includes a State Hub progress note",
    )
    if note.warning:
        warnings.append(note.warning)
    return note


def canary_thresholds(decl: Declaration) -> dc.Thresholds:
    t = decl.canary.thresholds
    return dc.Thresholds.from_mapping(t.model_dump())


def refresh_context(ctx: CanaryContext) -> None:
    """Re-read the ledger: approvals revoked and waivers recorded during the window count at its end."""
    ctx.run.refresh()
    ctx.waivers = ctx.run.waivers()
