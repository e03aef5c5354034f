"""Stage 1 as one service call: ``run_stage1`` runs every gate, applies recorded waivers and records
``stage.started`` then ``stage.completed`` (or, with no registered digest, a ``note.posted``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from railiance_ledger.declaration import load_declaration
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent, format_timestamp
from railiance_ledger.domain.gates import LOCAL_CHECK_PREFIX
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.domain.stage_result import (
    Check,
    CheckStatus,
    Evidence,
    LedgerRef,
    StageResult,
    overall_status,
)
from railiance_ledger.domain.waiving import WaiverWording, apply_waivers
from railiance_ledger.errors import ConcurrencyConflict, InvalidInput
from railiance_ledger.lifecycle.checks import judge_all_or_unevaluated, judge_or_unevaluated
from railiance_ledger.lifecycle.kit import StageRun, make_evidence
from railiance_ledger.lifecycle.stage1.context import (
    REQUIRED_CHECKS,
    STAGE,
    Stage1Context,
    local_env,
)
from railiance_ledger.lifecycle.stage1.declared import check_migrations, check_observability
from railiance_ledger.lifecycle.stage1.local import check_local_commands, check_local_health
from railiance_ledger.lifecycle.stage1.render import check_manifests
from railiance_ledger.lifecycle.stage1.secrets import check_secrets, with_printed_secrets
from railiance_ledger.lifecycle.stage1.source import (
    NOT_READ,
    check_artifact_deterministic,
    check_artifact_traceable,
    check_candidate_immutable,
    check_platform,
    check_source_revision,
    read_artifact,
)
from railiance_ledger.ports import Clock, HelmPort

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.lifecycle.registry_poll import ArtifactFacts, RegistryLookup

_APPEND_ATTEMPTS = 3


@dataclass(frozen=True)
class Stage1Outcome:
    """What ``run_stage1`` did: the stage result, the JSON document (as stored, redacted, with
    ``ledger`` filled in), the events it appended, and the process exit code (0 pass, 1 fail)."""

    result: StageResult
    document: dict[str, Any]
    events: list[RecordedEvent]
    exit_code: int
    recorded_as: str
    """``stage.completed``, or ``note.posted`` when no registered candidate could be named."""

    @property
    def passed(self) -> bool:
        """True when every check passed or was waived."""
        return self.result.status == "pass"

    def human_lines(self) -> list[str]:
        """The human report: one line per check (verdict, name, reason), then the verdict."""
        doc = self.document
        cand = doc["candidate"]
        lines = [
            (
                f"Stage 1 (local validation) of {doc['workload']['name']} "
                f"candidate {cand.get('image') or cand.get('digest') or '(none)'} "
                f"at revision {cand.get('revision') or '?'}"
            )
        ]
        for c in doc["checks"]:
            mark = {"pass": "PASS", "fail": "FAIL", "waived": "WAIVED"}[c["status"]]
            extra = f" [{c['failure']}]" if c.get("failure") and c["status"] == "fail" else ""
            extra += f" (waiver {c['waiver']})" if c.get("waiver") else ""
            lines.append(f"  {mark:<6} {c['name']}{extra}: {c.get('reason', '')}")
        ledger = doc.get("ledger") or {}
        lines.append(
            f"Stage 1 {doc['status'].upper()}; recorded as {self.recorded_as} "
            f"at ledger seq {ledger.get('seq')}"
            " (Stage 1 never authorizes production traffic)"
        )
        return lines


def run_stage1(
    *,
    store: EventStore,
    app_dir: Path,
    operator: str,
    image: str | None = None,
    helm: HelmPort,
    http: httpx.Client,
    skip_checks: Sequence[str] = (),
    now: Clock | Callable[[], datetime] | None = None,
    env: Mapping[str, str] | None = None,
    registries: RegistryLookup | None = None,
) -> Stage1Outcome:
    """Run Stage 1 (local validation) for the workload in ``app_dir`` and record its result.

    Loads ``railiance/app.toml``; names the candidate (``image`` as ``REF@sha256:...``,
    registering it when new, else the newest registered candidate); runs every required check and
    each declared local check; applies recorded waivers; appends ``stage.started`` and
    ``stage.completed`` (the redacted stage-result document). Returns the outcome with exit code 0
    on pass, 1 on fail. Raises ``DeclarationError``/``InvalidInput`` (exit 2) for an invalid
    declaration or an unknown ``--skip-check`` name before anything is recorded, and ledger
    errors (exit 3) when the ledger refuses. ``now`` is the clock (default: the system clock).
    ``registries`` gives the registry the candidate's image configuration is read from (provenance
    label, platforms); without it an ``image-label`` revision policy or a declared platform fails.
    """
    app_dir = Path(app_dir)
    decl = load_declaration(app_dir)
    declared = [lc.name for lc in (getattr(decl, "local_checks", None) or [])]
    unknown = sorted(set(skip_checks) - set(declared))
    if unknown:
        raise InvalidInput(
            f"--skip-check names no declared local check: {', '.join(unknown)}",
            hint=f"declared local checks: {', '.join(declared) or 'none'}",
        )
    run = StageRun.for_workload(store=store, decl=decl, operator=operator, stage=STAGE, clock=now)
    ctx = Stage1Context(run=run, app_dir=app_dir)
    run_env = dict(env) if env is not None else local_env()

    source_check = check_source_revision(ctx)
    candidate_check, appended = check_candidate_immutable(ctx, image=image)
    run.events.extend(appended)
    if appended:
        run.refresh()
    artifact = read_artifact(ctx, registries)
    candidate_check = check_platform(ctx, candidate_check, artifact)

    if run.digest is not None:
        run.record_started(
            {
                "stage": STAGE,
                "target_environment": "local",
                "revision": run.revision,
                "image": run.image,
                "started_at": format_timestamp(run.started_at),
            }
        )

    checks_fixed: dict[str, Check] = {
        "source_revision_identified": source_check,
        "candidate_immutable": candidate_check,
    }
    checks_fixed["manifests_valid"] = judge_or_unevaluated(
        "manifests_valid", lambda: check_manifests(ctx, helm)
    )
    checks_fixed["secrets_by_reference"] = judge_or_unevaluated(
        "secrets_by_reference", lambda: check_secrets(ctx)
    )
    checks_fixed["local_health"] = judge_or_unevaluated(
        "local_health", lambda: check_local_health(ctx, http, run_env)
    )
    local_checks = judge_all_or_unevaluated(
        f"{LOCAL_CHECK_PREFIX}*", "local checks", lambda: check_local_commands(ctx, set(skip_checks), run_env)
    )
    checks_fixed["secrets_by_reference"] = with_printed_secrets(
        checks_fixed["secrets_by_reference"], ctx.printed_secrets
    )
    checks_fixed["migrations_classified"] = judge_or_unevaluated(
        "migrations_classified", lambda: check_migrations(ctx)
    )
    checks_fixed["observability_declared"] = judge_or_unevaluated(
        "observability_declared", lambda: check_observability(ctx)
    )

    last_conflict: ConcurrencyConflict | None = None
    for _attempt in range(_APPEND_ATTEMPTS):
        # Ledger-derived checks are judged on the history we append after, so a concurrent
        # writer (another digest for this revision, a new waiver) is never missed.
        history = run.refresh()
        checks = assemble_checks(ctx, checks_fixed, local_checks, history, artifact)
        result = run.result(checks, evidence=result_evidence(ctx, checks))
        doc = redact_value(result.to_document())
        if run.digest is None:
            event = NewEvent(
                stream=run.workload,
                kind=EventKind.NOTE_POSTED,
                actor=operator,
                payload={
                    "topic": "stage1.refused",
                    "note": "Stage 1 refused: no candidate named by an immutable, registered digest",
                    "stage_result": doc,
                },
            )
        else:
            event = run.completed_event(doc)
        try:
            recorded = run.append([event], expected_version=run.version)[0]
        except ConcurrencyConflict as exc:
            last_conflict = exc
            continue
        doc = {**doc, "ledger": {"seq": recorded.seq, "hash": recorded.hash}}
        final = StageResult.model_validate({**doc, "ledger": LedgerRef(seq=recorded.seq, hash=recorded.hash)})
        return Stage1Outcome(
            result=final,
            document=doc,
            events=list(run.events),
            exit_code=0 if final.status == "pass" else 1,
            recorded_as=str(event.kind),
        )
    assert last_conflict is not None
    raise last_conflict


def assemble_checks(
    ctx: Stage1Context,
    fixed: Mapping[str, Check],
    local_checks: list[Check],
    history: Sequence[RecordedEvent],
    artifact: ArtifactFacts | None = None,
) -> list[Check]:
    """Stage 1's checks in report order, the ledger-derived ``artifact_deterministic`` judged on
    ``history`` (and the image's labels in ``artifact``), with the candidate's recorded waivers applied."""
    deterministic = judge_or_unevaluated(
        "artifact_deterministic", lambda: check_artifact_deterministic(ctx, history, artifact)
    )
    traceable = judge_or_unevaluated(
        "artifact_traceable", lambda: check_artifact_traceable(ctx, artifact or NOT_READ)
    )
    judged = {**fixed, "artifact_deterministic": deterministic, "artifact_traceable": traceable}
    ordered: list[Check] = []
    for name in REQUIRED_CHECKS:
        ordered.append(judged[name])
        if name == "local_health":
            ordered += local_checks
    if ctx.run.digest is None:
        return ordered
    return apply_waivers(ordered, ctx.run.waivers(history), wording=WaiverWording.WAIVER_FIRST)


def result_evidence(ctx: Stage1Context, checks: list[Check]) -> list[Evidence]:
    """The stage result's own evidence: revision, candidate, start, and a count of the verdicts."""
    run = ctx.run
    status = overall_status(checks)
    passed = sum(1 for c in checks if c.status == CheckStatus.PASS)
    waived = sum(1 for c in checks if c.status == CheckStatus.WAIVED)
    evidence: list[Evidence] = []
    if run.revision:
        evidence.append(make_evidence("commit", run.revision, "source revision"))
    if run.digest:
        evidence.append(make_evidence("digest", run.image or run.digest, "candidate"))
    evidence.append(make_evidence("timestamp", format_timestamp(run.started_at), "stage 1 started"))
    evidence.append(
        make_evidence(
            "summary",
            f"stage1:{status}",
            f"{passed} passed, {waived} waived, {len(checks) - passed - waived} failed of {len(checks)}; "
            "Stage 1 does not authorize production traffic",
        )
    )
    return evidence
