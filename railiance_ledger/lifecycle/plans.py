"""What ``deploy``, ``promote`` and ``rollback`` would do, for ``--dry-run``: read, never change.

A plan is built from the same inputs the services read (the declaration, the ledger's candidates
and lineage, ``rollback.plan_rollback``), and from nothing else: no ledger append, no lease, no call
to the cluster, no State Hub note. It names the candidate, the rollback target, the objects the
command would create or change, and the routing change. The prechecks are not run: they ask the
cluster, the registry and Prometheus, and the real command runs every one of them first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from railiance_ledger.lifecycle.approvals.target import current_stable_target
from railiance_ledger.lifecycle.candidates import resolve_candidate
from railiance_ledger.lifecycle.rollback.plan import open_stage3, plan_rollback
from railiance_ledger.lifecycle.stage2.canary import open_deployment

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

NOT_RUN = "dry run: nothing was changed (no ledger record, no lease, no cluster call); prechecks not asked"


@dataclass(frozen=True)
class Plan:
    """One command's plan: what it acts on, what it would change, and where a rollback would go."""

    command: str
    workload: str
    candidate: dict[str, Any] | None
    rollback_target: dict[str, Any] | None
    objects: list[str]
    routing: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``dry_run: true``)."""
        return {"dry_run": True, **asdict(self)}


def _target_of(restore: dict[str, Any] | None) -> dict[str, Any] | None:
    if not restore:
        return None
    keys = (
        "kind",
        "digest",
        "image",
        "release",
        "namespace",
        "helm_revision",
        "revision",
        "source",
        "detail",
    )
    return {k: restore[k] for k in keys if restore.get(k) not in (None, "")}


def _declared_target(decl: Declaration) -> dict[str, Any] | None:
    prev = decl.rollback.previous_stable
    return (
        {"kind": "declared", "detail": prev, "source": "declaration rollback.previous_stable"}
        if prev
        else None
    )


def deploy_plan(store: EventStore, decl: Declaration, image: str | None) -> Plan:
    """``deploy`` (Stage 2): the canary release, its routing, and the stable it would fall back to."""
    workload = decl.workload.name
    cand = resolve_candidate(store.read_stream(workload), workload, image, repository=decl.image.repository)
    target = _target_of(current_stable_target(store, workload)) or _declared_target(decl)
    canary, prod = decl.stages.canary, decl.stages.production
    form = decl.canary
    how = {
        "weighted": f"{form.weight}% of requests",
        "header": f"requests with header {form.header}",
        "path": f"requests under {form.path_prefix}",
    }.get(str(form.form), f"{form.form} traffic")
    provider = f" through {form.provider}" if form.provider else ""
    return Plan(
        command="deploy",
        workload=workload,
        candidate={"digest": cand.digest, "image": cand.image},
        rollback_target=target
        or {"kind": "helm", "detail": f"the deployed revision of release {prod.namespace}/{prod.release}"},
        objects=[
            f"Helm release {canary.namespace}/{canary.release} (chart {decl.chart.path}, image {cand.image})",
            f"canary routing objects for host {decl.routing.host or '-'} ({form.form})",
        ],
        routing=f"{how}{provider} go to the canary release {canary.release}; the rest stays on "
        f"{prod.release}",
        notes=[NOT_RUN],
    )


def promote_plan(store: EventStore, decl: Declaration, image: str | None) -> Plan:
    """``promote`` (Stage 3): the production change and the stable retained as the rollback target."""
    workload = decl.workload.name
    cand = resolve_candidate(store.read_stream(workload), workload, image, repository=decl.image.repository)
    target = _target_of(current_stable_target(store, workload)) or _declared_target(decl)
    prod = decl.stages.production
    if decl.promotion.form == "routing-switch":
        objects = [
            f"a Helm release beside {prod.namespace}/{prod.release} serving {cand.image}",
            f"the production routing objects of host {decl.routing.host or '-'}",
        ]
        routing = f"production routing switches from {prod.release} to the candidate's release"
    else:
        objects = [f"Helm release {prod.namespace}/{prod.release} upgraded to {cand.image}"]
        routing = "routing unchanged: the stable release is replaced in place"
    return Plan(
        command="promote",
        workload=workload,
        candidate={"digest": cand.digest, "image": cand.image},
        rollback_target=target,
        objects=[*objects, f"the open canary release {decl.stages.canary.release} is removed"],
        routing=routing,
        notes=[NOT_RUN],
    )


def rollback_plan(store: EventStore, decl: Declaration, *, to: str | None = None) -> Plan:
    """``rollback``: an open canary's removal, else production back to the previous (or ``to``) stable."""
    workload = decl.workload.name
    history = store.read_stream(workload)
    deployment = open_deployment(history, None)
    if deployment is not None and open_stage3(history) is None:
        if to is not None:
            from railiance_ledger.errors import InvalidInput

            raise InvalidInput(
                f"--to {to}: a Stage 2 canary of {workload} is open; its rollback removes the canary",
                hint="run `railiance rollback APP_DIR --reason TEXT` without --to first",
            )
        return Plan(
            command="rollback",
            workload=workload,
            candidate={"digest": deployment.started.candidate},
            rollback_target={"kind": "current stable", "detail": "production is not changed"},
            objects=[
                f"Helm release {deployment.namespace}/{deployment.release} uninstalled",
                "the canary routing objects removed (the stable routing restored)",
            ],
            routing="the canary's share of traffic returns to the stable release",
            notes=[NOT_RUN],
        )
    plan = plan_rollback(store, decl, to=to)
    target = plan.target
    strategy = decl.rollback.strategy
    action = {
        "helm-revision": f"helm rollback {target.release} {target.helm_revision or '<the target revision>'}",
        "digest-and-values": f"re-apply the stored manifests {target.manifests_sha256 or '-'} of "
        f"{target.text}",
        "routing": f"re-apply the routing objects {target.text} served from (release "
        f"{target.serving_release or target.release})",
        "manual": "the declared runbook, carried out by a human (nothing is applied)",
    }[strategy]
    return Plan(
        command="rollback",
        workload=workload,
        candidate={"digest": plan.leaving_digest, "image": plan.leaving_image},
        rollback_target=_target_of(target.as_dict()),
        objects=[f"{strategy}: {action}", f"namespace {target.namespace}, release {target.release}"],
        routing="production routing restored as it was while the target served"
        if strategy == "routing" or target.routing_snapshot
        else "routing unchanged",
        notes=[NOT_RUN],
    )
