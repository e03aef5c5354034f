"""The routing-switch promotion form: the stable Service is pointed at the accepted canary release's pods.

The production release is not touched (it keeps serving nothing but stays installed as the rollback
target's workload). Steps: the canary's own routing is removed (its release is kept: it becomes the
stable workload), the exact routing objects are read (``routing_previous``), the stable Service's
selector is set to the canary Service's selector, routing is read back. A failure restores
``routing_previous`` (rollback strategy ``routing``).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.stage_result import Evidence
from railiance_ledger.lifecycle.checks import make_check as _check
from railiance_ledger.lifecycle.cluster.canary import CanaryRemoval, remove_canary_objects
from railiance_ledger.lifecycle.cluster.objects import FIELD_MANAGER, clean_object
from railiance_ledger.lifecycle.cluster.routing import production_routing, routing_read_back, routing_snapshot
from railiance_ledger.lifecycle.stage3.context import (
    PromotionContext,
    PromotionFailed,
    helm_revision,
    store_values,
)
from railiance_ledger.lifecycle.stage3.forms import PromotionRun


class RoutingSwitch:
    """The stable Service is switched to the canary release's pods (a :class:`~.forms.PromotionForm`)."""

    name = "routing-switch"
    restore_strategy: str | None = "routing"

    def __init__(self, ctx: PromotionContext) -> None:
        decl, sw = ctx.decl, ctx.switch
        assert sw is not None and ctx.canary is not None
        self.ctx, self.sw = ctx, sw
        self.ns, self.service = ctx.namespace, decl.routing.service
        self.spec: dc.RoutingSpec = sw["spec"]
        patch = json.dumps({"spec": {"selector": sw["selector"]}}, sort_keys=True, separators=(",", ":"))
        self.command = shlex.join(
            [
                "kubectl",
                "--namespace",
                self.ns,
                "patch",
                "service",
                self.service,
                "--type",
                "merge",
                "--patch",
                patch,
            ]
        )
        self.values: list[dict[str, Any]] = store_values(
            decl, ctx.home, files=(decl.chart.values, decl.stages.canary.values)
        )
        self.service_before: dict[str, Any] = sw["service_before"]
        self.routing_previous: list[dict[str, Any]] = [self.service_before]
        self.routing_new: list[dict[str, Any]] = []
        self.switch = {
            "service": f"{self.ns}/{self.service}",
            "selector_before": sw["selector_before"],
            "selector_after": sw["selector_text"],
            "canary_release": sw["release"],
            "canary_service": sw["canary_service"],
            "canary_helm_revision": sw["helm_revision"],
            "stable_release_kept": sw["previous_serving_release"],
        }

    def plan_fields(self) -> dict[str, Any]:
        """The switch and the canary release's rendered manifests."""
        return {"switch": self.switch, "manifests": {"sha256": self.sw["manifests_sha256"]}}

    def candidate_restore(self) -> dict[str, Any]:
        """The canary release as the candidate's workload and the routing the switch replaced (so far)."""
        ctx, sw = self.ctx, self.sw
        return {
            "digest": ctx.digest,
            "image": ctx.image,
            "release": sw["release"],
            "namespace": self.ns,
            "serving_release": sw["release"],
            "helm_revision": sw["helm_revision"],
            "manifests_sha256": sw["manifests_sha256"],
            "migrations": ctx.decl.migrations.classification,
            "routing_previous": self.routing_previous,
        }

    def apply(self, run: PromotionRun) -> dict[str, Any]:
        """Remove the canary's own routing, switch the stable Service's selector, read routing back."""
        ctx, decl, kube, sw, ns, service = self.ctx, self.ctx.decl, run.kube, self.sw, self.ns, self.service
        assert ctx.canary is not None
        p = ctx.canary.payload
        removed = remove_canary_objects(
            kube=kube,
            helm=None,
            spec=self.spec,
            release=sw["release"],
            namespace=ns,
            creates=p.get("routing_created") or [],
            previous=p.get("routing_previous") or [],
        )
        removal = removed.text
        if removed.failed:
            raise PromotionFailed(f"the canary's own routing could not be removed: {removal}")
        self.routing_previous = [self.service_before, *routing_snapshot(kube, decl, ns)]
        switched = clean_object(self.service_before)
        switched["spec"] = {**(switched.get("spec") or {}), "selector": dict(sw["selector"])}
        kube.apply(manifests=[switched], field_manager=FIELD_MANAGER, force=True)
        live = kube.get(api_version="v1", kind="Service", namespace=ns, name=service)
        self.routing_new = [clean_object(live or switched), *self.routing_previous[1:]]
        read = routing_read_back(
            kube, [switched, *self.routing_previous[1:]], namespace=ns, service=service, image=ctx.image
        )
        run.steps.append(
            _check(
                "promotion_applied",
                bool(read["ok"]),
                f"`{self.command}` (canary release {sw['release']} revision {sw['helm_revision']} is now the "
                f"stable workload; release {ctx.release} untouched); {read['detail']}",
                evidence=[Evidence(kind="workflow", ref=run.workflow_id, detail=self.command)],
            )
        )
        if not read["ok"]:
            raise PromotionFailed(
                f"the stable Service did not read back switched to the candidate: {read['detail']}"
            )
        routing = production_routing(
            kube, decl, namespace=ns, image=ctx.image, canary_service=self.spec.canary_service
        )
        routing["canary_removal"] = removal
        routing["switch"] = self.switch
        run.steps.append(
            _check(
                "stable_routing_points_at_candidate",
                routing["ok"],
                routing["detail"],
                evidence=[
                    Evidence(kind="k8s-object", ref=o, detail="serves the host")
                    for o in routing["serving_objects"]
                ]
                + [
                    Evidence(
                        kind="k8s-object",
                        ref=f"Service/{service}",
                        detail=f"selector {sw['selector_before']} -> {sw['selector_text']}",
                    )
                ],
            )
        )
        run.record_routing(
            {
                "action": "stable Service switched to the canary release's pods; canary routing removed",
                "workflow_id": run.workflow_id,
                "switch": self.switch,
                "routing_previous": self.routing_previous,
                "routing_new": self.routing_new,
                "read_back": routing,
                "canary_removal": removal,
            }
        )
        return routing

    def undo(self, run: PromotionRun) -> CanaryRemoval | None:
        """Nothing: the restore of a routing switch (strategy ``routing``) re-applies the routing it
        replaced."""
        return None

    def record_fields(self, run: PromotionRun) -> dict[str, Any]:
        """The canary release as the serving release, the switch, and the routing before and after."""
        ctx, sw = self.ctx, self.sw
        return {
            "release": sw["release"],
            "namespace": self.ns,
            "serving_release": sw["release"],
            "helm_revision": sw["helm_revision"],
            "manifests_sha256": sw["manifests_sha256"],
            "routing_snapshot": self.routing_new,
            "routing_previous": self.routing_previous,
            "routing_new": self.routing_new,
            "switch": self.switch,
            "stable_release": {
                "name": ctx.release,
                "namespace": self.ns,
                "helm_revision": helm_revision(run.helm, ctx.release, self.ns),
                "changed": False,
            },
            "previous_serving_release": sw["previous_serving_release"],
        }
