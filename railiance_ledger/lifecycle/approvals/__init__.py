"""Human approval gates: approvals, revocations and emergency exceptions, recorded and noted.

The spec ("Human Approval Gates") asks that production-critical workloads get explicit human
approval before production traffic changes, recorded as a non-secret State Hub note naming the
approving operator, the candidate artifact, the stage, the observation window, the rollback target
and any waived gates with why. This module records exactly that as ``approval.granted``, and:

- refuses an approval without an operator identity (``--operator`` or ``RAILIANCE_OPERATOR``; the
  login name is not an identity for an approval): ``InvalidInput``, exit 2;
- enforces separation of duties: whoever registered the candidate or deployed it (Stage 2/3
  ``stage.started``, ``routing.changed``, ``promotion.completed``) cannot approve it: ``GateFailed``,
  exit 1, naming both roles;
- allows a *retrospective* approval only for a candidate with an ``exception.emergency`` (the
  spec's "Emergency approval can be retrospective only when delaying the action would increase
  production risk"), and lists every emergency action still awaiting one (``pending_retrospective``);
- records revocations (``approval.revoked``), which the Stage 2 observe loop treats as an immediate
  rollback condition during the observation window (``approval_state``);
- posts every record as a redacted State Hub note and keeps the outcome in the ledger
  (``lifecycle.notes.post_and_record``); an unreachable State Hub is reported, never dropped. The
  State Hub is injected (``statehub``); services never build one from the environment.

Whether an approval is in force, which exceptions await a retrospective approval and which waivers
are recorded come from the one candidate-state fold (``domain.candidate_state``). The operator is an
``Operator`` (``domain.identity``) or a plain name; records keep ``operator_explicit``.

Modules: ``common`` (identity, reasons, shared helpers), ``target`` (rollback target), ``approve``,
``revoke``, ``exceptions`` (emergency exceptions), ``state`` (approval state from the fold),
``signing`` (SSHSIG signatures over the records and the signature policy; see docs/approvals.md).

Services return a ``NotedEvent``: the recorded event (a ``RecordedEvent``) that also carries
``.note`` and ``.warnings`` for the CLI to print.
"""

from railiance_ledger.lifecycle.approvals.approve import approval_to_sign, approve, recorded_waivers
from railiance_ledger.lifecycle.approvals.common import (
    APPROVABLE_STAGES,
    SKIPPABLE_STAGES,
    WINDOW_GATE,
    require_identity,
    require_operator,
    require_reason,
)
from railiance_ledger.lifecycle.approvals.exceptions import (
    exception_to_sign,
    pending_retrospective,
    post_overdue_notes,
    record_exception,
)
from railiance_ledger.lifecycle.approvals.revoke import revocation_to_sign, revoke
from railiance_ledger.lifecycle.approvals.state import (
    ApprovalState,
    approval_state,
    candidate_state,
    state_of,
)
from railiance_ledger.lifecycle.approvals.target import current_stable_target

__all__ = [
    "APPROVABLE_STAGES",
    "SKIPPABLE_STAGES",
    "WINDOW_GATE",
    "ApprovalState",
    "approval_state",
    "approval_to_sign",
    "approve",
    "candidate_state",
    "current_stable_target",
    "exception_to_sign",
    "pending_retrospective",
    "post_overdue_notes",
    "record_exception",
    "recorded_waivers",
    "require_identity",
    "require_operator",
    "require_reason",
    "revocation_to_sign",
    "revoke",
    "state_of",
]
