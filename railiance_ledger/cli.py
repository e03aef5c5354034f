"""The ``railiance`` command: parse, call the lifecycle, render.

Thin by design: every command parses its arguments, calls one lifecycle service or ledger read,
and renders the result as text or ``--json`` (``railiance_ledger.cli_render``). The global options
travel in click's context object (``CliOptions``), never in a module global. Adapters (the State Hub
client, the cluster clients) are built once per command by ``lifecycle.environment`` and passed into
every service call. Imports are lazy so ``railiance status`` stays cheap, and nothing here imports
dagster. Every byte printed goes through the one redaction path.

Exit codes: 0 pass/ok, 1 a gate or stage failed, 2 invalid input (including an unknown workload or
candidate), 3 ledger integrity/concurrency/refused, 4 the environment is missing or does not answer before
the command could start (no kubeconfig, an API server that does not answer, no helm). A broken pipe on
stdout (``railiance history W | head -1``) ends the command quietly with exit 0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from railiance_ledger.cli_render import echo

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.domain.identity import Operator
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ledger.verify import VerifyReport
    from railiance_ledger.lifecycle.environment import Adapters
    from railiance_ledger.ports import StateHubPort

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_LEDGER, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class CliOptions:
    """The global options, given before the command (``railiance --json --ledger URL status ...``).

    Held in click's context object (``ctx.obj``) for the one invocation; commands receive it with
    ``@pass_options``.
    """

    ledger: str | None = None
    """``--ledger`` URL (else ``RAILIANCE_LEDGER_URL``, else SQLite under ``RAILIANCE_HOME``)."""
    json: bool = False
    """``--json`` before the command: every command reports JSON."""
    operator: str | None = None
    """``--operator`` before the command: the default for every command's own ``--operator``."""

    def want_json(self, flag: bool) -> bool:
        """JSON output when the command's ``--json`` or the global one is given."""
        return flag or self.json

    def store(self, *, create: bool = False) -> EventStore:
        """The ledger these options name; one that does not exist is ``LedgerNotFound`` (exit 3) unless
        ``create`` (``ledger init``, the first ``candidate add`` on the default path)."""
        from railiance_ledger import config
        from railiance_ledger.ledger.store import EventStore

        return EventStore.open(config.ledger_url(self.ledger), create=create)

    def named_operator(self, flag: str | None) -> str | None:
        """The operator named on the command line (the command's ``--operator``, else the global one)."""
        return flag or self.operator

    def actor(self, flag: str | None) -> str:
        """Who is acting: ``--operator``, else ``RAILIANCE_OPERATOR``, else the login name."""
        from railiance_ledger import config

        return _checked_name(config.operator(self.named_operator(flag)))

    def identity(self, flag: str | None) -> Operator:
        """The operator identity of a human decision, recording whether it was explicit.

        Explicit: ``--operator`` (the command's, else the global one), else ``RAILIANCE_OPERATOR``.
        Otherwise the login name, marked as defaulted: the approvals service refuses it for a human
        decision and says so.
        """
        from railiance_ledger import config
        from railiance_ledger.domain.identity import Operator

        named = config.explicit_operator(self.named_operator(flag))
        if named:
            _checked_name(named)
        if named and named.strip():
            return Operator.given(named)
        return Operator.defaulted(config.operator(None))

    def require_identity(self, flag: str | None) -> Operator:
        """An explicit operator identity (``--operator`` or ``RAILIANCE_OPERATOR``), else ``InvalidInput``."""
        from railiance_ledger.errors import InvalidInput

        who = self.identity(flag)
        if not who.explicit:
            raise InvalidInput(
                "this record needs an operator identity",
                hint="pass --operator NAME or set RAILIANCE_OPERATOR",
            )
        return who


def _shown(value: str) -> str:
    """User input in a message: redacted, shortened, control characters visible (never ``repr()``)."""
    from railiance_ledger.domain.text import shown

    return shown(value)


def _checked_name(name: str) -> str:
    """An operator name from a flag or RAILIANCE_OPERATOR, refused (exit 2) when too long or hostile."""
    from railiance_ledger.domain.text import NAME_MAX, text_problem
    from railiance_ledger.errors import InvalidInput

    problem = text_problem(name, limit=NAME_MAX)
    if problem:
        raise InvalidInput(f"the operator name {problem}", hint="give a plain name of at most 200 characters")
    return name


pass_options = click.make_pass_decorator(CliOptions, ensure=True)
"""Hands a command the ``CliOptions`` of this invocation (defaults when the group did not run)."""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

_json_opt = click.option(
    "--json", "json_out", is_flag=True, default=False, help="Print machine-readable JSON."
)


def _free_text(kind: str) -> Any:
    """A click callback refusing bad free text (exit 2, the value never echoed): ``kind`` is ``name``,
    ``reason`` or ``revision`` (domain.text: length limits, no control or bidi characters, commit ids)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        from railiance_ledger.domain.text import NAME_MAX, REASON_MAX, revision_problem, text_problem

        if value is None:
            return None
        if kind == "revision":
            problem = revision_problem(value)
        else:
            problem = text_problem(value, limit=NAME_MAX if kind == "name" else REASON_MAX)
        if problem:
            raise click.BadParameter(problem)
        return value

    return check


_operator_opt = click.option(
    "--operator",
    "operator",
    default=None,
    callback=_free_text("name"),
    help="Who is acting (else RAILIANCE_OPERATOR, else login name).",
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


_dry_run_opt = click.option(
    "--dry-run",
    "dry_run",
    is_flag=True,
    default=False,
    help="Print the plan (candidate, rollback target, objects, routing) and change nothing.",
)


def _render_plan(plan: Any, *, as_json: bool) -> None:
    from railiance_ledger.cli_render import render_plan

    render_plan(plan, as_json=as_json)


class _RedactingGroup(click.Group):
    """The top-level group: click's own usage errors (a bad option value, a missing argument) are
    printed through the redaction path with control characters made visible, like everything else."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            if args is not None and any("\x00" in str(a) for a in args):
                raise click.UsageError("an argument contains a NUL character")
            code = super().main(args, prog_name, complete_var, False, **extra)
            sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's last flush
        except click.ClickException as exc:
            import io
            import unicodedata

            buf = io.StringIO()
            exc.show(file=buf)
            text = "".join(
                c if c in "\n\t" or unicodedata.category(c)[0] != "C" else f"\\u{ord(c):04x}"
                for c in buf.getvalue()
            )
            echo(text.rstrip("\n"), err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            echo("Aborted!", err=True)
            sys.exit(1)
        except BrokenPipeError:
            _quiet_broken_pipe()
        sys.exit(code if isinstance(code, int) else 0)  # click.exceptions.Exit(n) comes back as n

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a reader of stdout that went away ends it with exit 0 (click itself would
        turn the broken pipe into exit 1)."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_broken_pipe()


@click.group(name="railiance", cls=_RedactingGroup, context_settings=CONTEXT, no_args_is_help=True)
@click.option(
    "--ledger",
    "ledger",
    default=None,
    help="Ledger URL (else RAILIANCE_LEDGER_URL, else sqlite:///$RAILIANCE_HOME/ledger.db).",
)
@_json_opt
@click.option("--operator", "operator", default=None, callback=_free_text("name"), help="Who is acting.")
@click.version_option(package_name="railiance-ledger", prog_name="railiance", message="%(prog)s %(version)s")
@click.pass_context
def _main(ctx: click.Context, ledger: str | None, json_out: bool, operator: str | None) -> None:
    """Railiance Ledger: gated, evidence-recording promotion of workloads."""
    ctx.obj = CliOptions(ledger=ledger, json=json_out, operator=operator)


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


# ---------------------------------------------------------------------------- shared steps


def _fail(exc: Exception, *, as_json: bool) -> NoReturn:
    from railiance_ledger.cli_render import render_error
    from railiance_ledger.errors import RailianceError

    code = exc.exit_code if isinstance(exc, RailianceError) else EXIT_FAILED
    render_error(exc, code=code, as_json=as_json)
    raise click.exceptions.Exit(code)


@contextmanager
def _guard(as_json: bool) -> Iterator[None]:
    """Translate our errors into the exit-code contract; never show a traceback for them."""
    from railiance_ledger.errors import RailianceError

    try:
        yield
    except click.exceptions.Exit:
        raise
    except BrokenPipeError:
        raise  # the reader went away (``| head``): not an input error; the group ends with exit 0
    except RailianceError as exc:
        _fail(exc, as_json=as_json)
    except OSError as exc:
        # A file the operator named (an output path, RAILIANCE_HOME, an app directory): invalid input.
        from railiance_ledger.errors import InvalidInput

        where = f": {_shown(str(exc.filename))}" if exc.filename is not None else ""
        _fail(InvalidInput(f"{exc.strerror or type(exc).__name__}{where}"), as_json=as_json)


def _load(app_dir: Path) -> Declaration:
    from railiance_ledger.declaration.loader import load_declaration

    return load_declaration(app_dir)


@contextmanager
def _statehub() -> Iterator[StateHubPort | None]:
    """The State Hub of this command (``lifecycle.environment``), or ``None`` when none is configured."""
    from railiance_ledger.lifecycle.environment import Environment

    with Environment.from_env().statehub() as hub:
        yield hub


@contextmanager
def _adapters(
    decl: Declaration, kubeconfig: str | None, context: str | None, *, metrics: bool = True
) -> Iterator[Adapters]:
    """The real adapters for ``decl`` (lifecycle.environment); with ``metrics`` (Stage 2), configuration
    gaps that make metrics fail closed are warned about first."""
    from contextlib import ExitStack

    from railiance_ledger.errors import AdapterError, EnvironmentUnavailable
    from railiance_ledger.lifecycle.environment import Environment

    with ExitStack() as stack:
        try:
            ad = stack.enter_context(Environment.from_env(kubeconfig=kubeconfig, context=context).open(decl))
            version = ad.kube.server_version()  # the pre-flight: the API server answers at all
        except AdapterError as exc:
            raise EnvironmentUnavailable(
                f"the cluster cannot be reached, so nothing was asked or recorded: {exc.message}",
                hint="check --kubeconfig / KUBECONFIG, --context / RAILIANCE_KUBE_CONTEXT, and that the API "
                "server answers",
            ) from exc
        if not version:
            raise EnvironmentUnavailable("the cluster's API server answered /version with nothing")
        _require_helm(ad.helm.binary)
        for warning in ad.warnings if metrics else ():
            echo(f"warning: {warning}", err=True)
        yield ad


def _require_helm(binary: str) -> None:
    """The helm binary exists and is executable, else ``EnvironmentUnavailable`` (exit 4)."""
    import os
    import shutil

    from railiance_ledger.errors import EnvironmentUnavailable

    found = shutil.which(binary) if os.sep not in binary else binary
    if not found or not os.access(found, os.X_OK):
        raise EnvironmentUnavailable(
            f"the helm binary {_shown(binary)} is not there", hint="install helm or set RAILIANCE_HELM"
        )


@contextmanager
def _cluster_action(
    opts: CliOptions,
    decl: Declaration,
    action: str,
    operator: str | None,
    kubeconfig: str | None,
    context: str | None,
    *,
    metrics: bool = True,
) -> Iterator[tuple[EventStore, Adapters]]:
    """The skeleton of a command that changes the cluster: the ledger's own refusals first (a chain that
    does not verify, a blocked workload, a lease held by another action: exit 3), then the environment
    (exit 4 when it is missing, before the lease is taken: nothing is recorded), then the lease."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        if _ledger_refuses(opts.store(), decl.workload.name, action):  # acting() raises the exit-3 error
            store = stack.enter_context(_acting(opts, decl, action, operator))
            ad = stack.enter_context(_adapters(decl, kubeconfig, context, metrics=metrics))
        else:
            ad = stack.enter_context(_adapters(decl, kubeconfig, context, metrics=metrics))
            store = stack.enter_context(_acting(opts, decl, action, operator))
        yield store, ad


def _ledger_refuses(store: EventStore, workload: str, action: str) -> bool:
    """Whether ``acting`` would refuse ``action`` now (read only): the chain does not verify, an
    incomplete rollback blocks the workload, or another action holds an unexpired lease."""
    from datetime import datetime

    from railiance_ledger.errors import IntegrityError
    from railiance_ledger.ledger.checkpoint import check_integrity
    from railiance_ledger.lifecycle.actions import UNBLOCKING_ACTIONS, action_state

    try:
        check_integrity(store)
    except IntegrityError:
        return True
    state = action_state(store, workload)
    if state.blocker is not None and action not in UNBLOCKING_ACTIONS:
        return True
    return state.lease is not None and not state.lease.expired(datetime.now(UTC))


@contextmanager
def _acting(opts: CliOptions, decl: Declaration, action: str, operator: str | None) -> Iterator[EventStore]:
    """The ledger for an action on ``decl``'s workload (``lifecycle.actions``): the chain verified from
    the checkpoint, no unresolved incomplete rollback, the workload's lease held; exit 3 otherwise."""
    from railiance_ledger.lifecycle.actions import acting, lease_duration

    with acting(
        opts.store(),
        decl.workload.name,
        action,
        opts.actor(operator),
        duration=lease_duration(decl, action),
    ) as act:
        yield act.store


def _read_integrity(store: EventStore, *, strict: bool) -> dict[str, Any]:
    """The integrity check of a read-only command: a loud warning on stderr when the chain does not
    verify (``IntegrityError`` under ``--strict``, exit 3); the check as a dict for JSON output."""
    from railiance_ledger.errors import IntegrityError
    from railiance_ledger.ledger.checkpoint import check_integrity

    try:
        return {"ok": True, **check_integrity(store).as_dict()}
    except IntegrityError as exc:
        if strict:
            raise
        echo(f"WARNING: THE LEDGER DOES NOT VERIFY: {exc.message}", err=True)
        echo("WARNING: what follows is read from a ledger that was changed after it was recorded", err=True)
        return {"ok": False, "first_bad_seq": exc.seq, "problem": exc.problem, "detail": exc.message}


def _require_workload(store: EventStore, workload: str) -> None:
    """Refuse (``UnknownName``, exit 2) a workload the ledger has no events for, naming the nearest known
    names: a typo (``status hello-wbe``) must not read as an empty, healthy workload."""
    import difflib

    from railiance_ledger.errors import UnknownName

    if store.has_stream(workload):
        return
    known = store.streams()
    nearest = difflib.get_close_matches(workload, known, n=3, cutoff=0.5)
    if nearest:
        hint = f"did you mean {', '.join(nearest)}?"
    elif known:
        hint = f"the ledger knows {', '.join(known[:10])}" + (" ..." if len(known) > 10 else "")
    else:
        hint = "the ledger is empty: register a candidate with `railiance candidate add APP_DIR --image ...`"
    raise UnknownName(f"no workload {_shown(workload)} in the ledger", nearest=nearest, hint=hint)


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
@pass_options
def validate(opts: CliOptions, app_dir: Path, runbook: Path | None, json_out: bool) -> None:
    """Validate APP_DIR/railiance/app.toml; every error on its own line with its TOML path and a hint."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_validation
        from railiance_ledger.declaration.loader import validate_app_dir

        report = validate_app_dir(app_dir)
        if runbook is not None:
            from railiance_ledger.declaration.runbook import render_runbook
            from railiance_ledger.domain.redaction import redact

            runbook.write_text(redact(render_runbook(app_dir, report)), encoding="utf-8")
        ok = report.declaration is not None and not report.issues
        render_validation(report, app_dir=app_dir, runbook=runbook, ok=ok, as_json=as_json)
        raise click.exceptions.Exit(EXIT_OK if ok else EXIT_INVALID)


# ---------------------------------------------------------------------------- candidates


@candidate_app.command("add")
@_app_dir
@click.option("--image", "image", required=True, help="REPOSITORY@sha256:<64 hex>; a tag alone is refused.")
@click.option(
    "--revision",
    "revision",
    default=None,
    callback=_free_text("revision"),
    help="Source commit id (else read from the work tree).",
)
@_operator_opt
@_json_opt
@pass_options
def candidate_add(
    opts: CliOptions, app_dir: Path, image: str, revision: str | None, operator: str | None, json_out: bool
) -> None:
    """Register a candidate artifact by immutable digest."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_registration
        from railiance_ledger.lifecycle.candidates import (
            parse_candidate_image,
            register_candidate,
            source_revision,
        )

        parse_candidate_image(image)  # refuse bad input before touching anything
        decl = _load(app_dir)
        rev = revision or source_revision(decl)
        from railiance_ledger import config

        store = opts.store(create=config.default_ledger(opts.ledger))
        event, created = register_candidate(
            store=store, decl=decl, image=image, operator=opts.actor(operator), revision=rev
        )
        render_registration(event, created, as_json=as_json)


# ---------------------------------------------------------------------------- Stage 1


@app.command("run")
@_app_dir
@_image_opt
@click.option(
    "--skip-check", "skip_check", multiple=True, help="Skip a declared local check (needs a waiver)."
)
@_operator_opt
@_json_opt
@pass_options
def run(
    opts: CliOptions,
    app_dir: Path,
    image: str | None,
    skip_check: list[str],
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 1 local validation of the candidate."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_stage1
        from railiance_ledger.lifecycle import stage1
        from railiance_ledger.lifecycle.environment import open_local

        with open_local() as ad:
            outcome = stage1.run_stage1(
                store=opts.store(),
                app_dir=app_dir,
                operator=opts.actor(operator),
                image=image,
                helm=ad.helm,
                http=ad.http,
                skip_checks=list(skip_check),
                registries=ad.registries,
            )
        render_stage1(outcome.document, as_json=as_json)
        raise click.exceptions.Exit(outcome.exit_code)


@app.command("waive")
@_app_dir
@click.option("--gate", "gate", required=True, help="Gate (check) name, e.g. source_revision_identified.")
@click.option(
    "--reason",
    "reason",
    callback=_free_text("reason"),
    required=True,
    help="Why the gate is waived (recorded, redacted).",
)
@_image_opt
@click.option("--stage", "stage", default=None, type=int, help="Stage the waiver applies to (default 1).")
@click.option(
    "--payload", "payload_only", is_flag=True, default=False, help="Print the record to sign; write nothing."
)
@click.option(
    "--signature",
    "signature_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Armored SSH signature over the record (see railiance approve --payload; docs/approvals.md).",
)
@_operator_opt
@_json_opt
@pass_options
def waive(
    opts: CliOptions,
    app_dir: Path,
    gate: str,
    reason: str,
    image: str | None,
    stage: int | None,
    payload_only: bool,
    signature_file: Path | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Record a waiver for one gate of one candidate (--payload: print the record to sign instead)."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_waiver
        from railiance_ledger.lifecycle import waivers

        decl = _load(app_dir)
        digest = None
        if image:
            from railiance_ledger.lifecycle.candidates import parse_candidate_image

            digest = parse_candidate_image(image)[1]
        who = opts.require_identity(operator)
        args: dict[str, Any] = {
            "decl": decl,
            "gate": gate,
            "operator": who,
            "reason": reason,
            "candidate": digest,
            "stage": stage or 1,
        }
        if payload_only:
            sys.stdout.buffer.write(waivers.waiver_to_sign(store=opts.store(), **args))
            return
        with _acting(opts, decl, "waive", operator) as store, _statehub() as hub:
            event = waivers.record_waiver(
                store=store, statehub=hub, signature=_read_signature(signature_file), **args
            )
        render_waiver(event, gate, as_json=as_json)


# ---------------------------------------------------------------------------- later stages


@app.command("deploy")
@_app_dir
@click.option(
    "--stage",
    "stage",
    default=2,
    show_default=True,
    type=int,
    help="Only Stage 2 (canary) is deployed by this command.",
)
@_image_opt
@_dry_run_opt
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
@pass_options
def deploy(
    opts: CliOptions,
    app_dir: Path,
    stage: int,
    image: str | None,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 2 canary deployment: every precheck first, then the Helm release and its routing."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput

        if stage != 2:
            raise InvalidInput(
                f"deploy --stage {stage} is not a deploy: Stage 1 is `railiance run`, "
                "Stage 3 is `railiance promote`",
                hint="use --stage 2",
            )
        from railiance_ledger.cli_render import render_stage2
        from railiance_ledger.lifecycle import stage2

        decl = _load(app_dir)
        if dry_run:
            from railiance_ledger.lifecycle.plans import deploy_plan

            _render_plan(deploy_plan(opts.store(), decl, image), as_json=as_json)
            return
        with _cluster_action(opts, decl, "deploy", operator, kubeconfig, context) as (store, ad):
            outcome = stage2.deploy_canary(
                store=store,
                decl=decl,
                operator=opts.actor(operator),
                kube=ad.kube,
                helm=ad.helm,
                registry=ad.registry,
                metrics=ad.metrics,
                http=ad.http,
                statehub=ad.statehub,
                image=image,
                helm_upgrade_args=ad.helm_args,
            )
        render_stage2(outcome, as_json=as_json)
        raise click.exceptions.Exit(outcome.exit_code)


@app.command("observe")
@_app_dir
@click.option(
    "--image", "image", default=None, help="Candidate REPOSITORY@sha256:... (else the deployed one)."
)
@click.option(
    "--max-samples",
    "max_samples",
    default=None,
    type=click.IntRange(1, 10**6),
    help="Stop after N samples (resume later).",
)
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
@pass_options
def observe(
    opts: CliOptions,
    app_dir: Path,
    image: str | None,
    max_samples: int | None,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 2 evidence collection over the observation window, with progress; resumable."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import progress_bar, render_stage2
        from railiance_ledger.lifecycle import stage2

        decl = _load(app_dir)
        progress_cb, finish = progress_bar(enabled=not as_json and sys.stderr.isatty(), quiet=opts.json)
        try:
            with _cluster_action(opts, decl, "observe", operator, kubeconfig, context) as (store, ad):
                outcome = stage2.observe_canary(
                    store=store,
                    decl=decl,
                    operator=opts.actor(operator),
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
        render_stage2(outcome, as_json=as_json)
        raise click.exceptions.Exit(outcome.exit_code)


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
@click.option(
    "--reason",
    "reason",
    callback=_free_text("reason"),
    default=None,
    help="With --revoke: why (recorded, redacted).",
)
@click.option(
    "--payload", "payload_only", is_flag=True, default=False, help="Print the record to sign; write nothing."
)
@click.option(
    "--signature",
    "signature_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Armored SSH signature (ssh-keygen -Y sign -n railiance-ledger@v1) over the --payload record.",
)
@_operator_opt
@_json_opt
@pass_options
def approve(
    opts: CliOptions,
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
    payload_only: bool,
    signature_file: Path | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Record (or with --revoke, revoke) a human approval: operator, candidate, stage, window, rollback
    target.

    With --payload, print the canonical record to sign instead; --signature FILE records it signed.
    """
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import report_noted
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle import approvals

        decl = _load(app_dir)
        who = opts.identity(operator)
        signature = _read_signature(signature_file)
        if revoke:
            if payload_only:
                sys.stdout.buffer.write(
                    approvals.revocation_to_sign(
                        store=opts.store(),
                        decl=decl,
                        operator=who,
                        reason=reason or "",
                        approval_id=approval,
                        image=image,
                    )
                )
                return
            opts.require_identity(operator)  # refused (exit 2) before the lease is taken
            with _acting(opts, decl, "revoke", operator) as store, _statehub() as hub:
                event = approvals.revoke(
                    store=store,
                    decl=decl,
                    operator=who,
                    reason=reason or "",
                    approval_id=approval,
                    image=image,
                    statehub=hub,
                    signature=signature,
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
                        f"--waive {_shown(item)} is not GATE=REASON",
                        hint="e.g. --waive local_health='probe flaky'",
                    )
                waived[gate.strip()] = why.strip()
            args: dict[str, Any] = {
                "decl": decl,
                "operator": who,
                "stage": stage,
                "image": image,
                "window": window,
                "rollback_target": rollback_target,
                "waived_gates": waived or None,
                "retrospective": retrospective,
            }
            if payload_only:
                sys.stdout.buffer.write(approvals.approval_to_sign(store=opts.store(), **args))
                return
            opts.require_identity(operator)  # refused (exit 2) before the lease is taken
            with _acting(opts, decl, "approve", operator) as store, _statehub() as hub:
                event = approvals.approve(store=store, statehub=hub, signature=signature, **args)
            summary = (
                f"approval recorded: stage {event.stage} of {event.candidate} by {event.actor} "
                f"(event {event.event_id})"
            )
        report_noted(event, summary, as_json=as_json)


def _read_signature(path: Path | None) -> str | None:
    """The armored signature in ``path`` (``--signature FILE``), or ``None``."""
    if path is None:
        return None
    from railiance_ledger.errors import InvalidInput

    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--signature {path}: cannot read it: {exc}") from exc
    if "-----BEGIN SSH SIGNATURE-----" not in text:
        raise InvalidInput(
            f"--signature {path} is not an armored SSH signature",
            hint="sign with `ssh-keygen -Y sign -n railiance-ledger@v1 -f KEY FILE` and pass FILE.sig",
        )
    return text


@app.command("exception")
@_app_dir
@click.option("--skip-stage", "skip_stage", required=True, type=int, help="The stage to skip (1 or 2).")
@click.option(
    "--reason",
    "reason",
    callback=_free_text("reason"),
    required=True,
    help="Why delaying would increase production risk.",
)
@_image_opt
@click.option(
    "--payload", "payload_only", is_flag=True, default=False, help="Print the record to sign; write nothing."
)
@click.option(
    "--signature",
    "signature_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Armored SSH signature over the record (see railiance approve --payload; docs/approvals.md).",
)
@_operator_opt
@_json_opt
@pass_options
def exception(
    opts: CliOptions,
    app_dir: Path,
    skip_stage: int,
    reason: str,
    image: str | None,
    payload_only: bool,
    signature_file: Path | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Record an emergency exception (skip a stage); it awaits a retrospective approval.

    With --payload, print the record to sign instead; --signature FILE records it signed.
    """
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import report_noted
        from railiance_ledger.lifecycle import approvals

        decl = _load(app_dir)
        opts.require_identity(operator)  # refused (exit 2) before the lease is taken
        args: dict[str, Any] = {
            "decl": decl,
            "operator": opts.identity(operator),
            "skip_stage": skip_stage,
            "reason": reason,
            "image": image,
        }
        if payload_only:
            sys.stdout.buffer.write(approvals.exception_to_sign(store=opts.store(), **args))
            return
        with _acting(opts, decl, "exception", operator) as store, _statehub() as hub:
            event = approvals.record_exception(
                store=store, statehub=hub, signature=_read_signature(signature_file), **args
            )
        report_noted(
            event,
            f"emergency exception recorded: skip stage {skip_stage} for {event.candidate} by {event.actor}; "
            "a retrospective approval is now required",
            as_json=as_json,
        )


@app.command("readiness")
@_app_dir
@_image_opt
@_json_opt
@pass_options
def readiness(opts: CliOptions, app_dir: Path, image: str | None, json_out: bool) -> None:
    """Answer the spec's readiness questions from the declaration and the ledger (exit 1 while any is
    missing)."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_readiness
        from railiance_ledger.lifecycle.readiness import readiness_report

        report = readiness_report(store=opts.store(), decl=_load(app_dir), image=image)
        render_readiness(report, as_json=as_json)
        raise click.exceptions.Exit(EXIT_OK if report.ready else EXIT_FAILED)


@app.command("promote")
@_app_dir
@_image_opt
@_dry_run_opt
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
@pass_options
def promote(
    opts: CliOptions,
    app_dir: Path,
    image: str | None,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Stage 3 production promotion: six prechecks, the promotion, routing read-back, smoke; rolls back on
    failure."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_promotion
        from railiance_ledger.lifecycle import stage3

        decl = _load(app_dir)
        if dry_run:
            from railiance_ledger.lifecycle.plans import promote_plan

            _render_plan(promote_plan(opts.store(), decl, image), as_json=as_json)
            return
        with _cluster_action(opts, decl, "promote", operator, kubeconfig, context, metrics=False) as (
            store,
            ad,
        ):
            outcome = stage3.promote(
                store=store,
                decl=decl,
                operator=opts.actor(operator),
                kube=ad.kube,
                helm=ad.helm,
                http=ad.http,
                statehub=ad.statehub,
                image=image,
                helm_upgrade_args=ad.helm_args,
            )
        render_promotion(outcome, as_json=as_json)
        raise click.exceptions.Exit(outcome.exit_code)


@app.command("rollback")
@_app_dir
@click.option(
    "--reason",
    "reason",
    callback=_free_text("reason"),
    required=True,
    help="The triggering symptom (recorded, redacted).",
)
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
@click.option(
    "--resolve",
    "resolve",
    is_flag=True,
    default=False,
    help="Record that an incomplete rollback was finished by hand (unblocks the workload).",
)
@click.option(
    "--to",
    "to",
    default=None,
    metavar="DIGEST",
    help="Return to this earlier verified stable of the lineage (else the previous stable).",
)
@_dry_run_opt
@_kubeconfig_opt
@_context_opt
@_operator_opt
@_json_opt
@pass_options
def rollback(
    opts: CliOptions,
    app_dir: Path,
    reason: str,
    defer: bool,
    approval: str | None,
    accept_forward_only: bool,
    candidate: str,
    manual_done: bool,
    resolve: bool,
    to: str | None,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    operator: str | None,
    json_out: bool,
) -> None:
    """Roll back to the previous stable target from the ledger's lineage (or --to an earlier verified
    stable), then verify and record."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput

        if resolve and (dry_run or to is not None):
            raise InvalidInput("--resolve records a manual clean-up; it takes neither --dry-run nor --to")
        if resolve:
            _resolve_incomplete(opts, app_dir, reason, operator, as_json=as_json)
            return
        from railiance_ledger.cli_render import render_rollback
        from railiance_ledger.lifecycle import rollback as rb

        fates = ("returned-to-stage1", "blocked", "abandoned")
        if candidate not in fates:
            raise InvalidInput(
                f"--candidate {_shown(candidate)} is not one of {', '.join(fates)}",
                hint="e.g. --candidate blocked",
            )
        decl = _load(app_dir)
        target = None
        if to is not None:
            from railiance_ledger.lifecycle.candidates import candidate_digest

            target = candidate_digest(to)
        if dry_run or target is not None:  # a --to that is no earlier stable is refused (exit 2) first
            from railiance_ledger.lifecycle.plans import rollback_plan

            plan = rollback_plan(opts.store(), decl, to=target)
            if dry_run:
                _render_plan(plan, as_json=as_json)
                return
        with _cluster_action(opts, decl, "rollback", operator, kubeconfig, context, metrics=False) as (
            store,
            ad,
        ):
            outcome = rb.rollback(
                store=store,
                decl=decl,
                operator=opts.actor(operator),
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
                to=target,
            )
        render_rollback(outcome, decl.workload.name, as_json=as_json)
        raise click.exceptions.Exit(outcome.exit_code)


def _resolve_incomplete(
    opts: CliOptions, app_dir: Path, reason: str, operator: str | None, *, as_json: bool
) -> None:
    """``rollback --resolve``: record that the remains of an incomplete rollback were cleaned up by hand."""
    from railiance_ledger.cli_render import emit_json
    from railiance_ledger.lifecycle.actions import acting, lease_duration, resolve_incomplete

    decl = _load(app_dir)
    who = opts.require_identity(operator).name
    name = decl.workload.name
    with acting(opts.store(), name, "resolve", who, duration=lease_duration(decl, "resolve")) as act:
        event = resolve_incomplete(act, name, who, reason)
    if as_json:
        emit_json({"resolved": True, "seq": event.seq, "event_id": event.event_id})
    else:
        echo(f"incomplete rollback of {name} resolved by {who} (seq {event.seq}); actions are allowed again")


# ---------------------------------------------------------------------------- projections


_strict_opt = click.option(
    "--strict", "strict", is_flag=True, default=False, help="Exit 3 when the ledger chain does not verify."
)


@app.command("evidence")
@click.argument("target", metavar="APP_DIR|verify")
@click.argument("bundle", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--candidate", "candidate", default=None, help="The candidate digest (or image@digest).")
@click.option(
    "--key",
    "key_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM key: the private key to sign (else RAILIANCE_EVIDENCE_KEY); the public key to verify.",
)
@click.option(
    "--output",
    "-o",
    "output",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here.",
)
@click.option(
    "--push",
    "push",
    is_flag=True,
    default=False,
    help="Also push the bundle next to the image (cosign's sha256-<hex>.att tag) in RAILIANCE_REGISTRY_URL.",
)
@click.option(
    "--image",
    "image",
    default=None,
    help="verify: read the bundle from the registry, attached to REPOSITORY@sha256:... (no FILE).",
)
@_json_opt
@pass_options
def evidence(
    opts: CliOptions,
    target: str,
    bundle: Path | None,
    candidate: str | None,
    key_file: Path | None,
    output: Path | None,
    push: bool,
    image: str | None,
    json_out: bool,
) -> None:
    """`evidence APP_DIR --candidate DIGEST [--push]`: the signed in-toto bundle;
    `evidence verify FILE --key PUB` or `evidence verify --image REPO@sha256:... --key PUB`."""
    import json
    import os
    from datetime import datetime

    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle.evidence import EVIDENCE_KEY_ENV, build_bundle, verify_bundle

        key = key_file or (Path(os.environ[EVIDENCE_KEY_ENV]) if os.environ.get(EVIDENCE_KEY_ENV) else None)
        if key is None:
            raise InvalidInput("evidence needs a key", hint=f"pass --key FILE or set {EVIDENCE_KEY_ENV}")
        if target == "verify":
            expect: str | None = None
            if image is not None:
                text, expect = _attached_bundle(opts, image)
            elif bundle is None:
                raise InvalidInput(
                    "evidence verify needs the bundle FILE", hint="railiance evidence verify FILE --key PUB"
                )
            else:
                try:
                    text = bundle.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise InvalidInput(f"cannot read {bundle}: {exc}") from exc
            verified = verify_bundle(text, key, expect_digest=expect)
            if as_json:
                echo(json.dumps(verified.as_dict(), indent=2, sort_keys=True))
            else:
                subject = verified.subject[0]
                echo(
                    f"ok: {subject['name']}@sha256:{subject['digest']['sha256']} {verified.result}; "
                    f"ledger seq {verified.ledger.get('seq')} hash {verified.ledger.get('hash')}; key "
                    f"{verified.keyid}"
                )
            return
        if bundle is not None:
            raise InvalidInput(
                f"unexpected argument {bundle}", hint="railiance evidence APP_DIR --candidate DIGEST"
            )
        if not candidate:
            raise InvalidInput(
                "evidence needs --candidate DIGEST", hint="railiance evidence APP_DIR --candidate sha256:..."
            )
        decl = _load(Path(target))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = build_bundle(store=opts.store(), decl=decl, candidate=candidate, key_file=key, now=now)
        if output is not None:
            output.write_text(text, encoding="utf-8")
            echo(f"evidence bundle written to {output}", err=as_json)
        else:
            sys.stdout.write(text)
        if push:
            pushed = _push_bundle(opts, decl, text)
            echo(f"evidence pushed to {pushed.repository}:{pushed.tag} ({pushed.manifest_digest})", err=True)


def _push_bundle(opts: CliOptions, decl: Any, text: str) -> Any:
    """``evidence --push``: the bundle's envelopes at the image's ``sha256-<hex>.att`` tag."""
    from railiance_ledger.lifecycle.environment import Environment, open_attestations
    from railiance_ledger.lifecycle.evidence import push_bundle

    env = Environment.from_env()
    with open_attestations(
        env.registry_base(decl), username=env.registry_username, password=env.registry_password
    ) as store:
        return push_bundle(text, store)


def _attached_bundle(opts: CliOptions, image: str) -> tuple[str, str]:
    """``evidence verify --image REPO@sha256:...``: the bundle attached to that image, and its digest."""
    from railiance_ledger.errors import InvalidInput
    from railiance_ledger.lifecycle.environment import Environment, open_attestations
    from railiance_ledger.lifecycle.evidence import fetch_bundle, repository_path

    name, sep, digest = image.partition("@")
    if not sep or not digest.startswith("sha256:"):
        raise InvalidInput(
            f"{image!r} is not REPOSITORY@sha256:...", hint="pass --image REPOSITORY@sha256:..."
        )
    env = Environment.from_env()
    host = name.split("/", 1)[0]
    base = (env.registry_url or f"https://{host}").rstrip("/")
    with open_attestations(base, username=env.registry_username, password=env.registry_password) as store:
        return fetch_bundle(store, repository=repository_path(name), digest=digest), digest


@app.command("status")
@click.argument("workload")
@_strict_opt
@_json_opt
@pass_options
def status(opts: CliOptions, workload: str, strict: bool, json_out: bool) -> None:
    """Each candidate's stage state, the current stable and earlier stables; the lease and any blocker."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import as_dict, emit_json, render_status
        from railiance_ledger.ledger.projections import workload_status
        from railiance_ledger.lifecycle.actions import action_summary

        store = opts.store()
        _require_workload(store, workload)
        integrity = _read_integrity(store, strict=strict)
        data = as_dict(workload_status(store, workload))
        data["integrity"] = integrity
        data.update(action_summary(store, workload))
        data.update(_status_extras(store, workload))
        _retrospective_deadlines(store, workload, data)
        if as_json:
            emit_json(data)
            return
        render_status(data)


def _retrospective_deadlines(store: EventStore, workload: str, data: dict[str, Any]) -> None:
    """Each emergency action awaiting its retrospective approval gains ``due_at`` and ``overdue``."""
    from railiance_ledger.lifecycle.approvals import pending_retrospective

    due = {p["exception_id"]: p for p in pending_retrospective(store, workload)}
    for e in data.get("awaiting_retrospective") or []:
        if e.get("event_id") in due:
            e.update(due_at=due[e["event_id"]]["due_at"], overdue=due[e["event_id"]]["overdue"])


def _status_extras(store: EventStore, workload: str) -> dict[str, Any]:
    """What ``status`` adds to the workload projection: the stable's promotion, the rollback target,
    the open canary, the last rollback and the last failed stage with its failed checks' reasons."""
    from railiance_ledger.domain.events import EventKind
    from railiance_ledger.ledger.projections import lineage
    from railiance_ledger.lifecycle.gating import open_canary

    lin = lineage(store, workload)
    history = store.read_stream(workload)
    current, target = lin.current_stable, lin.rollback_target
    opened = open_canary(history)
    failed = next(
        (
            ev
            for ev in reversed(history)
            if ev.kind == EventKind.STAGE_COMPLETED and ev.payload.get("status") == "fail"
        ),
        None,
    )
    last = lin.rollbacks[-1] if lin.rollbacks else None
    return {
        "stable": {
            "digest": current.digest,
            "image": current.image,
            "promoted_at": current.promoted_at,
            "promoted_by": current.promoted_by,
            "approved_by": [
                {"operator": a.operator, "at": a.recorded_at} for a in current.approvals if not a.revoked
            ],
        }
        if current
        else None,
        "rollback_target": {"digest": target.digest, "image": target.image, "kind": target.kind}
        if target
        else None,
        "open_canary": _canary_window(opened) if opened else None,
        "last_rollback": last.as_dict() if last else None,
        "last_failure": {
            "digest": failed.candidate,
            "stage": failed.stage,
            "seq": failed.seq,
            "recorded_at": failed.recorded_at,
            "failed_checks": [
                {"name": c.get("name"), "reason": c.get("reason")}
                for c in failed.payload.get("checks") or []
                if isinstance(c, dict) and c.get("status") == "fail"
            ],
        }
        if failed
        else None,
    }


def _canary_window(opened: Any) -> dict[str, Any]:
    """The open canary's ``stage.started``: its candidate, when it opened and when its window closes."""
    from datetime import datetime, timedelta

    window = opened.payload.get("observation_window_seconds")
    closes = None
    if isinstance(window, int):
        closes = (datetime.fromisoformat(opened.recorded_at) + timedelta(seconds=window)).isoformat()
    return {
        "digest": opened.candidate,
        "opened_at": opened.recorded_at,
        "seq": opened.seq,
        "window_seconds": window,
        "closes_at": closes,
    }


@app.command("notes")
@click.argument("workload")
@click.option("--repost", "repost", is_flag=True, default=False, help="Post every undelivered note again.")
@_json_opt
@pass_options
def notes(opts: CliOptions, workload: str, repost: bool, json_out: bool) -> None:
    """State Hub notes recorded as not delivered; --repost sends them again (exit 1 while any remain)."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_notes
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.lifecycle import notes as hub_notes

        store = opts.store()
        _require_workload(store, workload)
        reposted: list[Any] = []
        if repost:
            with _statehub() as statehub:
                if statehub is None:
                    raise InvalidInput(
                        "--repost needs a State Hub", hint=f"set {hub_notes.STATEHUB_URL_ENV} to its base URL"
                    )
                reposted = hub_notes.repost_undelivered(store=store, workload=workload, statehub=statehub)
                from railiance_ledger.lifecycle.approvals import post_overdue_notes

                # emergency exceptions past their retrospective deadline: one State Hub note each
                reposted += post_overdue_notes(store=store, workload=workload, statehub=statehub)
        pending = hub_notes.undelivered_notes(store, workload)
        render_notes(workload, reposted, pending, as_json=as_json)
        raise click.exceptions.Exit(EXIT_FAILED if pending else EXIT_OK)


F = TypeVar("F", bound=Callable[..., Any])


def _paging_opts(what: str, every: str) -> Callable[[F], F]:
    """``--limit`` (default 50), ``--before SEQ`` and ``--all``: one page of ``what``, newest first."""

    def decorate(fn: F) -> F:
        fn = click.option("--all", "show_all", is_flag=True, default=False, help=f"{every} (no paging).")(fn)
        fn = click.option(
            "--before", "before", default=None, type=click.IntRange(1), help=f"Only {what} below this seq."
        )(fn)
        return click.option(
            "--limit",
            "limit",
            default=50,
            show_default=True,
            type=click.IntRange(1, 10**9),
            help=f"The newest N {what}.",
        )(fn)

    return decorate


@app.command("history")
@click.argument("workload")
@_paging_opts("events", "Every event")
@_strict_opt
@_json_opt
@pass_options
def history(
    opts: CliOptions,
    workload: str,
    limit: int,
    before: int | None,
    show_all: bool,
    strict: bool,
    json_out: bool,
) -> None:
    """The workload's events, oldest first; paged (the newest --limit), the next page with --before SEQ."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_history
        from railiance_ledger.ledger.projections import history as read_history

        store = opts.store()
        _require_workload(store, workload)
        _read_integrity(store, strict=strict)
        page = read_history(store, workload, limit=None if show_all else limit, before=before)
        render_history(workload, page, as_json=as_json)
        if not show_all and len(page) == limit and not as_json:
            echo(f"older events: --before {page[0].seq} (or --all)", err=True)


@app.command("lineage")
@click.argument("workload")
@click.option("--at", "at", default=None, help="ISO timestamp: what was stable at that moment.")
@_paging_opts("stables", "Every stable and rollback")
@_strict_opt
@_json_opt
@pass_options
def lineage(
    opts: CliOptions,
    workload: str,
    at: str | None,
    limit: int,
    before: int | None,
    show_all: bool,
    strict: bool,
    json_out: bool,
) -> None:
    """Stable history and the rollback target (what we would roll back to, and how); the stables and
    rollbacks are paged (the newest --limit), the next page with --before SEQ."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_lineage
        from railiance_ledger.lifecycle.stage3 import lineage_with_evidence

        store = opts.store()
        _require_workload(store, workload)
        _read_integrity(store, strict=strict)
        data = lineage_with_evidence(
            store,
            workload,
            at=_normalise_at(at) if at else None,
            limit=None if show_all else limit,
            before=before,
        )
        _add_revisions(store, workload, data)
        render_lineage(workload, data, at=at, as_json=as_json)
        stables = data.get("stables") or []
        if not show_all and len(stables) == limit and not as_json:
            echo(f"older stables: --before {stables[0]['seq']} (or --all)", err=True)


def _add_revisions(store: EventStore, workload: str, data: dict[str, Any]) -> None:
    """Each stable of ``data`` gets the source ``revision`` its candidate was registered with."""
    from railiance_ledger.domain.events import EventKind

    revisions = {
        ev.candidate: ev.payload.get("revision")
        for ev in store.read_stream(workload)
        if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate
    }
    for stable in [*(data.get("stables") or []), data.get("current_stable") or {}]:
        if stable.get("digest") in revisions:
            stable["revision"] = revisions[stable["digest"]]


def _normalise_at(at: str) -> str:
    from datetime import datetime

    from railiance_ledger.errors import InvalidInput

    try:
        ts = datetime.fromisoformat(at)
    except ValueError as exc:
        raise InvalidInput(
            f"--at {_shown(at)} is not an ISO-8601 timestamp", hint="e.g. 2026-11-26T10:00:00Z"
        ) from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------------- webhook (registry pushes)

webhook_app = click.Group(
    "webhook", help="Registry push notifications.", no_args_is_help=True, context_settings=CONTEXT
)
app.add_command(webhook_app)


@webhook_app.command("serve")
@click.option("--listen", default="127.0.0.1:9400", show_default=True, help="HOST:PORT to listen on.")
@click.option(
    "--spool",
    "spool",
    default=None,
    help=(
        "Spool file the push sensor reads "
        "(default RAILIANCE_WEBHOOK_SPOOL, else $RAILIANCE_HOME/registry-events.db)."
    ),
)
def webhook_serve(listen: str, spool: str | None) -> None:
    """Receive the Distribution registry's push notifications (notifications.endpoints in its config),
    authenticated by the shared secret of RAILIANCE_WEBHOOK_SECRET, and store them for the Dagster
    registry_push_sensor. Runs until interrupted."""
    import signal
    from pathlib import Path

    from railiance_ledger.lifecycle.registry_push import serve_webhook, spool_path

    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # A server stops on Ctrl-C and on SIGTERM (systemd, Kubernetes), even when it was started with
    # SIGINT ignored (a background job, or a parent that ignores it: ignored signals are inherited).
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with _guard(False):
        target = Path(spool).expanduser() if spool else spool_path()
        try:
            serve_webhook(
                listen=listen, spool=target, ready=lambda url: echo(f"listening on {url}; spool {target}")
            )
        except KeyboardInterrupt:
            echo("stopped")


# ---------------------------------------------------------------------------- ledger


@ledger_app.command("init")
@_json_opt
@pass_options
def ledger_init(opts: CliOptions, json_out: bool) -> None:
    """Create the ledger at --ledger / RAILIANCE_LEDGER_URL (else the default path); idempotent."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        store = opts.store(create=True)
        seq, head = store.head()
        if as_json:
            from railiance_ledger.cli_render import emit_json

            emit_json({"ok": True, "ledger": store.url, "seq": seq, "hash": head})
        else:
            echo(f"ok: ledger at {store.url} (head {seq})")


@ledger_app.command("verify")
@click.option(
    "--expect-head",
    "expect_head",
    default=None,
    help="SEQ:HASH anchor recorded earlier (e.g. in State Hub); detects deleted newest events.",
)
@click.option(
    "--witness",
    "witness",
    type=click.Choice(["statehub"]),
    default=None,
    help="Check the chain against every ledger head the State Hub notes recorded (RAILIANCE_STATEHUB_URL).",
)
@_json_opt
@pass_options
def ledger_verify(opts: CliOptions, expect_head: str | None, witness: str | None, json_out: bool) -> None:
    """Recompute the hash chain; name the first bad seq and why (edited, missing, reordered)."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        from railiance_ledger.cli_render import render_verification
        from railiance_ledger.errors import InvalidInput
        from railiance_ledger.ledger.verify import check_anchor, verify

        anchor: tuple[int, str] | None = None
        if expect_head:
            seq_text, _, hash_text = expect_head.partition(":")
            if not seq_text.isdigit() or len(hash_text) != 64:
                raise InvalidInput(
                    f"--expect-head {_shown(expect_head)} is not SEQ:HASH",
                    hint="copy it from `railiance ledger verify`",
                )
            anchor = (int(seq_text), hash_text)
        store = opts.store()
        report = verify(store)
        if anchor is not None:
            report = check_anchor(store, report, seq=anchor[0], hash=anchor[1])
        if witness == "statehub":
            report = _witness_statehub(store, report)
        render_verification(report, as_json=as_json)
        raise click.exceptions.Exit(EXIT_OK if report.ok else EXIT_LEDGER)


def _witness_statehub(store: EventStore, report: VerifyReport) -> VerifyReport:
    """``report`` checked against the ledger heads State Hub's notes recorded (``--witness statehub``);
    a State Hub that does not answer is ``EnvironmentUnavailable`` (exit 4)."""
    from railiance_ledger.errors import AdapterError, EnvironmentUnavailable, InvalidInput
    from railiance_ledger.ledger.verify import check_witness
    from railiance_ledger.lifecycle.environment import Environment
    from railiance_ledger.lifecycle.notes import STATEHUB_URL_ENV, witnessed_heads

    env = Environment.from_env()
    with env.witness() as hub:
        if hub is None:
            raise InvalidInput(
                "--witness statehub needs a State Hub", hint=f"set {STATEHUB_URL_ENV} to its base URL"
            )
        try:
            heads = witnessed_heads(hub)
        except AdapterError as exc:  # the witness cannot be asked: the check could not start (exit 4)
            raise EnvironmentUnavailable(
                f"the State Hub witness cannot be read: {exc.message}",
                hint=f"check {STATEHUB_URL_ENV} and that the State Hub answers",
            ) from exc
        return check_witness(store, report, heads)


@ledger_app.command("export")
@click.option(
    "--output",
    "-o",
    "output",
    default=None,
    type=click.Path(path_type=Path),
    help="File to write (default: stdout).",
)
@pass_options
def ledger_export(opts: CliOptions, output: Path | None) -> None:
    """Export every event as JSON Lines, one canonical envelope per line."""
    with _guard(False):
        from railiance_ledger.ledger.verify import export_jsonl

        store = opts.store()
        if output is None:
            export_jsonl(store, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fp:
                export_jsonl(store, fp)


@ledger_app.command("rebuild-projections")
@_json_opt
@pass_options
def ledger_rebuild_projections(opts: CliOptions, json_out: bool) -> None:
    """Rebuild the projection tables (status, lineage, rollback target) from the log (it must verify)."""
    as_json = opts.want_json(json_out)
    with _guard(as_json):
        store = opts.store()
        _read_integrity(store, strict=True)  # never rebuild from a log that was changed after it was recorded
        replayed = store.rebuild_projections()
        if as_json:
            from railiance_ledger.cli_render import emit_json

            emit_json({"ok": True, "ledger": store.url, "events_replayed": replayed})
        else:
            echo(f"ok: projections rebuilt from {replayed} events at {store.url}")


def _quiet_broken_pipe() -> NoReturn:
    """The reader of stdout went away (``railiance history W | head -1``): exit 0 without a traceback.

    stdout is pointed at /dev/null first so the interpreter's final flush cannot fail again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (an in-memory stdout): nothing to flush
        pass
    sys.exit(EXIT_OK)


def main() -> None:
    """Console-script entry point. The last line against tracebacks: anything that escaped the
    commands' own translation is reported in one redacted line (exit 1; ``RAILIANCE_DEBUG=1`` re-raises)."""
    import os

    try:
        app(prog_name="railiance")
    except BrokenPipeError:
        _quiet_broken_pipe()
    except Exception as exc:  # the contract: a message, never a traceback
        if os.environ.get("RAILIANCE_DEBUG"):
            raise
        echo(f"error: internal error ({type(exc).__name__}): {_shown(str(exc))}", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
