"""Restoring the previous stable per strategy (helm-revision, digest-and-values, routing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.redaction import redact_value
from railiance_ledger.errors import AdapterError, AdapterNotFound, InvalidInput, LedgerError, RailianceError
from railiance_ledger.lifecycle.cluster.manifests import load_manifests
from railiance_ledger.lifecycle.cluster.objects import FIELD_MANAGER, api_version_of, split_docs
from railiance_ledger.lifecycle.cluster.routing import routing_objects
from railiance_ledger.lifecycle.rollback.model import RestoreTarget, RollbackOutcome, RollbackPlan
from railiance_ledger.lifecycle.rollback.record import complete_rollback
from railiance_ledger.lifecycle.rollback.verify import verify_restored
from railiance_ledger.lifecycle.unfinished import record_unfinished_result

if TYPE_CHECKING:
    import httpx

    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ports import HelmPort, KubePort, StateHubPort


def restore_stable(
    *,
    decl: Declaration,
    kube: KubePort,
    helm: HelmPort,
    target: RestoreTarget,
    leaving: Mapping[str, Any],
    strategy: str,
    home: Path | None = None,
) -> tuple[str, list[str], list[str]]:
    """Put ``target`` back by ``strategy``; return ``(action, failures, remaining cleanup)``.

    Never raises for an adapter failure: what could not be done is listed in ``failures``.
    """

    failures: list[str] = []
    cleanup: list[str] = []
    ns, release = target.namespace, target.release
    if strategy == "helm-revision" and target.helm_revision is None:
        if target.manifests_sha256:
            strategy = "digest-and-values"
            cleanup.append(
                "no Helm revision was recorded for the target: its stored manifests were re-applied instead"
            )
        else:
            return (
                f"helm rollback {release}: no revision recorded for {target.text}",
                [f"no Helm revision and no stored manifests recorded for {target.text}"],
                cleanup,
            )
    if strategy == "helm-revision":
        action = f"helm rollback {release} {target.helm_revision} --namespace {ns}"
        rollback_fn = getattr(helm, "rollback", None)
        if rollback_fn is None:
            failures.append("the Helm adapter cannot roll back releases")
        else:
            try:
                rollback_fn(release=release, namespace=ns, revision=target.helm_revision, wait=True)
            except AdapterError as exc:
                failures.append(f"{action} failed: {exc.reason}")
    elif strategy == "digest-and-values":
        if not target.manifests_sha256:
            return (
                f"re-apply stored manifests of {target.text}",
                [f"no rendered manifests were stored for {target.text}"],
                cleanup,
            )
        action = (
            f"re-applied the stored rendered manifests sha256:{target.manifests_sha256} of {target.text} to "
            f"{ns}"
        )
        try:
            docs = split_docs(load_manifests(target.manifests_sha256, home))
        except (OSError, InvalidInput) as exc:
            return action, [f"stored manifests unavailable: {exc}"], cleanup
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = ns
        try:
            kube.apply(manifests=docs, field_manager=FIELD_MANAGER, force=True)
        except AdapterError as exc:
            failures.append(f"apply failed: {exc.reason}")
        keep = {(d.get("kind"), d["metadata"].get("name")) for d in docs}
        old_sha = leaving.get("manifests_sha256")
        if old_sha and old_sha != target.manifests_sha256:
            try:
                for doc in split_docs(load_manifests(str(old_sha), home)):
                    key = (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
                    if key not in keep:
                        kube.delete(
                            api_version=api_version_of(doc), kind=str(key[0]), namespace=ns, name=str(key[1])
                        )
                        action += f"; pruned {key[0]}/{key[1]}"
            except (OSError, InvalidInput, AdapterError) as exc:
                cleanup.append(f"prune objects only the left stable had: {exc}")
        cleanup.append(
            f"Helm's release record of {ns}/{release} still names the rolled-back revision; "
            "re-sync it with `helm upgrade` pinned to the restored digest at the next promotion"
        )
    elif strategy == "routing":
        objs = routing_objects(leaving)
        if not objs:
            why = (
                f"the stable being left ({leaving.get('image') or leaving.get('digest') or 'unknown'}) was "
                "not "
                "promoted by a routing switch: no previous routing configuration is recorded with it, so a "
                f"routing rollback cannot restore {target.text}; declare helm-revision or digest-and-values"
            )
            return "re-apply the previous routing configuration", [why], cleanup
        action = "re-applied the previous routing configuration recorded by the routing switch: " + ", ".join(
            f"{o['kind']}/{o['metadata']['name']}" for o in objs
        )
        try:
            kube.apply(manifests=objs, field_manager=FIELD_MANAGER, force=True)
        except AdapterError as exc:
            failures.append(f"routing apply failed: {exc.reason}")
    else:
        raise InvalidInput(f"unknown rollback strategy {strategy!r}")
    return action, failures, cleanup


def perform(
    *,
    store: EventStore,
    decl: Declaration,
    operator: str,
    kube: KubePort,
    helm: HelmPort,
    http: httpx.Client,
    plan: RollbackPlan,
    symptom: str,
    fate: str,
    strategy: str,
    started_payload: dict[str, Any],
    statehub: StateHubPort | None,
    now: Callable[[], datetime],
    home: Path | None,
    ready_timeout: float,
    sleep: Callable[[float], None],
    stage: int = 3,
    finish_open_stage: bool = True,
) -> RollbackOutcome:
    """``rollback.started``, the restore, its verification, then ``rollback.completed`` (or
    ``rollback.incomplete`` when a step failed). A Stage 3 left open by an action that stopped gets
    its failed ``stage.completed`` once the rollback completed (unless ``finish_open_stage`` is
    False: the promotion records its own result). When the ledger refuses ``rollback.started`` after
    a promotion changed production, the restore still runs and the ledger's error propagates."""
    workload = decl.workload.name

    def restore() -> tuple[str, list[str], list[str]]:
        try:
            return restore_stable(
                decl=decl,
                kube=kube,
                helm=helm,
                target=plan.target,
                leaving=plan.leaving_restore,
                strategy=strategy,
                home=home,
            )
        except (RailianceError, OSError, ValueError) as exc:  # never leave a half-done restore unrecorded
            return f"restore {plan.target.text} by {strategy}", [f"the restore stopped: {exc}"], []

    try:
        events = store.append(
            [
                NewEvent(
                    stream=workload,
                    kind=EventKind.ROLLBACK_STARTED,
                    actor=operator,
                    candidate=plan.leaving_digest,
                    stage=stage,
                    payload=redact_value(started_payload),
                )
            ]
        )
    except LedgerError:
        if plan.open_stage3 is not None:  # a promotion changed production: put the stable back anyway
            restore()
        raise
    action, failures, cleanup = restore()
    try:
        verification = verify_restored(
            decl=decl,
            kube=kube,
            http=http,
            target=plan.target,
            strategy=strategy,
            home=home,
            timeout=ready_timeout,
            sleep=sleep,
            routing=routing_objects(plan.leaving_restore) if strategy == "routing" else (),
        )
    except (RailianceError, OSError, ValueError) as exc:
        failure = f"the rollback verification could not run: {exc}"
        verification = {
            "ok": False,
            "rollout": {"ok": False, "detail": failure},
            "manifests": {"checked": False},
            "check": {"ok": False, "detail": failure},
        }
    if strategy == "routing":
        action = _retire_switched_release(
            decl=decl,
            helm=helm,
            target=plan.target,
            leaving=plan.leaving_restore,
            verified=not failures and bool(verification.get("ok")),
            action=action,
            cleanup=cleanup,
        )
    outcome = complete_rollback(
        store=store,
        decl=decl,
        operator=operator,
        plan=plan,
        symptom=symptom,
        fate=fate,
        action=action,
        failures=failures,
        cleanup=cleanup,
        verification=verification,
        statehub=statehub,
        now=now,
        events=events,
        strategy=strategy,
        stage=stage,
    )
    opened = plan.open_stage3
    if opened is not None and outcome.phase != "incomplete" and finish_open_stage:
        image = str((opened.payload.get("candidate") or {}).get("image") or plan.leaving_image or "")
        result = record_unfinished_result(
            store=store,
            decl=decl,
            operator=operator,
            started=opened,
            image=image,
            reason=f"the promotion stopped before recording its result; rolled back to {plan.target.text}",
        )
        if result is not None:
            outcome.events.append(result)
    return outcome


def _retire_switched_release(
    *,
    decl: Declaration,
    helm: HelmPort,
    target: RestoreTarget,
    leaving: Mapping[str, Any],
    verified: bool,
    action: str,
    cleanup: list[str],
) -> str:
    """After a routing rollback: uninstall the release the left candidate served from, once verified.

    Only a release other than the production release and the target's own serving release is
    removed (the canary release a routing switch made stable). Unverified: it is kept and named in
    the remaining cleanup. Returns the action text (with the uninstall appended).
    """
    release = str(leaving.get("serving_release") or "")
    namespace = str(leaving.get("namespace") or target.namespace)
    keep = {decl.stages.production.release, target.serving_release or target.release}
    if not release or release in keep:
        return action
    if not verified:
        cleanup.append(
            f"release {namespace}/{release} that served the rolled-back candidate is still installed; "
            "uninstall it once the rollback is verified"
        )
        return action
    try:
        helm.uninstall(release=release, namespace=namespace)
        return action + f"; helm uninstall {release} (served the rolled-back candidate)"
    except AdapterNotFound:
        return action + f"; release {release} already gone"
    except AdapterError as exc:
        cleanup.append(f"helm uninstall {namespace}/{release} failed: {exc.reason}; uninstall it by hand")
        return action
