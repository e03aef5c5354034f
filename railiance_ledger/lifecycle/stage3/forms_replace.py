"""The release-replace promotion form (after a weighted shift to the candidate when the canary was weighted).

Weighted canaries first take all the host's traffic (weight 100), so production is served by the
observed candidate while the stable release is replaced; the stable Helm release is upgraded to the
candidate pinned by digest and its rollout awaited; the canary routing and release are removed;
production routing is read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.stage_result import Evidence
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.canary import CanaryRemoval, remove_canary_objects
from railiance_ledger.lifecycle.cluster.manifests import store_manifests
from railiance_ledger.lifecycle.cluster.objects import deployment_of
from railiance_ledger.lifecycle.cluster.rollout import await_rollout
from railiance_ledger.lifecycle.cluster.routing import production_routing, routing_snapshot, shift_weight
from railiance_ledger.lifecycle.stage3.context import (
    PromotionContext,
    PromotionFailed,
    helm_command,
    set_values,
    store_values,
    values_files,
)
from railiance_ledger.lifecycle.stage3.forms import PromotionRun


class ReleaseReplace:
    """The stable release is upgraded in place to the candidate (a :class:`~.forms.PromotionForm`)."""

    restore_strategy: str | None = None

    def __init__(self, ctx: PromotionContext, *, helm_upgrade_args: Sequence[str] = ()) -> None:
        decl = ctx.decl
        self.ctx = ctx
        self.helm_upgrade_args = list(helm_upgrade_args)
        self.command = helm_command(ctx)
        self.sha, _ = store_manifests(ctx.rendered_text, ctx.home)
        self.values: list[dict[str, Any]] = store_values(decl, ctx.home)
        canary_payload = ctx.canary.payload if ctx.canary is not None else {}
        self.spec = (
            dc.RoutingSpec.from_dict(canary_payload["routing"]) if canary_payload.get("routing") else None
        )
        self.weighted = self.spec is not None and self.spec.form is dc.CanaryForm.WEIGHTED
        self.name = "weighted-shift-then-release-replace" if self.weighted else "release-replace"
        self.new_rev: Any = None
        self.shifted = False
        """True once the weighted shift was attempted (a timed-out write may still have landed)."""
        self.canary_removed = False
        self._restore = {
            "digest": ctx.digest,
            "image": ctx.image,
            "release": ctx.release,
            "namespace": ctx.namespace,
            "manifests_sha256": self.sha,
            "migrations": decl.migrations.classification,
        }

    def plan_fields(self) -> dict[str, Any]:
        """The rendered manifests' sha256 and size."""
        return {"manifests": {"sha256": self.sha, "bytes": len(self.ctx.rendered_text.encode())}}

    def candidate_restore(self) -> dict[str, Any]:
        """The candidate's release and stored manifests."""
        return self._restore

    def apply(self, run: PromotionRun) -> dict[str, Any]:
        """Shift (weighted), upgrade the stable release, await the rollout, remove the canary, read back."""
        ctx, decl, kube, helm, spec = self.ctx, self.ctx.decl, run.kube, run.helm, self.spec
        if self.weighted and spec is not None:
            self.shifted = True
            reason = shift_weight(kube, spec)
            run.record_routing(
                {
                    "action": "weighted traffic shifted to the candidate",
                    "weight": 100,
                    "workflow_id": run.workflow_id,
                    "read_back": reason,
                }
            )
        acted, evidence = self.act(run)
        name, _ = deployment_of(ctx.rendered_docs, ctx.release)
        ok, detail = await_rollout(
            kube=kube,
            namespace=ctx.namespace,
            deployment=name,
            image=ctx.image,
            timeout=run.ready_timeout,
            sleep=run.sleep,
        )
        run.steps.append(_check("promotion_applied", ok, f"{acted}; {detail}", evidence=evidence))
        if not ok:
            raise PromotionFailed(f"the stable release did not become ready on the candidate: {detail}")
        removal = "no canary to remove"
        if ctx.canary is not None and spec is not None:
            p = ctx.canary.payload
            removal = remove_canary_objects(
                kube=kube,
                helm=helm,
                spec=spec,
                release=str(p["release"]["name"]),
                namespace=str(p["release"]["namespace"]),
                creates=p.get("routing_created") or [],
                previous=p.get("routing_previous") or [],
            ).text
        self.canary_removed = True
        routing = production_routing(
            kube,
            decl,
            namespace=ctx.namespace,
            image=ctx.image,
            canary_service=spec.canary_service if spec else None,
        )
        routing["canary_removal"] = removal
        run.steps.append(
            _check(
                "stable_routing_points_at_candidate",
                routing["ok"],
                routing["detail"],
                evidence=[
                    Evidence(kind="k8s-object", ref=o, detail="serves the host")
                    for o in routing["serving_objects"]
                ],
            )
        )
        run.record_routing(
            {
                "action": "production routing serves the promoted candidate; canary removed",
                "workflow_id": run.workflow_id,
                "read_back": routing,
                "canary_removal": removal,
            }
        )
        return routing

    def act(self, run: PromotionRun) -> tuple[str, list[Evidence]]:
        """Replace the stable release with the candidate (``helm upgrade``); what ran, as evidence."""
        ctx, decl = self.ctx, self.ctx.decl
        status = run.helm.install_or_upgrade(
            chart=decl.resolve(decl.chart.path),
            release=ctx.release,
            namespace=ctx.namespace,
            values_files=values_files(decl),
            set_values=set_values(ctx),
            wait=True,
            extra_args=self.helm_upgrade_args,
            timeout=run.ready_timeout,
        )
        self.new_rev = status.get("version")
        return (
            f"`{self.command}` -> revision {self.new_rev}",
            [Evidence(kind="workflow", ref=run.workflow_id, detail=self.command)],
        )

    def undo(self, run: PromotionRun) -> CanaryRemoval | None:
        """After a failure: take all traffic off the candidate again by removing the canary's routing
        (its release stays); ``None`` when nothing was shifted or the canary is already gone."""
        if not self.shifted or self.canary_removed or self.ctx.canary is None or self.spec is None:
            return None
        p = self.ctx.canary.payload
        return remove_canary_objects(
            kube=run.kube,
            helm=None,
            spec=self.spec,
            release=str(p["release"]["name"]),
            namespace=str(p["release"]["namespace"]),
            creates=p.get("routing_created") or [],
            previous=p.get("routing_previous") or [],
        )

    def record_fields(self, run: PromotionRun) -> dict[str, Any]:
        """The upgraded stable release, its new Helm revision and the routing as it is now."""
        ctx = self.ctx
        return {
            "release": ctx.release,
            "namespace": ctx.namespace,
            "serving_release": ctx.release,
            "helm_revision": self.new_rev,
            "manifests_sha256": self.sha,
            "routing_snapshot": routing_snapshot(run.kube, ctx.decl, ctx.namespace),
        }
