"""The ``railiance`` command: parse, call the lifecycle, render.

Thin by design: every command parses its arguments, calls one lifecycle service or ledger read,
and renders the result as text or ``--json``. Imports are lazy so ``railiance status`` stays cheap,
and nothing here imports dagster. Every byte printed goes through the one redaction path.

Exit codes: 0 pass/ok, 1 a gate or stage failed, 2 invalid input, 3 ledger integrity/concurrency.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from railiance_ledger.ledger.store import EventStore

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_LEDGER = 0, 1, 2, 3


@dataclass
class Globals:
    ledger: str | None = None
    json: bool = False
    operator: str | None = None


G = Globals()

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

_json_opt = click.option(
    "--json", "json_out", is_flag=True, default=False, help="Print machine-readable JSON."
)
_operator_opt = click.option(
    "--operator", "operator", default=None, help="Who is acting (else RAILIANCE_OPERATOR, else login name)."
)
_app_dir = click.argument("app_dir", type=click.Path(path_type=Path))
_image_opt = click.option(
    "--image", "image", default=None, help="Candidate REPOSITORY@sha256:... (else the newest registered)."
)
_kubeconfig_opt = click.option(
    "--kubeconfig", "kubeconfig", default=None, help="Kubeconfig file (else KUBECONFIG)."
)
_context_opt = click.option(
    "--context", "context", default=None, help="Kubeconfig context (else RAILIANCE_KUBE_CONTEXT)."
)


@click.group(name="railiance", context_settings=CONTEXT, no_args_is_help=True)
@click.option(
    "--ledger",
    "ledger",
    default=None,
    help="Ledger URL (else RAILIANCE_LEDGER_URL, else sqlite:///$RAILIANCE_HOME/ledger.db).",
)
@_json_opt
@click.option("--operator", "operator", default=None, help="Who is acting.")
def _main(ledger: str | None, json_out: bool, operator: str | None) -> None:
    """Railiance Ledger: gated, evidence-recording promotion of workloads."""
    G.ledger, G.json, G.operator = ledger, json_out, operator


app = _main
candidate_app = click.Group(
    "candidate",
    help="Register candidate artifacts (images by immutable digest).",
    no_args_is_help=True,
    context_settings=CONTEXT,
)
ledger_app = click.Group(
    "ledger", help="Ledger integrity and export.", no_args_is_help=True, context_settings=CONTEXT
)
app.add_command(candidate_app)
app.add_command(ledger_app)


# ---------------------------------------------------------------------------- rendering helpers


def _redact(value: Any) -> Any:
    from railiance_ledger.domain.redaction import redact_value

    return redact_value(value)


def _echo(text: str, *, err: bool = False) -> None:
    from railiance_ledger.domain.redaction import redact

    click.echo(redact(text), err=err)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(_redact(value), indent=2, sort_keys=True, default=str))


def _want_json(flag: bool) -> bool:
    return flag or G.json


def _fail(exc: Exception, *, as_json: bool) -> NoReturn:
    from railiance_ledger.errors import DeclarationError, RailianceError

    code = exc.exit_code if isinstance(exc, RailianceError) else EXIT_FAILED
    if as_json:
        body: dict[str, Any] = {
            "ok": False,
            "error": type(exc).__name__,
            "message": str(exc),
            "exit_code": code,
        }
        if isinstance(exc, DeclarationError):
            body["issues"] = [i.as_dict() for i in exc.issues]
        _emit_json(body)
    else:
        if isinstance(exc, DeclarationError) and exc.issues:
            _echo(f"error: {exc.message}", err=True)
            for issue in exc.issues:
                _echo(f"  {issue}", err=True)
        else:
            _echo(f"error: {exc}", err=True)
    raise click.exceptions.Exit(code)


@contextmanager
def _guard(as_json: bool) -> Iterator[None]:
    """Translate our errors into the exit-code contract; never show a traceback for them."""
    from railiance_ledger.errors import RailianceError

    try:
        yield
    except click.exceptions.Exit:
        raise
    except RailianceError as exc:
        _fail(exc, as_json=as_json)


def _store() -> EventStore:
    from railiance_ledger import config
    from railiance_ledger.ledger.store import EventStore

    return EventStore.open(config.ledger_url(G.ledger))


def _actor(flag: str | None) -> str:
    from railiance_ledger import config

    return config.operator(flag or G.operator)


def _load(app_dir: Path) -> Any:
    from railiance_ledger.declaration.loader import load_declaration

    return load_declaration(app_dir)


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, list):
        return [_as_dict(o) for o in obj]
    return obj


def _render_stage_result(doc: dict[str, Any]) -> None:
    """Human rendering of a stage-result document: one line per check with verdict and reason."""
    status = doc.get("status", "fail")
    cand = doc.get("candidate") or {}
    _echo(
        f"Stage {doc.get('stage')} ({doc.get('target_environment')}) for {doc['workload']['name']} "
        f"{cand.get('digest') or '<no candidate>'}: {status.upper()}"
    )
    marks = {"pass": "PASS  ", "fail": "FAIL  ", "waived": "WAIVED"}
    for check in doc.get("checks", []):
        reason = check.get("reason") or ""
        kind = f" [{check['failure']}]" if check.get("failure") else ""
        _echo(f"  {marks.get(check['status'], check['status'])} {check['name']}{kind}: {reason}")
    ledger = doc.get("ledger")
    if ledger:
        _echo(f"  ledger seq {ledger['seq']} hash {ledger['hash'][:16]}...")


# ---------------------------------------------------------------------------- validate


@app.command("validate")
@_app_dir
@click.option(
    "--runbook",
    "runbook",
    default=None,
    type=click.Path(path_type=Path),
    help="Write the operator runbook listing missing fields.",
)
@_json_opt
def validate(app_dir: Path, runbook: Path | None, json_out: bool) -> None:
    """Validate APP_DIR/railiance/app.toml; every error on its own line with its TOML path and a hint."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.declaration.loader import validate_app_dir

        report = validate_app_dir(app_dir)
        if runbook is not None:
            from railiance_ledger.declaration.runbook import render_runbook
            from railiance_ledger.domain.redaction import redact

            runbook.write_text(redact(render_runbook(app_dir, report)), encoding="utf-8")
        ok = report.declaration is not None and not report.issues
        decl = report.declaration
        if as_json:
            _emit_json(
                {
                    "ok": ok,
                    "app_dir": str(app_dir),
                    "workload": decl.workload.name if decl else None,
                    "criticality": str(decl.criticality) if decl else None,
                    "production_critical": decl.production_critical if decl else None,
                    "observation_window_seconds": decl.observation_window_seconds if decl else None,
                    "issues": [i.as_dict() for i in report.issues],
                    "warnings": [i.as_dict() for i in report.warnings],
                    "runbook": str(runbook) if runbook else None,
                }
            )
        else:
            for issue in report.issues:
                _echo(f"error: {issue}", err=True)
            for warning in report.warnings:
                _echo(f"warning: {warning}", err=True)
            if ok and decl is not None:
                from railiance_ledger.domain.durations import format_duration

                _echo(
                    f"ok: {decl.workload.name} ({decl.workload.repo}) is a valid railiance.app/v1 declaration; "
                    f"criticality {decl.criticality}, observation window "
                    f"{format_duration(decl.observation_window_seconds)}"
                )
            else:
                _echo(f"{len(report.issues)} problem(s) in {app_dir}/railiance/app.toml", err=True)
            if runbook is not None:
                _echo(f"runbook written to {runbook}")
        raise click.exceptions.Exit(EXIT_OK if ok else EXIT_INVALID)


# ---------------------------------------------------------------------------- candidates


@candidate_app.command("add")
@_app_dir
@click.option("--image", "image", required=True, help="REPOSITORY@sha256:<64 hex>; a tag alone is refused.")
@click.option("--revision", "revision", default=None, help="Source commit (else read from the work tree).")
@_operator_opt
@_json_opt
def candidate_add(
    app_dir: Path, image: str, revision: str | None, operator: str | None, json_out: bool
) -> None:
    """Register a candidate artifact by immutable digest."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle.candidates import (
            parse_candidate_image,
            register_candidate,
            source_revision,
        )

        parse_candidate_image(image)  # refuse bad input before touching anything
        decl = _load(app_dir)
        rev = revision or source_revision(decl)
        store = _store()
        event, created = register_candidate(
            store=store, decl=decl, image=image, operator=_actor(operator), revision=rev
        )
        if as_json:
            _emit_json({"ok": True, "created": created, "event": event.model_dump()})
        else:
            verb = "registered" if created else "already registered"
            _echo(
                f"{verb}: {event.payload.get('image')} for {event.stream} (revision {event.payload.get('revision')}); "
                f"ledger seq {event.seq}"
            )


# ---------------------------------------------------------------------------- Stage 1


@app.command("run")
@_app_dir
@_image_opt
@click.option(
    "--skip-check", "skip_check", multiple=True, help="Skip a declared local check (needs a waiver)."
)
@_operator_opt
@_json_opt
def run(
    app_dir: Path, image: str | None, skip_check: list[str], operator: str | None, json_out: bool
) -> None:
    """Stage 1 local validation of the candidate."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle import stage1

        outcome = stage1.run_cli(
            store=_store(),
            app_dir=app_dir,
            operator=_actor(operator),
            image=image,
            skip_checks=list(skip_check),
        )
        doc = outcome.document
        if as_json:
            _emit_json(doc)
        else:
            _render_stage_result(doc)
            if doc.get("status") == "pass":
                _echo(
                    "Candidate is eligible for Stage 2 review. Stage 1 does not authorize production traffic."
                )
        raise click.exceptions.Exit(outcome.exit_code)


@app.command("waive")
@_app_dir
@click.option("--gate", "gate", required=True, help="Gate (check) name, e.g. source_revision_identified.")
@click.option("--reason", "reason", required=True, help="Why the gate is waived (recorded, redacted).")
@_image_opt
@click.option("--stage", "stage", default=None, type=int, help="Stage the waiver applies to (default 1).")
@_operator_opt
@_json_opt
def waive(
    app_dir: Path,
    gate: str,
    reason: str,
    image: str | None,
    stage: int | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Record a waiver for one gate of one candidate."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle import waivers

        decl = _load(app_dir)
        digest = None
        if image:
            from railiance_ledger.lifecycle.candidates import parse_candidate_image

            digest = parse_candidate_image(image)[1]
        event = waivers.record_waiver(
            store=_store(),
            decl=decl,
            gate=gate,
            operator=_require_operator(operator),
            reason=reason,
            candidate=digest,
            stage=stage or 1,
        )
        if as_json:
            _emit_json({"ok": True, "event": event.model_dump()})
        else:
            _echo(f"waiver recorded: {gate} for {event.candidate} by {event.actor} (event {event.event_id})")


def _require_operator(flag: str | None) -> str:
    from railiance_ledger import config
    from railiance_ledger.errors import InvalidInput

    who = config.explicit_operator(flag or G.operator)
    if not who:
        raise InvalidInput(
            "this record needs an operator identity", hint="pass --operator NAME or set RAILIANCE_OPERATOR"
        )
    return who


# ---------------------------------------------------------------------------- later stages


@contextmanager
def _adapters(
    decl: Any, kubeconfig: str | None, context: str | None, *, metrics: bool = True
) -> Iterator[Any]:
    """The real adapters for ``decl`` (lifecycle.environment); with ``metrics`` (Stage 2), configuration
    gaps that make metrics fail closed are warned about first."""
    from railiance_ledger.lifecycle.environment import Environment

    with Environment.from_env(kubeconfig=kubeconfig, context=context).open(decl) as ad:
        for warning in ad.warnings if metrics else ():
            _echo(f"warning: {warning}", err=True)
        yield ad


def _render_stage2(outcome: Any, *, as_json: bool) -> None:
    doc = outcome.document
    if as_json:
        _emit_json({**doc, "warnings": outcome.warnings, "rolled_back": outcome.rolled_back})
    else:
        phase = doc.get("phase")
        if phase in (None, "completed"):
            _render_stage_result(doc)
            if outcome.rolled_back:
                _echo(
                    "  canary rolled back: routing and workload removed (see rollback.completed in the ledger)"
                )
        else:
            cand = (doc.get("candidate") or {}).get("digest")
            _echo(f"Stage 2 canary {phase} for {doc.get('workload', {}).get('name')} {cand}")
            for check in doc.get("checks", []):
                _echo(f"  {check['status'].upper():6} {check['name']}: {check.get('reason', '')}")
            for key in ("release", "routing", "manifests_sha256", "rollback_target", "statehub_note"):
                if doc.get(key) is not None:
                    _echo(f"  {key}: {json.dumps(doc[key], sort_keys=True, default=str)}")
            if phase == "observing":
                _echo(f"  {outcome.samples}/{outcome.expected_samples} samples recorded")
        for warning in outcome.warnings:
            _echo(f"warning: {warning}", err=True)
    raise click.exceptions.Exit(outcome.exit_code)


@app.command("deploy")
@_app_dir
@click.option(
    "--stage", "stage", required=True, type=int, help="Only Stage 2 (canary) is deployed by this command."
)
@_image_opt
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
def deploy(
    app_dir: Path,
    stage: int,
    image: str | None,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 2 canary deployment: every precheck first, then the Helm release and its routing."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput

        if stage != 2:
            raise InvalidInput(
                f"deploy --stage {stage} is not a deploy: Stage 1 is `railiance run`, Stage 3 is `railiance promote`",
                hint="use --stage 2",
            )
        from railiance_ledger.lifecycle import stage2

        decl = _load(app_dir)
        with _adapters(decl, kubeconfig, context) as ad:
            outcome = stage2.deploy_canary(
                store=_store(),
                decl=decl,
                operator=_actor(operator),
                kube=ad.kube,
                helm=ad.helm,
                registry=ad.registry,
                metrics=ad.metrics,
                http=ad.http,
                statehub=ad.statehub,
                image=image,
                helm_upgrade_args=ad.helm_args,
            )
        _render_stage2(outcome, as_json=as_json)


@app.command("observe")
@_app_dir
@click.option(
    "--image", "image", default=None, help="Candidate REPOSITORY@sha256:... (else the deployed one)."
)
@click.option(
    "--max-samples", "max_samples", default=None, type=int, help="Stop after N samples (resume later)."
)
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
def observe(
    app_dir: Path,
    image: str | None,
    max_samples: int | None,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 2 evidence collection over the observation window, with progress; resumable."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle import stage2

        decl = _load(app_dir)
        progress_cb, finish = _progress_bar(enabled=not as_json and sys.stderr.isatty())
        try:
            with _adapters(decl, kubeconfig, context) as ad:
                outcome = stage2.observe_canary(
                    store=_store(),
                    decl=decl,
                    operator=_actor(operator),
                    kube=ad.kube,
                    metrics=ad.metrics,
                    http=ad.http,
                    helm=ad.helm,
                    statehub=ad.statehub,
                    image=image,
                    on_progress=progress_cb,
                    max_samples=max_samples,
                    ingress_url=ad.ingress_url,
                )
        finally:
            finish()
        _render_stage2(outcome, as_json=as_json)


def _progress_bar(*, enabled: bool) -> tuple[Any, Any]:
    """A rich progress bar on a terminal; elsewhere one plain line per sample on stderr."""
    if not enabled:

        def plain(done: int, expected: int, sample: Any) -> None:
            if not G.json:
                _echo(f"sample {done}/{expected}", err=True)

        return plain, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("observing canary"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    task = bar.add_task("observe", total=None)
    bar.start()

    def update(done: int, expected: int, sample: Any) -> None:
        bar.update(task, completed=done, total=expected)

    return update, bar.stop


@app.command("approve")
@_app_dir
@click.option(
    "--stage", "stage", default=None, type=int, help="Stage being approved (2 canary, 3 promotion)."
)
@_image_opt
@click.option("--window", "window", default=None, help="Observation window, e.g. 1h (else the declared one).")
@click.option(
    "--rollback-target", "rollback_target", default=None, help="Pinned image or manual recovery text."
)
@click.option("--waive", "waive", multiple=True, help="GATE=REASON waived by this approval (repeatable).")
@click.option(
    "--retrospective",
    "retrospective",
    is_flag=True,
    default=False,
    help="Retrospective approval of an emergency action.",
)
@click.option(
    "--revoke", "revoke", is_flag=True, default=False, help="Revoke an approval instead of granting one."
)
@click.option("--approval", "approval", default=None, help="With --revoke: the approval event id.")
@click.option("--reason", "reason", default=None, help="With --revoke: why (recorded, redacted).")
@_operator_opt
@_json_opt
def approve(
    app_dir: Path,
    stage: int | None,
    image: str | None,
    window: str | None,
    rollback_target: str | None,
    waive: list[str],
    retrospective: bool,
    revoke: bool,
    approval: str | None,
    reason: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Record (or with --revoke, revoke) a human approval: operator, candidate, stage, window, rollback target."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle import approvals

        decl = _load(app_dir)
        who = operator or G.operator
        if revoke:
            event = approvals.revoke(
                store=_store(),
                decl=decl,
                operator=who,
                reason=reason or "",
                approval_id=approval,
                image=image,
            )
            summary = f"approval revoked for {event.candidate} by {event.actor} (event {event.event_id})"
            if event.payload.get("immediate_rollback"):
                summary += "; inside the observation window: immediate rollback required"
        else:
            if stage is None:
                raise InvalidInput(
                    "approve needs --stage 2 or --stage 3", hint="e.g. railiance approve APP --stage 3"
                )
            waived: dict[str, str] = {}
            for item in waive:
                gate, sep, why = item.partition("=")
                if not sep or not gate.strip() or not why.strip():
                    raise InvalidInput(
                        f"--waive {item!r} is not GATE=REASON", hint="e.g. --waive local_health='probe flaky'"
                    )
                waived[gate.strip()] = why.strip()
            event = approvals.approve(
                store=_store(),
                decl=decl,
                operator=who,
                stage=stage,
                image=image,
                window=window,
                rollback_target=rollback_target,
                waived_gates=waived or None,
                retrospective=retrospective,
            )
            summary = (
                f"approval recorded: stage {event.stage} of {event.candidate} by {event.actor} "
                f"(event {event.event_id})"
            )
        _report_noted(event, summary, as_json=as_json)


def _report_noted(event: Any, summary: str, *, as_json: bool) -> None:
    if as_json:
        _emit_json(event.as_dict())
        return
    _echo(summary)
    for warning in event.warnings:
        _echo(f"warning: {warning}", err=True)


@app.command("exception")
@_app_dir
@click.option("--skip-stage", "skip_stage", required=True, type=int, help="The stage to skip (1 or 2).")
@click.option("--reason", "reason", required=True, help="Why delaying would increase production risk.")
@_image_opt
@_operator_opt
@_json_opt
def exception(
    app_dir: Path, skip_stage: int, reason: str, image: str | None, operator: str | None, json_out: bool
) -> None:
    """Record an emergency exception (skip a stage); it awaits a retrospective approval."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle import approvals

        event = approvals.record_exception(
            store=_store(),
            decl=_load(app_dir),
            operator=operator or G.operator,
            skip_stage=skip_stage,
            reason=reason,
            image=image,
        )
        _report_noted(
            event,
            f"emergency exception recorded: skip stage {skip_stage} for {event.candidate} by {event.actor}; "
            "a retrospective approval is now required",
            as_json=as_json,
        )


@app.command("readiness")
@_app_dir
@_image_opt
@_json_opt
def readiness(app_dir: Path, image: str | None, json_out: bool) -> None:
    """Answer the spec's readiness questions from the declaration and the ledger (exit 1 while any is missing)."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle.readiness import readiness_report

        report = readiness_report(store=_store(), decl=_load(app_dir), image=image)
        if as_json:
            _emit_json(report.as_dict())
        else:
            for ans in report.answers:
                mark = "ANSWERED" if ans.answered else "MISSING "
                _echo(f"{mark} {ans.id}: {ans.text} [{ans.source}]")
                for item in ans.missing:
                    _echo(f"  missing: {item}")
            if report.must_remain_in:
                _echo(f"  must remain in: {report.must_remain_in}; do not cut over to Stage 3")
            else:
                _echo("every readiness question is answered")
        raise click.exceptions.Exit(EXIT_OK if report.ready else EXIT_FAILED)


@app.command("promote")
@_app_dir
@_image_opt
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
def promote(
    app_dir: Path,
    image: str | None,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 3 production promotion: six prechecks, the promotion, routing read-back, smoke; rolls back on failure."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle import stage3

        decl = _load(app_dir)
        with _adapters(decl, kubeconfig, context, metrics=False) as ad:
            outcome = stage3.promote(
                store=_store(),
                decl=decl,
                operator=_actor(operator),
                kube=ad.kube,
                helm=ad.helm,
                http=ad.http,
                statehub=ad.statehub,
                image=image,
                helm_upgrade_args=ad.helm_args,
            )
        doc = outcome.document
        if as_json:
            _emit_json(
                {
                    **doc,
                    "warnings": outcome.warnings,
                    "rolled_back": outcome.rolled_back,
                    "workflow_id": outcome.workflow_id,
                    "rollback": outcome.rollback,
                }
            )
        else:
            _render_stage_result(doc)
            if outcome.workflow_id:
                _echo(f"  workflow id: {outcome.workflow_id}")
            if doc.get("rollback_target"):
                _echo(
                    f"  rollback target retained: {json.dumps(doc['rollback_target'], sort_keys=True, default=str)}"
                )
            if outcome.rolled_back and outcome.rollback:
                _echo(
                    f"  promotion failed after changing production; rolled back: {outcome.rollback.get('action')}"
                )
            for warning in outcome.warnings:
                _echo(f"warning: {warning}", err=True)
        raise click.exceptions.Exit(outcome.exit_code)


@app.command("rollback")
@_app_dir
@click.option("--reason", "reason", required=True, help="The triggering symptom (recorded, redacted).")
@click.option(
    "--defer",
    "defer",
    is_flag=True,
    default=False,
    help="Defer the rollback (needs --approval of another operator).",
)
@click.option(
    "--approval", "approval", default=None, help="Approval event id for --defer / --accept-forward-only."
)
@click.option(
    "--accept-forward-only",
    "accept_forward_only",
    is_flag=True,
    default=False,
    help="Roll back past a forward-only migration (needs --approval).",
)
@click.option(
    "--candidate",
    "candidate",
    default="returned-to-stage1",
    show_default=True,
    help="Fate of the failed candidate: returned-to-stage1, blocked, abandoned.",
)
@click.option(
    "--manual-done",
    "manual_done",
    is_flag=True,
    default=False,
    help="Manual strategy: the runbook was carried out.",
)
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
def rollback(
    app_dir: Path,
    reason: str,
    defer: bool,
    approval: str | None,
    accept_forward_only: bool,
    candidate: str,
    manual_done: bool,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Roll back to the previous stable target from the ledger's lineage, then verify and record."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle import rollback as rb

        fates = ("returned-to-stage1", "blocked", "abandoned")
        if candidate not in fates:
            raise InvalidInput(
                f"--candidate {candidate!r} is not one of {', '.join(fates)}", hint="e.g. --candidate blocked"
            )
        decl = _load(app_dir)
        with _adapters(decl, kubeconfig, context, metrics=False) as ad:
            outcome = rb.rollback(
                store=_store(),
                decl=decl,
                operator=_actor(operator),
                kube=ad.kube,
                helm=ad.helm,
                http=ad.http,
                reason=reason,
                statehub=ad.statehub,
                defer=defer,
                approval_id=approval,
                candidate_fate=candidate,
                accept_forward_only=accept_forward_only,
                manual_done=manual_done,
            )
        doc = outcome.document
        if as_json:
            _emit_json(
                {**doc, "phase": outcome.phase, "exit_code": outcome.exit_code, "warnings": outcome.warnings}
            )
        else:
            _echo(f"rollback of {decl.workload.name}: {outcome.phase}")
            for key in (
                "symptom",
                "action",
                "final_stable",
                "verification",
                "remaining_cleanup",
                "candidate_disposition",
                "statehub_note",
                "ledger",
            ):
                if doc.get(key) not in (None, "", [], {}):
                    value = doc[key]
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
                    _echo(f"  {key}: {text}")
            for warning in outcome.warnings:
                _echo(f"warning: {warning}", err=True)
        raise click.exceptions.Exit(outcome.exit_code)


# ---------------------------------------------------------------------------- projections


@app.command("status")
@click.argument("workload")
@_json_opt
def status(workload: str, json_out: bool) -> None:
    """Each candidate's stage state, the current stable and earlier stables."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.ledger.projections import workload_status

        st = workload_status(_store(), workload)
        data = _as_dict(st)
        if as_json:
            _emit_json(data)
            return
        _render_status(data)


def _render_status(data: dict[str, Any]) -> None:
    _echo(f"workload {data.get('workload')}")
    stable = data.get("current_stable")
    _echo(f"  stable: {_short(stable)}")
    for earlier in data.get("earlier_stables") or []:
        _echo(f"  earlier stable: {_short(earlier)}")
    cands = data.get("candidates") or []
    if not cands:
        _echo("  no candidates registered")
    for c in cands:
        _echo(f"  candidate {c.get('image') or c.get('digest')}: {c.get('state')}")
    for p in data.get("pending_approvals") or []:
        _echo(f"  pending approval: stage {p.get('stage')} for {p.get('digest')} ({p.get('reason')})")
    for e in data.get("awaiting_retrospective") or []:
        _echo(
            f"  emergency action awaiting retrospective approval: skip stage {e.get('skip_stage')} for "
            f"{e.get('digest')} by {e.get('operator')} at {e.get('recorded_at')}: {e.get('reason')} "
            f"(event {e.get('event_id')})"
        )


def _short(stable: Any) -> str:
    if not stable:
        return "none"
    if isinstance(stable, dict):
        return str(stable.get("image") or stable.get("digest"))
    return str(stable)


@app.command("notes")
@click.argument("workload")
@click.option("--repost", "repost", is_flag=True, default=False, help="Post every undelivered note again.")
@_json_opt
def notes(workload: str, repost: bool, json_out: bool) -> None:
    """State Hub notes recorded as not delivered; --repost sends them again (exit 1 while any remain)."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle import notes as hub_notes

        store = _store()
        reposted: list[Any] = []
        if repost:
            statehub = hub_notes.statehub_from_env()
            if statehub is None:
                raise InvalidInput(
                    "--repost needs a State Hub", hint=f"set {hub_notes.STATEHUB_URL_ENV} to its base URL"
                )
            reposted = hub_notes.repost_undelivered(store=store, workload=workload, statehub=statehub)
        pending = hub_notes.undelivered_notes(store, workload)
        if as_json:
            _emit_json(
                {
                    "workload": workload,
                    "reposted": [
                        {"delivered": o.delivered, "note_id": o.note_id, "warning": o.warning}
                        for o in reposted
                    ],
                    "undelivered": [p.as_dict() for p in pending],
                }
            )
        else:
            for o in reposted:
                _echo(
                    f"re-posted: {'delivered as ' + str(o.note_id) if o.delivered else 'NOT delivered: ' + str(o.error)}"
                )
            if not pending:
                _echo(f"every State Hub note of {workload} is delivered")
            for p in pending:
                _echo(f"undelivered: {p.ref_kind} seq {p.ref_seq} ({p.ref_event_id}): {p.error}")
        raise click.exceptions.Exit(EXIT_FAILED if pending else EXIT_OK)


@app.command("history")
@click.argument("workload")
@click.option("--limit", "limit", default=None, type=int, help="Only the newest N events.")
@_json_opt
def history(workload: str, limit: int | None, json_out: bool) -> None:
    """The workload's events, oldest first."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.ledger.projections import history as read_history

        events = read_history(_store(), workload, limit=limit)
        if as_json:
            _emit_json([e.model_dump() for e in events])
            return
        if not events:
            _echo(f"no events for {workload}")
        for e in events:
            stage = f" stage {e.stage}" if e.stage else ""
            cand = f" {e.candidate[:19]}" if e.candidate else ""
            extra = ""
            if e.kind == "stage.completed":
                extra = f" -> {e.payload.get('status')}"
            _echo(f"{e.seq:>8} {e.recorded_at} {e.kind}{stage}{cand}{extra} by {e.actor}")


@app.command("lineage")
@click.argument("workload")
@click.option("--at", "at", default=None, help="ISO timestamp: what was stable at that moment.")
@_json_opt
def lineage(workload: str, at: str | None, json_out: bool) -> None:
    """Stable history and the rollback target (what we would roll back to, and how)."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.lifecycle.stage3 import lineage_with_evidence

        data = lineage_with_evidence(_store(), workload, at=_normalise_at(at) if at else None)
        if as_json:
            _emit_json(data)
            return
        _echo(f"lineage of {workload}" + (f" at {at}" if at else ""))
        _echo(f"  current stable: {_short(data.get('current_stable'))}")
        stables = data.get("stables") or []
        for s in stables:
            approvers = (
                ", ".join(sorted({str(a.get("operator")) for a in s.get("approvals") or []}))
                or "none recorded"
            )
            _echo(
                f"  stable {_short(s)} ({s.get('state', '')}) promoted at {s.get('promoted_at', '?')} "
                f"by {s.get('promoted_by', '?')}; approved by {approvers}"
            )
            ev = s.get("evidence") or {}
            promo, result = ev.get("promotion") or {}, ev.get("stage_result") or {}
            if promo or result:
                _echo(
                    f"    evidence: promotion seq {promo.get('seq')} workflow {promo.get('workflow_id')}; "
                    f"stage 3 result seq {result.get('seq')} ({result.get('status')}); "
                    f"State Hub notes {', '.join(ev.get('notes') or []) or 'none'}"
                )
        target = data.get("rollback_target")
        if target:
            _echo(
                f"  rollback target: {_short(target)} ({json.dumps(target.get('restore', {}), sort_keys=True)})"
            )
        else:
            _echo("  rollback target: none recorded (no earlier stable)")
        cands = data.get("candidates") or []
        for c in cands:
            _echo(f"  candidate {c.get('image') or c.get('digest')}: {c.get('state', '')}")


def _normalise_at(at: str) -> str:
    from datetime import datetime

    from railiance_ledger.errors import InvalidInput

    try:
        ts = datetime.fromisoformat(at)
    except ValueError as exc:
        raise InvalidInput(
            f"--at {at!r} is not an ISO-8601 timestamp", hint="e.g. 2026-11-26T10:00:00Z"
        ) from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------------- ledger


@ledger_app.command("verify")
@click.option(
    "--expect-head",
    "expect_head",
    default=None,
    help="SEQ:HASH anchor recorded earlier (e.g. in State Hub); detects deleted newest events.",
)
@_json_opt
def ledger_verify(expect_head: str | None, json_out: bool) -> None:
    """Recompute the hash chain; name the first bad seq and why (edited, missing, reordered)."""
    as_json = _want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.ledger.verify import check_anchor, verify

        anchor: tuple[int, str] | None = None
        if expect_head:
            seq_text, _, hash_text = expect_head.partition(":")
            if not seq_text.isdigit() or len(hash_text) != 64:
                raise InvalidInput(
                    f"--expect-head {expect_head!r} is not SEQ:HASH",
                    hint="copy it from `railiance ledger verify`",
                )
            anchor = (int(seq_text), hash_text)
        store = _store()
        report = verify(store)
        if anchor is not None:
            report = check_anchor(store, report, seq=anchor[0], hash=anchor[1])
        data = _as_dict(report)
        if as_json:
            _emit_json(data)
        elif report.ok:
            _echo(
                f"ok: {report.events_checked} events, hash chain verifies; "
                f"head {report.head_seq}:{report.head_hash} (keep it as an anchor for --expect-head)"
            )
        else:
            _echo(
                f"ledger integrity error: first bad seq {report.first_bad_seq} ({report.problem}): {report.detail}",
                err=True,
            )
        raise click.exceptions.Exit(EXIT_OK if report.ok else EXIT_LEDGER)


@ledger_app.command("export")
@click.option(
    "--output",
    "-o",
    "output",
    default=None,
    type=click.Path(path_type=Path),
    help="File to write (default: stdout).",
)
def ledger_export(output: Path | None) -> None:
    """Export every event as JSON Lines, one canonical envelope per line."""
    with _guard(False):
        from railiance_ledger.ledger.verify import export_jsonl

        store = _store()
        if output is None:
            export_jsonl(store, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fp:
                export_jsonl(store, fp)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="railiance")


if __name__ == "__main__":
    main()
