"""The operator-approved rollout workflow as a promotion form (``[promotion] form = "workflow"``).

The spec allows production promotion by "an operator-approved rollout workflow". The declaration
names the command (``[promotion] workflow``); Stage 3 runs it only after every precheck passed (the
human approval among them), in ``railiance/``, with the candidate named in its environment
(``CANDIDATE_IMAGE``, ``CANDIDATE_DIGEST``, ``RELEASE``, ``NAMESPACE``, ``WORKFLOW_ID``). Its exit code,
duration and redacted output tail are the ``promotion_applied`` evidence, with the workflow id. It is
judged exactly like a release replace: the stable Deployment must roll out on the candidate, the
canary is removed, production routing is read back and the smoke runs; any failure restores the
previous stable with the declared rollback strategy.
"""

from __future__ import annotations

import os
from typing import Any

from railiance_ledger.adapters.process import run_command
from railiance_ledger.domain.stage_result import Evidence
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.cluster.routing import routing_snapshot
from railiance_ledger.lifecycle.stage3.context import PromotionContext, PromotionFailed
from railiance_ledger.lifecycle.stage3.forms import PromotionRun
from railiance_ledger.lifecycle.stage3.forms_replace import ReleaseReplace

OUTPUT_TAIL_CHARS = 4096


class RolloutWorkflow(ReleaseReplace):
    """Release replace with the declared workflow command doing the replacing (a ``PromotionForm``)."""

    def __init__(self, ctx: PromotionContext) -> None:
        super().__init__(ctx)
        workflow = ctx.decl.promotion.workflow
        assert workflow is not None  # the declaration refuses form = "workflow" without one
        self.argv = list(workflow)
        self.command = " ".join(self.argv)
        self.name = "weighted-shift-then-workflow" if self.weighted else "workflow"
        self.result: dict[str, Any] = {}

    def act(self, run: PromotionRun) -> tuple[str, list[Evidence]]:
        """Run the workflow; a non-zero exit, a timeout or a printed secret fails the promotion."""
        ctx = self.ctx
        env = {
            **os.environ,
            "CANDIDATE_IMAGE": ctx.image,
            "CANDIDATE_DIGEST": ctx.digest,
            "RELEASE": ctx.release,
            "NAMESPACE": ctx.namespace,
            "WORKFLOW_ID": run.workflow_id,
        }
        timeout = float(ctx.decl.promotion.workflow_timeout)
        res = run_command(
            argv=self.argv, cwd=ctx.decl.railiance_dir, timeout=timeout, env=env, tail_bytes=OUTPUT_TAIL_CHARS
        )
        exit_text = "none (killed)" if res.timed_out else str(res.exit_code)
        self.result = {
            "workflow_id": run.workflow_id,
            "command": self.command,
            "exit_code": res.exit_code,
            "timed_out": res.timed_out,
            "duration_s": res.duration_s,
            "output_tail": res.output_tail,
        }
        evidence = [
            Evidence(kind="workflow", ref=run.workflow_id, detail=f"{self.command}: exit {exit_text}"),
            Evidence(
                kind="summary", ref="workflow output tail (redacted)", detail=res.output_tail or "(none)"
            ),
        ]
        acted = f"workflow `{self.command}` (id {run.workflow_id}) exit {exit_text} in {res.duration_s:.2f}s"
        why = None
        if res.timed_out:
            why = f"{acted}: timed out after {timeout:g}s and was killed"
        elif res.exit_code != 0:
            why = f"{acted}: the rollout workflow failed"
        elif res.secret_kinds:
            why = f"{acted}: it printed secret(s) ({', '.join(res.secret_kinds)})"
        if why is not None:
            run.steps.append(make_check("promotion_applied", False, why, evidence=evidence))
            raise PromotionFailed(why)
        return acted, evidence

    def record_fields(self, run: PromotionRun) -> dict[str, Any]:
        """The stable release as the workflow left it, the workflow's id and outcome, the routing now."""
        ctx = self.ctx
        return {
            "release": ctx.release,
            "namespace": ctx.namespace,
            "serving_release": ctx.release,
            "helm_revision": None,
            "manifests_sha256": self.sha,
            "routing_snapshot": routing_snapshot(run.kube, ctx.decl, ctx.namespace),
            "workflow": self.result,
        }
