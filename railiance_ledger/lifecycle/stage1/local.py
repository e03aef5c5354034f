"""Stage 1 gates run on this machine: ``local_health`` (start the workload, probe its health
endpoints) and ``local_check:<name>`` (the declared local check commands)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from railiance_ledger.adapters.health import HttpProbe
from railiance_ledger.adapters.process import LocalProcess, run_command
from railiance_ledger.domain.gates import LOCAL_CHECK_PREFIX
from railiance_ledger.domain.stage_result import Check, Evidence, FailureKind
from railiance_ledger.errors import AdapterError
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.stage1.context import (
    OUTPUT_TAIL_CHARS,
    WORKLOAD_TAIL_CHARS,
    Stage1Context,
    seconds_of,
    text_of,
)

MAX_READY_S = 600.0
"""The local workload gets at most this long to listen, whatever ``ready_timeout`` says."""
HEALTH_DEADLINE_S = 120.0
"""The overall deadline of each local health check (every retry and pause together)."""


def check_local_health(ctx: Stage1Context, http: httpx.Client, env: Mapping[str, str]) -> Check:
    """``local_health``: start the declared command, probe every declared health endpoint with
    timeouts and retries, and stop the process group afterwards whatever happens."""
    name = "local_health"
    decl = ctx.decl
    local = getattr(decl, "local", None)
    command = list(getattr(local, "command", None) or [])
    health = list(getattr(decl, "health", None) or [])
    if not command:
        return make_check(name, False, "no [local] command declared: the workload cannot be started locally")
    if not health:
        return make_check(name, False, "no [[health]] endpoint declared: nothing to probe")
    ready_timeout = seconds_of(getattr(local, "ready_timeout", None), 20.0)
    probe = HttpProbe(http)
    evidence: list[Evidence] = []
    try:
        # PORT mirrors the substituted --port for servers that read it from the environment.
        with LocalProcess(argv=command, cwd=ctx.railiance_dir, env={**env, "PORT": "{port}"}) as proc:
            ready = proc.wait_for_port(timeout=min(ready_timeout, MAX_READY_S))
            exited = proc.poll()
            if exited is not None:
                tail = proc.output_tail(limit=WORKLOAD_TAIL_CHARS)
                ctx.printed_secrets += [("local workload", k) for k in proc.printed_secret_kinds()]
                return make_check(
                    name,
                    False,
                    f"the local command exited with code {exited} before it answered",
                    evidence=[
                        make_evidence(
                            "summary", "local-command", f"exit {exited}; output tail (redacted): {tail}"
                        )
                    ],
                )
            evidence.append(
                make_evidence(
                    "summary",
                    "local-command",
                    f"started on 127.0.0.1:{proc.port}; "
                    + ("listening" if ready else f"not listening after {ready_timeout:g}s"),
                )
            )
            results = []
            for h in health:
                path = str(getattr(h, "path", "/") or "/")
                result = probe.probe(
                    url=f"{proc.base_url}{path}",
                    expect_status=int(getattr(h, "expect_status", 200) or 200),
                    timeout=seconds_of(getattr(h, "timeout", None), 2.0),
                    retries=int(getattr(h, "retries", 3) if getattr(h, "retries", None) is not None else 3),
                    backoff=0.25,
                    deadline_s=HEALTH_DEADLINE_S,
                )
                results.append((h, path, result))
                evidence.append(
                    make_evidence(
                        "http-status",
                        f"GET {path}",
                        f"{result.status_code if result.answered else 'no answer'}: {result.reason} "
                        f"after {result.attempts} attempt(s), {result.elapsed_ms} ms",
                    )
                )
            ctx.printed_secrets += [("local workload", k) for k in proc.printed_secret_kinds()]
    except AdapterError as exc:
        return make_check(
            name,
            False,
            f"could not start the workload: {exc.reason}",
            failure=FailureKind.TECHNICAL,
            evidence=evidence,
        )
    failed = [(h, p, r) for h, p, r in results if not r.ok]
    if failed:
        technical = any(not r.answered for _, _, r in failed)
        listed = "; ".join(f"{getattr(h, 'name', p)} GET {p}: {r.reason}" for h, p, r in failed)
        return make_check(
            name,
            False,
            f"health endpoint(s) failed: {listed}",
            failure=FailureKind.TECHNICAL if technical else FailureKind.POLICY,
            evidence=evidence,
        )
    listed = ", ".join(f"{getattr(h, 'name', p)} {r.status_code}" for h, p, r in results)
    return make_check(
        name, True, f"declared health endpoint(s) answered: {listed}; process stopped", evidence=evidence
    )


def check_local_commands(ctx: Stage1Context, skip: set[str], env: Mapping[str, str]) -> list[Check]:
    """``local_check:<name>``: run each declared ``[[local_checks]]`` command; exit code and duration
    are the evidence, with a bounded, redacted output tail. A skipped check fails (unless waived)."""
    out: list[Check] = []
    for lc in getattr(ctx.decl, "local_checks", None) or []:
        name = f"{LOCAL_CHECK_PREFIX}{lc.name}"
        kind = text_of(getattr(lc, "kind", None)) or "check"
        if lc.name in skip:
            out.append(
                make_check(
                    name,
                    False,
                    f"{kind} check skipped (--skip-check) without a recorded waiver",
                    evidence=[make_evidence("summary", name, "skipped")],
                )
            )
            continue
        timeout = seconds_of(getattr(lc, "timeout", None), 600.0)
        try:
            res = run_command(
                argv=list(lc.command),
                cwd=ctx.railiance_dir,
                timeout=timeout,
                env=env,
                tail_bytes=OUTPUT_TAIL_CHARS,
            )
        except AdapterError as exc:
            out.append(
                make_check(
                    name,
                    False,
                    f"could not run the {kind} check: {exc.reason}",
                    failure=FailureKind.TECHNICAL,
                )
            )
            continue
        ctx.printed_secrets += [(name, k) for k in res.secret_kinds]
        evidence = [
            make_evidence(
                "summary",
                name,
                f"exit {res.exit_code if not res.timed_out else 'none (killed)'} in {res.duration_s:.2f}s",
            )
        ]
        if res.output_tail:
            evidence.append(make_evidence("summary", f"{name} output tail (redacted)", res.output_tail))
        if res.timed_out:
            out.append(
                make_check(
                    name,
                    False,
                    f"{kind} check timed out after {timeout:g}s and was killed",
                    failure=FailureKind.TECHNICAL,
                    evidence=evidence,
                )
            )
        elif res.exit_code != 0:
            out.append(
                make_check(
                    name,
                    False,
                    f"{kind} check exited {res.exit_code} after {res.duration_s:.2f}s",
                    evidence=evidence,
                )
            )
        else:
            out.append(
                make_check(name, True, f"{kind} check exited 0 in {res.duration_s:.2f}s", evidence=evidence)
            )
    return out
