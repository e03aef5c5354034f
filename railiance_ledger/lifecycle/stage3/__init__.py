"""Stage 3: production promotion of the accepted candidate, with automatic rollback.

``promote`` runs the spec's six prechecks as named checks, all before anything changes:

    stage2_accepted           Stage 2 acceptance (latest stage 2 result passed) for the same digest,
                              or a recorded emergency exception skipping Stage 2; not after a
                              rollback that blocked/abandoned the candidate or returned it to Stage 1
    previous_stable_recorded  the stable being replaced: the ledger lineage's current stable, else
                              (first promotion) the declared rollback.previous_stable or the live
                              production Deployment, with the production release's Helm revision
                              and a snapshot of its live objects and routing (the rollback target)
    backup_posture_current    stateful workloads: the declared backup.check exits 0 (and states a
                              backup age within backup.max_age when one is declared)
    migrations_approved       forward-only / requires-approval migrations need a Stage 3 approval
                              in force; none / reversible pass; unclassified fails
    human_approval            production-critical: an approval.granted for stage 3 and this digest,
                              not revoked, by someone other than the promoting operator
    rollback_available        a rollback command (or runbook) and a rollback verification check
                              naming a declared check, and a usable target for the strategy

Any failure: ``stage.completed`` (stage 3, fail), nothing changed, exit 1. Otherwise the promotion
(``stage.started`` 3 first, so an interrupted promotion is visible and ``rollback`` can finish it):

1. weighted canaries first take all the host's traffic (canary weight 100 / HTTPRoute canary
   backend 100), so production is served by the observed candidate while the stable release is
   replaced (``routing.changed``);
2. the stable Helm release is upgraded to the candidate pinned by digest (production values); its
   rendered manifests are stored content-addressed and the values files digested; the rollout is
   awaited (every pod on the candidate image and ready);
3. the canary routing and release are removed (the stable release now serves the candidate);
4. production routing is read back (the host routes to the stable service, nothing routes to the
   canary, the stable service selects only candidate pods) and the declared ``[[smoke]]`` checks are
   run through the production URL (``routing.changed``);
5. when routing and smoke pass: ``promotion.completed`` (the payload the lineage projection folds),
   a State Hub note, and ``stage.completed`` (stage 3, pass). Otherwise the previous stable is
   restored automatically (``rollback.started``/``rollback.completed`` via ``lifecycle.rollback``)
   and ``stage.completed`` (stage 3, fail) records it; a forward-only migration blocks the automatic
   rollback and the result says that a human must decide.

With ``[promotion] form = "routing-switch"`` steps 1-3 are replaced by a routing switch: the
canary's own routing is removed (its release is kept: it becomes the stable workload), the exact
routing objects are recorded (``routing_previous``), the stable Service's selector is set to the
canary Service's selector, and the production release is left untouched as the previous stable's
workload. Read-back and smoke follow as above; a failure re-applies ``routing_previous``
(``rollback`` with strategy ``routing``).

``lineage_with_evidence`` is the read helper for ``railiance lineage WORKLOAD --at TIMESTAMP``: the
projection plus, per stable, the Stage 3 stage-result ledger reference and the State Hub note ids.
"""

from __future__ import annotations

from railiance_ledger.lifecycle.stage3.context import PRECHECKS, PROMOTION_CHECKS, PromotionOutcome
from railiance_ledger.lifecycle.stage3.lineage import lineage_with_evidence
from railiance_ledger.lifecycle.stage3.promote import promote

__all__ = ["PRECHECKS", "PROMOTION_CHECKS", "PromotionOutcome", "lineage_with_evidence", "promote"]
