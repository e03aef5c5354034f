"""Stage 1 ``secrets_by_reference``: no plaintext secret in rendered manifests or values files
(the scan itself is the pure ``domain.manifest_scan``)."""

from __future__ import annotations

import yaml  # type: ignore[import-untyped]

from railiance_ledger.domain.manifest_scan import SecretFinding, object_ref, scan_manifest, scan_values
from railiance_ledger.domain.stage_result import Check, CheckStatus, FailureKind
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.stage1.context import Stage1Context, relative_to


def check_secrets(ctx: Stage1Context) -> Check:
    """``secrets_by_reference``: no plaintext secret in rendered manifests or values files.

    Evidence names the object (or file), the field path and the kind of secret, never the value.
    """
    name = "secrets_by_reference"
    findings: list[SecretFinding] = []
    references: list[str] = []
    problems: list[str] = []
    for vf in ctx.values_files:
        where = relative_to(vf, ctx.app_dir)
        try:
            data = yaml.safe_load(vf.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"cannot read values file {where}: {type(exc).__name__}")
            continue
        findings += scan_values(data, where)
    if ctx.rendered is None:
        problems.append(
            f"manifests could not be rendered ({ctx.render_error or 'unknown'}), "
            "so they cannot be shown free of plaintext secrets"
        )
    else:
        for obj in ctx.rendered:
            f, r = scan_manifest(obj)
            findings += f
            references += [f"{object_ref(obj)} -> {x}" for x in r]
    evidence = [
        make_evidence(
            "k8s-object" if f.source == "manifest" else "summary", f.where, f"{f.field}: plaintext {f.kind}"
        )
        for f in findings
    ]
    if findings:
        listed = "; ".join(f"{f.where} {f.field} ({f.kind})" for f in findings[:5])
        return make_check(
            name,
            False,
            f"{len(findings)} plaintext secret(s): {listed}; reference secrets by name "
            "(secretKeyRef, envFrom.secretRef, volumes) instead",
            evidence=evidence,
        )
    if problems:
        return make_check(name, False, "; ".join(problems), failure=FailureKind.TECHNICAL, evidence=evidence)
    evidence.append(
        make_evidence("summary", "secret-references", ", ".join(sorted(set(references))) or "none")
    )
    n = len(ctx.rendered or [])
    return make_check(
        name,
        True,
        f"no plaintext secrets in {n} rendered object(s) and {len(ctx.values_files)} values file(s); "
        f"{len(set(references))} secret reference(s) by name",
        evidence=evidence,
    )


def with_printed_secrets(check: Check, printed: list[tuple[str, str]]) -> Check:
    """``secrets_by_reference`` judged again once the local commands ran: a secret a local command
    printed fails it ("secrets are not printed"), even though the evidence only keeps the redacted
    output. The evidence names the command and the kind of secret, never the value."""
    if not printed:
        return check
    pairs = sorted(set(printed))
    listed = "; ".join(f"{where} printed a {kind}" for where, kind in pairs[:5])
    evidence = list(check.evidence) + [
        make_evidence("summary", f"printed secret: {where}", f"{kind} (redacted in the evidence)")
        for where, kind in pairs
    ]
    reason = (
        f"{len(pairs)} secret(s) printed by local commands: {listed}; "
        "a workload and its checks must not print secrets (read them by reference, log only their names)"
    )
    if check.status != CheckStatus.PASS:
        reason = f"{check.reason}; {reason}"
    return make_check(check.name, False, reason, evidence=evidence)
