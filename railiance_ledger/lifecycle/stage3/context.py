"""Stage 3 context: gate names, the promotion context, rendering, values, and the result assembly."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger import config
from railiance_ledger.domain import gates
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import (
    Approval,
    Candidate,
    Check,
    Evidence,
    StageResult,
)
from railiance_ledger.errors import ActionNotConfirmed, AdapterNotFound
from railiance_ledger.lifecycle.cluster.manifests import canonical_manifests
from railiance_ledger.lifecycle.cluster.objects import split_docs
from railiance_ledger.lifecycle.kit import ApprovalDecision, RunView, StageRun
from railiance_ledger.lifecycle.rollback.model import RestoreTarget
from railiance_ledger.lifecycle.stage2 import StageOutcome

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import Clock, HelmPort


PRECHECKS: tuple[str, ...] = gates.names_for(3, gates.GatePhase.PRECHECK)
"""Every Stage 3 precheck, in the order they run (all before anything changes): the spec's six, then
that the required State Hub note has somewhere to go."""


PROMOTION_CHECKS: tuple[str, ...] = gates.names_for(3, gates.GatePhase.PROMOTION)
"""The checks a Stage 3 result reports after the prechecks, once the promotion was attempted (a failed
one adds ``automatic_rollback``); all pass in a passing result."""


@dataclass
class PromotionOutcome(StageOutcome):
    """A Stage 3 result: the stage-result document (``phase`` ``completed``), exit code, events.

    ``rolled_back`` is True when the promotion failed after changing production and the previous
    stable was restored; ``rollback`` is that rollback's document; ``workflow_id`` names the
    promotion (also in the ledger and the State Hub note).
    """

    workflow_id: str | None = None
    rollback: dict[str, Any] | None = None


@dataclass
class PromotionContext(RunView):
    """One promotion: the stage run (candidate, history, operator, clock) and the promotion's facts."""

    run: StageRun
    namespace: str
    release: str
    home: Path | None
    stage2_result: RecordedEvent | None = None
    exception: RecordedEvent | None = None
    rendered_text: str = ""
    rendered_docs: list[dict[str, Any]] = field(default_factory=list)
    previous: RestoreTarget | None = None
    approval: ApprovalDecision | None = None
    canary: RecordedEvent | None = None
    switch: dict[str, Any] | None = None

    @property
    def operator(self) -> str:
        return self.run.operator

    @property
    def form(self) -> str:
        """The declared promotion form (``[promotion] form``): ``release-replace`` or ``routing-switch``."""
        return str(self.decl.promotion.form)


def values_files(decl: Declaration) -> list[Path]:
    files: list[Path] = []
    if decl.chart.values:
        files.append(decl.resolve(decl.chart.values))
    if decl.stages.production.values:
        files.append(decl.resolve(decl.stages.production.values))
    return files


def set_values(ctx: PromotionContext) -> dict[str, str]:
    return {"image.repository": ctx.repository, "image.digest": ctx.digest}


def helm_command(ctx: PromotionContext) -> str:
    decl = ctx.decl
    args = ["helm", "upgrade", "--install", ctx.release, str(decl.chart.path), "--namespace", ctx.namespace]
    for vf in (decl.chart.values, decl.stages.production.values):
        if vf:
            args += ["--values", str(vf)]
    for k, v in set_values(ctx).items():
        args += ["--set-literal", f"{k}={v}"]
    return shlex.join(args + ["--wait"])


def render(ctx: PromotionContext, helm: HelmPort) -> None:

    if ctx.rendered_text:
        return
    decl = ctx.decl
    text = helm.template(
        chart=decl.resolve(decl.chart.path),
        release=ctx.release,
        namespace=ctx.namespace,
        values_files=values_files(decl),
        set_values=set_values(ctx),
        kube_version=decl.workload.kubernetes_version,
    )
    ctx.rendered_text = canonical_manifests(text)
    ctx.rendered_docs = split_docs(ctx.rendered_text)
    for doc in ctx.rendered_docs:
        doc.setdefault("metadata", {}).setdefault("namespace", ctx.namespace)


def store_values(
    decl: Declaration, home: Path | None, files: Sequence[str | None] | None = None
) -> list[dict[str, Any]]:
    """sha256 of every production values file (or of ``files``); each copied to
    ``$RAILIANCE_HOME/values/<sha256>.yaml``."""

    out: list[dict[str, Any]] = []
    base = (home or config.railiance_home()) / "values"
    for rel in files if files is not None else (decl.chart.values, decl.stages.production.values):
        if not rel:
            continue
        path = decl.resolve(rel)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        base.mkdir(parents=True, exist_ok=True)
        target = base / f"{sha}.yaml"
        if not target.exists():
            target.write_bytes(data)
        out.append({"file": str(rel), "sha256": sha, "bytes": len(data)})
    return out


def latest_result(
    history: Sequence[RecordedEvent], kind: str, digest: str, stage: int | None = None
) -> RecordedEvent | None:
    found: RecordedEvent | None = None
    for ev in history:
        if ev.kind == kind and ev.candidate == digest and (stage is None or ev.stage == stage):
            found = ev
    return found


def canary_deployment(history: Sequence[RecordedEvent], digest: str) -> RecordedEvent | None:
    """The candidate's latest Stage 2 ``stage.started`` whose canary was not rolled back since."""
    started = latest_result(history, EventKind.STAGE_STARTED, digest, 2)
    if started is None:
        return None
    for ev in history:
        if (
            ev.seq > started.seq
            and ev.candidate == digest
            and ev.kind == EventKind.ROLLBACK_COMPLETED
            and ev.stage == 2
        ):
            return None
    return started


def helm_revision(helm: HelmPort, release: str, namespace: str) -> int | None:
    try:
        revisions = helm.history(release=release, namespace=namespace)
    except AdapterNotFound:
        return None
    deployed = [r for r in revisions if str(r.get("status", "")).lower() == "deployed"]
    if not deployed:
        return None
    rev = deployed[-1].get("revision")
    return int(rev) if isinstance(rev, (int, str)) and str(rev).isdigit() else None


def approval_model(ctx: PromotionContext) -> Approval:
    """The result's approval: the Stage 3 approval the prechecks found (the stage kit's model)."""
    return ctx.run.approval_model(ctx.approval)


def rollback_target_of(ctx: PromotionContext) -> dict[str, Any] | None:
    if ctx.previous is None:
        return None
    kind = ctx.decl.rollback.strategy
    return {"kind": kind, **ctx.previous.as_dict(), "retained": True}


def stage_result(ctx: PromotionContext, checks: list[Check], evidence: list[Evidence]) -> StageResult:
    """The Stage 3 result of ``checks``, finished now."""
    return ctx.run.result(
        checks,
        evidence=evidence,
        approval=approval_model(ctx),
        rollback_target=rollback_target_of(ctx),
        candidate=Candidate(digest=ctx.digest, image=ctx.image, revision=ctx.revision),
    )


def complete_stage(
    ctx: PromotionContext, result: StageResult
) -> tuple[dict[str, Any], list[RecordedEvent], list[str]]:
    """Append ``stage.completed``; the document (``phase`` ``completed``) with its ledger reference."""
    done = ctx.run.complete(result)
    doc = {**done.document, "phase": "completed"}
    return doc, [done.event] if done.event is not None else [], done.warnings


def make_context(
    store: EventStore,
    decl: Declaration,
    image: str | None,
    operator: str,
    home: Path | None,
    clock: Clock | Callable[[], datetime] | None = None,
) -> PromotionContext:
    """The context of one promotion of ``image`` (else the newest registered candidate)."""
    run = StageRun.open(store=store, decl=decl, operator=operator, stage=3, image=image, clock=clock)
    return PromotionContext(
        run=run,
        namespace=decl.stages.production.namespace,
        release=decl.stages.production.release,
        home=home,
    )


class PromotionFailed(ActionNotConfirmed):
    """A promotion step failed after production may have changed."""
