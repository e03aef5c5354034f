"""Stage 1 ``manifests_valid``: render the chart with ``helm template`` and validate every object
offline and strict against the Kubernetes schemas of the declared version."""

from __future__ import annotations

from pathlib import Path

import yaml  # type: ignore[import-untyped]

from railiance_ledger.adapters.helm import HelmCommandFailed
from railiance_ledger.domain.manifest_scan import object_ref
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import Check, Evidence, FailureKind
from railiance_ledger.errors import AdapterError
from railiance_ledger.lifecycle.checks import bounded, make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.stage1.context import Stage1Context
from railiance_ledger.ports import HelmPort


def render_chart(ctx: Stage1Context, helm: HelmPort) -> None:
    """Render the declared chart with the local stage's values (and the candidate's image) into
    ``ctx.rendered``. Raises the helm adapter's errors, or ``RenderRefused`` for non-objects."""
    decl = ctx.decl
    chart = decl.resolve(decl.chart.path)
    files: list[Path] = []
    base_values = getattr(decl.chart, "values", None)
    if base_values:
        files.append(decl.resolve(base_values))
    local_stage = decl.stages.local
    if local_stage.values:
        files.append(decl.resolve(local_stage.values))
    ctx.values_files = files
    set_values: dict[str, str] = {}
    if ctx.run.digest and ctx.run.image:
        set_values = {"image.repository": ctx.run.image.split("@", 1)[0], "image.digest": ctx.run.digest}
    text = helm.template(
        chart=chart,
        release=local_stage.release,
        namespace=local_stage.namespace,
        values_files=files,
        set_values=set_values,
        kube_version=str(decl.workload.kubernetes_version) if decl.workload.kubernetes_version else None,
        timeout=120.0,
    )
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise RenderRefused(f"helm output is not valid YAML: {bounded(str(exc))}") from exc
    bad = [d for d in docs if not isinstance(d, dict)]
    if bad:
        raise RenderRefused(f"helm output contains {len(bad)} document(s) that are not Kubernetes objects")
    ctx.rendered = docs


class RenderRefused(Exception):
    """The chart rendered into something that is not a list of Kubernetes objects."""


def check_manifests(ctx: Stage1Context, helm: HelmPort) -> Check:
    """``manifests_valid``: ``helm template`` renders and every object validates, offline and strict,
    against the schemas of ``workload.kubernetes_version``."""
    import kubernetes_validate  # type: ignore[import-untyped]
    from kubernetes_validate.utils import VersionNotSupportedError  # type: ignore[import-untyped]

    name = "manifests_valid"
    decl = ctx.decl
    try:
        render_chart(ctx, helm)
    except HelmCommandFailed as exc:
        ctx.render_error = "chart does not render"
        return make_check(
            name,
            False,
            f"helm template failed: {exc.reason}",
            evidence=[
                make_evidence("summary", str(decl.chart.path), f"helm template exit {exc.exit_status}")
            ],
        )
    except AdapterError as exc:
        ctx.render_error = "helm could not be run"
        return make_check(
            name, False, f"could not render the chart: {exc.reason}", failure=FailureKind.TECHNICAL
        )
    except RenderRefused as exc:
        ctx.render_error = str(exc)
        return make_check(name, False, str(exc))
    assert ctx.rendered is not None
    if not decl.workload.kubernetes_version:
        return make_check(
            name,
            False,
            "workload.kubernetes_version is not declared: the rendered objects cannot be "
            "validated against a Kubernetes schema",
            failure=FailureKind.TECHNICAL,
        )
    version = str(decl.workload.kubernetes_version)
    problems: list[str] = []
    evidence: list[Evidence] = []
    technical = False
    for obj in ctx.rendered:
        ref = object_ref(obj)
        if not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"{ref}: missing apiVersion or kind")
            evidence.append(make_evidence("k8s-object", ref, "missing apiVersion or kind"))
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(root)"
            msg = bounded(redact(f"{where}: {exc.message}"), 300)
            problems.append(f"{ref}: {msg}")
            evidence.append(make_evidence("k8s-object", ref, f"invalid: {msg}"))
        except kubernetes_validate.SchemaNotFoundError:
            msg = f"unknown kind {obj.get('kind')} in {obj.get('apiVersion')} for Kubernetes {version}"
            problems.append(f"{ref}: {msg}")
            evidence.append(make_evidence("k8s-object", ref, msg))
        except VersionNotSupportedError:
            technical = True
            problems.append(f"no schemas for Kubernetes {version} available offline")
            break
        except Exception as exc:  # noqa: BLE001 - a validator crash is a technical failure, fail closed
            technical = True
            problems.append(f"{ref}: could not be validated: {bounded(type(exc).__name__ + ': ' + str(exc))}")
        else:
            evidence.append(
                make_evidence(
                    "k8s-object", ref, f"{obj.get('apiVersion')} valid against Kubernetes {version}"
                )
            )
    if not ctx.rendered:
        return make_check(name, False, "the chart rendered no objects", evidence=evidence)
    if problems:
        return make_check(
            name,
            False,
            f"{len(problems)} invalid object(s): " + "; ".join(problems[:5]),
            failure=FailureKind.TECHNICAL if technical else FailureKind.POLICY,
            evidence=evidence,
        )
    return make_check(
        name,
        True,
        f"{len(ctx.rendered)} object(s) rendered by helm template "
        f"({decl.stages.local.release} in {decl.stages.local.namespace}) "
        f"and valid against Kubernetes {version}",
        evidence=evidence,
    )
