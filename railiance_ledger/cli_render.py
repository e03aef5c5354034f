"""How the ``railiance`` command prints its results: text for people, ``--json`` for machines.

Every byte goes through the one redaction path (``domain.redaction``). The command module
(``railiance_ledger.cli``) parses and calls the lifecycle; the functions here only render what a
service returned. Imports stay lazy so ``railiance status`` stays cheap, and nothing here imports
dagster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

ProgressCallback = Callable[[int, int, Any], None]
"""``(done, expected, sample)``: called after each canary sample."""


def echo(text: str, *, err: bool = False) -> None:
    """Print ``text`` (redacted) on stdout, or stderr with ``err``."""
    from railiance_ledger.domain.redaction import redact

    click.echo(redact(text), err=err)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented, key-sorted JSON (redacted)."""
    from railiance_ledger.domain.redaction import redact_value

    click.echo(json.dumps(redact_value(value), indent=2, sort_keys=True, default=str))


def as_dict(obj: Any) -> Any:
    """A result object as JSON-ready data (``as_dict()``, a pydantic model, or a list of those)."""
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, list):
        return [as_dict(o) for o in obj]
    return obj


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def short(stable: Any) -> str:
    """A stable or rollback target in one word: its image, else its digest, else ``none``."""
    if not stable:
        return "none"
    if isinstance(stable, dict):
        return str(stable.get("image") or stable.get("digest"))
    return str(stable)


def render_error(exc: Exception, *, code: int, as_json: bool) -> None:
    """An error as ``{"ok": false, ...}`` or as ``error: ...`` lines on stderr (declaration issues one a
    line)."""
    from railiance_ledger.errors import DeclarationError, UnknownName

    if as_json:
        body: dict[str, Any] = {
            "ok": False,
            "error": type(exc).__name__,
            "message": str(exc),
            "exit_code": code,
        }
        if isinstance(exc, DeclarationError):
            body["issues"] = [i.as_dict() for i in exc.issues]
        if isinstance(exc, UnknownName):
            body["nearest"] = exc.nearest
        emit_json(body)
    elif isinstance(exc, DeclarationError) and exc.issues:
        echo(f"error: {exc.message}", err=True)
        for issue in exc.issues:
            echo(f"  {issue}", err=True)
    else:
        echo(f"error: {exc}", err=True)


def render_validation(report: Any, *, app_dir: Any, runbook: Any, ok: bool, as_json: bool) -> None:
    """The result of ``railiance validate``: the declaration's summary, or every issue with its path."""
    decl = report.declaration
    if as_json:
        emit_json(
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
        return
    for issue in report.issues:
        echo(f"error: {issue}", err=True)
    for warning in report.warnings:
        echo(f"warning: {warning}", err=True)
    if ok and decl is not None:
        from railiance_ledger.domain.durations import format_duration

        echo(
            f"ok: {decl.workload.name} ({decl.workload.repo}) is a valid railiance.app/v1 declaration; "
            f"criticality {decl.criticality}, observation window "
            f"{format_duration(decl.observation_window_seconds)}"
        )
    else:
        echo(f"{len(report.issues)} problem(s) in {app_dir}/railiance/app.toml", err=True)
    if runbook is not None:
        echo(f"runbook written to {runbook}")


def render_registration(event: Any, created: bool, *, as_json: bool) -> None:
    """The result of ``railiance candidate add``."""
    if as_json:
        emit_json({"ok": True, "created": created, "event": event.model_dump()})
        return
    verb = "registered" if created else "already registered"
    echo(
        f"{verb}: {event.payload.get('image')} for {event.stream} (revision "
        f"{event.payload.get('revision')}); "
        f"ledger seq {event.seq}"
    )


def render_stage_result(doc: dict[str, Any]) -> None:
    """Human rendering of a stage-result document: one line per check with verdict and reason."""
    status = doc.get("status", "fail")
    cand = doc.get("candidate") or {}
    echo(
        f"Stage {doc.get('stage')} ({doc.get('target_environment')}) for {doc['workload']['name']} "
        f"{cand.get('digest') or '<no candidate>'}: {status.upper()}"
    )
    marks = {"pass": "PASS  ", "fail": "FAIL  ", "waived": "WAIVED"}
    for check in doc.get("checks", []):
        reason = check.get("reason") or ""
        kind = f" [{check['failure']}]" if check.get("failure") else ""
        echo(f"  {marks.get(check['status'], check['status'])} {check['name']}{kind}: {reason}")
    ledger = doc.get("ledger")
    if ledger:
        echo(f"  ledger seq {ledger['seq']} hash {ledger['hash'][:16]}...")


def render_stage1(doc: dict[str, Any], *, as_json: bool) -> None:
    """The result of ``railiance run``."""
    if as_json:
        emit_json(doc)
        return
    render_stage_result(doc)
    if doc.get("status") == "pass":
        echo("Candidate is eligible for Stage 2 review. Stage 1 does not authorize production traffic.")


def render_stage2(outcome: Any, *, as_json: bool) -> None:
    """The result of ``railiance deploy --stage 2`` or ``railiance observe``: the phase reached and its
    facts."""
    doc = outcome.document
    if as_json:
        emit_json({**doc, "warnings": outcome.warnings, "rolled_back": outcome.rolled_back})
    else:
        phase = doc.get("phase")
        if phase in (None, "completed"):
            render_stage_result(doc)
            if outcome.rolled_back:
                echo(
                    "  canary rolled back: routing and workload removed (see rollback.completed in the "
                    "ledger)"
                )
        else:
            cand = (doc.get("candidate") or {}).get("digest")
            echo(f"Stage 2 canary {phase} for {doc.get('workload', {}).get('name')} {cand}")
            for check in doc.get("checks", []):
                echo(f"  {check['status'].upper():6} {check['name']}: {check.get('reason', '')}")
            for key in ("release", "routing", "manifests_sha256", "rollback_target", "statehub_note"):
                if doc.get(key) is not None:
                    echo(f"  {key}: {_compact(doc[key])}")
            if phase == "observing":
                echo(f"  {outcome.samples}/{outcome.expected_samples} samples recorded")
        for warning in outcome.warnings:
            echo(f"warning: {warning}", err=True)


def progress_bar(*, enabled: bool, quiet: bool) -> tuple[ProgressCallback, Callable[[], None]]:
    """``(update, finish)``: a rich progress bar on a terminal (``enabled``); elsewhere one plain line
    per sample on stderr, unless ``quiet`` (the global ``--json``)."""
    if not enabled:

        def plain(done: int, expected: int, sample: Any) -> None:
            if not quiet:
                echo(f"sample {done}/{expected}", err=True)

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


def report_noted(event: Any, summary: str, *, as_json: bool) -> None:
    """A recorded human decision (approval, revocation, waiver, exception) and its State Hub warnings."""
    if as_json:
        emit_json(event.as_dict())
        return
    echo(summary)
    for warning in event.warnings:
        echo(f"warning: {warning}", err=True)


def render_waiver(event: Any, gate: str, *, as_json: bool) -> None:
    """The result of ``railiance waive``."""
    if as_json:
        emit_json({"ok": True, "event": event.model_dump()})
    else:
        echo(f"waiver recorded: {gate} for {event.candidate} by {event.actor} (event {event.event_id})")


def render_readiness(report: Any, *, as_json: bool) -> None:
    """The answers of ``railiance readiness``; what is missing, and where the candidate must remain."""
    if as_json:
        emit_json(report.as_dict())
        return
    for ans in report.answers:
        mark = "ANSWERED" if ans.answered else "MISSING "
        echo(f"{mark} {ans.id}: {ans.text} [{ans.source}]")
        for item in ans.missing:
            echo(f"  missing: {item}")
    if report.must_remain_in:
        echo(f"  must remain in: {report.must_remain_in}; do not cut over to Stage 3")
    else:
        echo("every readiness question is answered")


def render_promotion(outcome: Any, *, as_json: bool) -> None:
    """The result of ``railiance promote``: the stage result, workflow id, retained rollback target."""
    doc = outcome.document
    if as_json:
        emit_json(
            {
                **doc,
                "warnings": outcome.warnings,
                "rolled_back": outcome.rolled_back,
                "workflow_id": outcome.workflow_id,
                "rollback": outcome.rollback,
            }
        )
        return
    render_stage_result(doc)
    if outcome.workflow_id:
        echo(f"  workflow id: {outcome.workflow_id}")
    if doc.get("rollback_target"):
        echo(f"  rollback target retained: {_compact(doc['rollback_target'])}")
    if outcome.rolled_back and outcome.rollback:
        echo(f"  promotion failed after changing production; rolled back: {outcome.rollback.get('action')}")
    for warning in outcome.warnings:
        echo(f"warning: {warning}", err=True)


def render_rollback(outcome: Any, workload: str, *, as_json: bool) -> None:
    """The result of ``railiance rollback``: the phase reached and the recorded facts."""
    doc = outcome.document
    if as_json:
        emit_json(
            {**doc, "phase": outcome.phase, "exit_code": outcome.exit_code, "warnings": outcome.warnings}
        )
        return
    echo(f"rollback of {workload}: {outcome.phase}")
    for key in (
        "symptom",
        "action",
        "final_stable",
        "verification",
        "remaining_cleanup",
        "manual_command",
        "candidate_fate",
        "statehub_note",
        "ledger",
    ):
        if doc.get(key) not in (None, "", [], {}):
            value = doc[key]
            text = value if isinstance(value, str) else _compact(value)
            echo(f"  {key}: {text}")
    for warning in outcome.warnings:
        echo(f"warning: {warning}", err=True)


def render_status(data: dict[str, Any]) -> None:
    """``railiance status``: the stable, earlier stables, each candidate, pending approvals, emergencies."""
    echo(f"workload {data.get('workload')}")
    stable = data.get("stable")
    if stable:
        approved = ", ".join(f"{a.get('operator')} at {a.get('at')}" for a in stable.get("approved_by") or [])
        echo(
            f"  stable: {short(stable)} since {stable.get('promoted_at')} (promoted by "
            f"{stable.get('promoted_by')}; approved by {approved or 'none recorded'})"
        )
    else:
        echo(f"  stable: {short(data.get('current_stable'))}")
    for earlier in data.get("earlier_stables") or []:
        echo(f"  earlier stable: {short(earlier)}")
    target = data.get("rollback_target")
    echo(f"  rollback target: {short(target) if target else 'none recorded (no earlier stable)'}")
    canary = data.get("open_canary")
    if canary:
        closes = f", window closes {canary['closes_at']}" if canary.get("closes_at") else ""
        echo(f"  open canary: {canary.get('digest')} since {canary.get('opened_at')}{closes}")
    cands = data.get("candidates") or []
    if not cands:
        echo("  no candidates registered")
    for c in cands:
        echo(f"  candidate {c.get('image') or c.get('digest')}: {c.get('state')}")
        for a in c.get("approvals") or []:
            kind = "retrospective approval" if a.get("retrospective") else "approval"
            revoked = " (revoked)" if a.get("revoked") else ""
            echo(
                f"    {kind} stage {a.get('stage')} by {a.get('operator')} at {a.get('recorded_at')}"
                f"{revoked} (event {a.get('event_id')})"
            )
    for p in data.get("pending_approvals") or []:
        echo(f"  pending approval: stage {p.get('stage')} for {p.get('digest')} ({p.get('reason')})")
    for e in data.get("awaiting_retrospective") or []:
        echo(
            f"  emergency action awaiting retrospective approval: skip stage {e.get('skip_stage')} for "
            f"{e.get('digest')} by {e.get('operator')} at {e.get('recorded_at')}: {e.get('reason')} "
            f"(event {e.get('event_id')})"
            + (f"; OVERDUE since {e.get('due_at')}" if e.get("overdue") else "")
            + (f"; due by {e.get('due_at')}" if e.get("due_at") and not e.get("overdue") else "")
        )
    last = data.get("last_rollback")
    if last:
        echo(
            f"  last rollback: {last.get('from_stable')} -> {last.get('final_stable')} by "
            f"{last.get('actor')} at {last.get('recorded_at')}: {last.get('reason')}"
        )
    failure = data.get("last_failure")
    if failure:
        reasons = "; ".join(f"{c.get('name')}: {c.get('reason')}" for c in failure.get("failed_checks") or [])
        echo(
            f"  last failure: stage {failure.get('stage')} of {failure.get('digest')} at "
            f"{failure.get('recorded_at')} (seq {failure.get('seq')}): "
            f"{reasons or 'no failed check recorded'}"
        )
    lease = data.get("lease")
    if lease:
        state = "EXPIRED (may be taken over)" if lease.get("expired") else "held"
        echo(
            f"  lease {state}: {lease.get('action')} by {lease.get('holder')} until "
            f"{lease.get('expires_at')} "
            f"(seq {lease.get('seq')})"
        )
    blocker = data.get("blocked_by")
    if blocker:
        echo(
            f"  BLOCKED by an incomplete rollback (seq {blocker.get('seq')}): {blocker.get('reason')}; "
            f"remaining: {blocker.get('remaining')}; manual command: {blocker.get('manual_command') or '-'}"
        )
        echo(
            "  every action refuses until `railiance rollback` completes or `railiance rollback --resolve` "
            "is recorded"
        )


def render_notes(workload: str, reposted: list[Any], pending: list[Any], *, as_json: bool) -> None:
    """``railiance notes``: what was re-posted and which notes are still undelivered."""
    if as_json:
        emit_json(
            {
                "workload": workload,
                "reposted": [
                    {"delivered": o.delivered, "note_id": o.note_id, "warning": o.warning} for o in reposted
                ],
                "undelivered": [p.as_dict() for p in pending],
            }
        )
        return
    for o in reposted:
        echo(
            "re-posted: "
            f"{'delivered as ' + str(o.note_id) if o.delivered else 'NOT delivered: ' + str(o.error)}"
        )
    if not pending:
        echo(f"every State Hub note of {workload} is delivered")
    for p in pending:
        echo(f"undelivered: {p.ref_kind} seq {p.ref_seq} ({p.ref_event_id}): {p.error}")


def render_history(workload: str, events: list[Any], *, as_json: bool) -> None:
    """``railiance history``: one line per event, oldest first."""
    if as_json:
        emit_json([e.model_dump() for e in events])
        return
    if not events:
        echo(f"no events for {workload}")
    for e in events:
        stage = f" stage {e.stage}" if e.stage else ""
        cand = f" {e.candidate[:19]}" if e.candidate else ""
        extra = ""
        if e.kind == "stage.completed":
            extra = f" -> {e.payload.get('status')}"
        echo(f"{e.seq:>8} {e.recorded_at} {e.kind}{stage}{cand}{extra} by {e.actor}")


def render_lineage(workload: str, data: dict[str, Any], *, at: str | None, as_json: bool) -> None:
    """``railiance lineage``: the stables as a table (revision, digest, promoted at and by, approved by,
    state), then the rollback target in words; ``--json`` gives the full record with its evidence."""
    if as_json:
        emit_json(data)
        return
    echo(f"lineage of {workload}" + (f" at {at}" if at else ""))
    echo(f"  current stable: {short(data.get('current_stable'))}")
    stables = data.get("stables") or []
    if stables:
        rows = []
        for s in stables:
            approvers = sorted(
                {
                    f"{a.get('operator')} ({a.get('recorded_at')})"
                    for a in s.get("approvals") or []
                    if not a.get("revoked")
                }
            )
            rows.append(
                [
                    str(s.get("revision") or "-")[:12],
                    short_digest(s.get("digest")),
                    str(s.get("promoted_at") or "?"),
                    str(s.get("promoted_by") or "?"),
                    ", ".join(approvers) or "none recorded",
                    str(s.get("state") or ""),
                ]
            )
        echo(
            table(["revision", "digest", "promoted at", "promoted by", "approved by", "state"], rows),
        )
    else:
        echo("  no stable recorded")
    target = data.get("rollback_target")
    if target:
        echo(f"  rollback target: {target_words(target)}")
    else:
        echo("  rollback target: none recorded (no earlier stable)")
    for c in data.get("candidates") or []:
        echo(f"  candidate {c.get('image') or c.get('digest')}: {c.get('state', '')}")


def short_digest(digest: Any) -> str:
    """``sha256:`` and the first 12 hex characters (``-`` when there is none)."""
    text = str(digest or "")
    return text[: len("sha256:") + 12] if text.startswith("sha256:") else (text or "-")


def target_words(target: dict[str, Any]) -> str:
    """A rollback target in one line of words: what, and how it would be restored."""
    restore = target.get("restore") or {}
    how = []
    if target.get("kind") and target.get("kind") != "ledger-stable":
        how.append(f"{target['kind']}: the ledger knows only its digest; restoring it needs a human")
    if restore.get("release"):
        how.append(f"release {restore.get('namespace', '?')}/{restore['release']}")
    if restore.get("helm_revision") is not None:
        how.append(f"helm revision {restore['helm_revision']}")
    if restore.get("manifests_sha256"):
        how.append(f"manifests {str(restore['manifests_sha256'])[:12]}")
    if target.get("promoted_at"):
        how.append(f"promoted at {target['promoted_at']}")
    return short(target) + (f" ({'; '.join(how)})" if how else "")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table drawn by rich (no colour, wide enough for full timestamps), indented by two
    spaces, as a string."""
    import io

    from rich.box import SIMPLE
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=SIMPLE, show_edge=False, pad_edge=False)
    for name in header:
        grid.add_column(name, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None, force_terminal=False, highlight=False).print(grid)
    return "\n".join(f"  {line}".rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def render_plan(plan: Any, *, as_json: bool) -> None:
    """``--dry-run`` of deploy, promote, rollback: the plan, and that nothing was changed."""
    data = as_dict(plan)
    if as_json:
        emit_json(data)
        return
    cand = data.get("candidate") or {}
    echo(
        f"plan: {data['command']} {data['workload']} {cand.get('image') or cand.get('digest') or ''}".rstrip()
    )
    target = data.get("rollback_target")
    if target:
        what = target.get("image") or target.get("digest") or target.get("detail") or "-"
        how = ", ".join(
            f"{k} {target[k]}"
            for k in ("kind", "release", "namespace", "helm_revision", "source")
            if target.get(k)
        )
        echo(f"  rollback target: {what}" + (f" ({how})" if how else ""))
    else:
        echo("  rollback target: none known (the real command's precheck fails without one)")
    for obj in data.get("objects") or []:
        echo(f"  object: {obj}")
    echo(f"  routing: {data.get('routing')}")
    for note in data.get("notes") or []:
        echo(f"  {note}")


def render_verification(report: Any, *, as_json: bool) -> None:
    """``railiance ledger verify``: ok with the head to keep as an anchor, or the first bad seq and why."""
    if as_json:
        emit_json(as_dict(report))
    elif report.ok:
        echo(
            f"ok: {report.events_checked} events, hash chain verifies; "
            f"head {report.head_seq}:{report.head_hash} (keep it as an anchor for --expect-head)"
        )
    else:
        echo(
            f"ledger integrity error: first bad seq {report.first_bad_seq} ({report.problem}): "
            f"{report.detail}",
            err=True,
        )
