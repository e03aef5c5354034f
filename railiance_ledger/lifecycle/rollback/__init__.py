"""Rollback: return production to the previous stable, verify it, and record what happened.

The spec ("Rollback Expectations") asks every Stage 2 and Stage 3 action to identify a previous
stable Helm revision, a previous image digest and values file, a previous routing configuration, or
a documented manual recovery path; and, after a rollback, to record the triggering symptom, the
rollback action, the final stable version, the remaining cleanup, and whether the failed candidate
is blocked, abandoned or returned to Stage 1. ``rollback`` does exactly that:

1. The target comes from the ledger's lineage (``ledger.projections.lineage``): the stable before
   the current one, with the restore information its ``promotion.completed`` recorded (Helm
   revision, rendered-manifests sha256 in the content store, values digests, routing snapshot).
   When the current stable was the first one the ledger saw, the target is the pre-ledger stable
   recorded in that promotion's ``previous_restore``. While a Stage 3 promotion is still open
   (crashed mid-way), the target is the stable it was replacing.
2. The action follows ``rollback.strategy``: ``helm-revision`` (``helm rollback RELEASE REV``),
   ``digest-and-values`` (re-apply exactly the stored rendered manifests of the target, prune
   what only the left stable had), ``routing`` (re-apply exactly the routing objects the
   routing-switch promotion of the left stable replaced, its ``routing_previous``, then retire the
   release the left candidate served from once verified), or
   ``manual`` (record the runbook and act on nothing; call again with ``manual_done=True`` once a
   human has followed it).
3. A rollback verification follows: the rollout is awaited, the live objects are compared with the
   target's stored manifests and image, and the declared ``rollback.verification`` check (a
   ``[[health]]``, ``[[smoke]]`` or ``[[acceptance]]`` entry) is run. Its result is evidence; a
   failed verification is reported (exit 1), never hidden.
4. ``rollback.started`` and ``rollback.completed`` are appended (``final_stable`` is the digest the
   lineage projection returns to), and a State Hub note is posted and recorded.

Deferral (``defer=True``) records ``rollback.deferred`` only with a human approval by another
operator (``approval_id`` of an ``approval.granted`` for the stable being left, recorded after its
promotion and still in force) and a State Hub note; without them it is refused (``GateFailed``).

A forward-only migration in the stable being left blocks the rollback: an automatic caller gets a
``GateFailed`` naming it; an operator may proceed only with ``accept_forward_only=True`` plus such
an approval (the data written by the migration is not undone by re-deploying older code, so a human
must decide that the older code can run against it).
"""

from __future__ import annotations

from railiance_ledger.lifecycle.rollback.model import (
    CANDIDATE_FATES,
    FATE_TEXT,
    RESTORE_KEYS,
    RestoreTarget,
    RollbackOutcome,
    image_digest,
    new_workflow_id,
)
from railiance_ledger.lifecycle.rollback.service import rollback

__all__ = [
    "CANDIDATE_FATES",
    "FATE_TEXT",
    "RESTORE_KEYS",
    "RestoreTarget",
    "RollbackOutcome",
    "image_digest",
    "new_workflow_id",
    "rollback",
]
