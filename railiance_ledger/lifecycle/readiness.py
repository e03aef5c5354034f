"""The spec's "Forgejo Readiness Interpretation", answered from the declaration and the ledger.

The spec lists eight questions a production-critical workload (Forgejo is the example) must answer
before production cutover, and says: "If any answer is missing, Forgejo remains in Stage 1 or
Stage 2 preparation and must not cut over to Stage 3." ``readiness_report`` answers each question,
says where the answer came from, and, for a missing answer, the stage the workload must remain in:

- answers Stage 2 needs before a canary may be applied (artifact, local checks, canary isolation,
  acceptance checks, previous stable target: "rollback target is known before the canary is
  applied") keep the workload in **Stage 1 preparation**;
- answers only Stage 3 needs (who approves the switch, data protection, rollback verification)
  keep it in **Stage 2 preparation**.

The report never fetches anything: it reads the declaration and the ledger only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from railiance_ledger.declaration.criticality import Category
from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.durations import format_duration
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.payloads import CandidateRegistered, StageCompleted, read_or_default
from railiance_ledger.lifecycle.candidates import select_candidate

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = [
    "FORGE_ACCEPTANCE",
    "QUESTIONS",
    "Preparation",
    "ReadinessAnswer",
    "ReadinessReport",
    "readiness_report",
]


class Preparation(StrEnum):
    """Where a workload must remain while a readiness answer is missing."""

    STAGE1 = "Stage 1 preparation"
    """Not yet eligible for a Stage 2 canary: something the canary needs is unanswered."""
    STAGE2 = "Stage 2 preparation"
    """May run a canary, but must not cut over to Stage 3."""

    @property
    def rank(self) -> int:
        """Earlier preparation ranks lower (Stage 1 < Stage 2)."""
        return 1 if self is Preparation.STAGE1 else 2


QUESTIONS: dict[str, tuple[str, Preparation]] = {
    "artifact": ("What source revision and image digest are being promoted?", Preparation.STAGE1),
    "local_checks": ("What local checks prove the candidate is viable?", Preparation.STAGE1),
    "canary_isolation": ("How is the production canary isolated or traffic-limited?", Preparation.STAGE1),
    "acceptance_checks": (
        "Which health, registry, SSH, web, Actions, and email recovery checks define acceptance?",
        Preparation.STAGE1,
    ),
    "stage3_approver": ("Who approves the Stage 3 traffic switch?", Preparation.STAGE2),
    "previous_stable": ("What is the previous stable target?", Preparation.STAGE1),
    "data_protection": ("How is repository data protected before and after promotion?", Preparation.STAGE2),
    "rollback_verification": (
        "How will rollback be verified without losing package or repository state?",
        Preparation.STAGE2,
    ),
}
"""Question id -> (the spec's wording, where the workload remains while it is unanswered)."""

FORGE_ACCEPTANCE: dict[str, tuple[str, ...]] = {
    "registry": ("registry", "packages", "container-registry", "package-registry"),
    "ssh": ("ssh", "git-ssh"),
    "web": ("web", "ui", "http"),
    "actions": ("actions", "ci", "runner", "runners"),
    "email-recovery": ("email-recovery", "email", "mail", "password-reset", "mail-recovery"),
}
"""Acceptance checks a source forge must declare (``[[acceptance]]`` names), with accepted aliases."""

_REQUIRED_ACCEPTANCE: dict[Category, tuple[str, ...]] = {
    Category.SOURCE_FORGE: tuple(FORGE_ACCEPTANCE),
    Category.PACKAGE_REGISTRY: ("registry",),
}

STATEFUL_CATEGORIES = frozenset(
    {
        Category.SOURCE_FORGE,
        Category.PACKAGE_REGISTRY,
        Category.DATABASE,
        Category.OBJECT_STORE,
        Category.BACKUP,
    }
)
"""Categories that hold data by their nature: data protection must be declared, not assumed away."""


@dataclass(frozen=True)
class ReadinessAnswer:
    """One readiness question: answered or not, the answer, where it came from, what is missing."""

    id: str
    question: str
    answered: bool
    text: str
    source: str
    missing: list[str] = field(default_factory=list)
    must_remain_in: Preparation | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``must_remain_in`` is the text or null)."""
        return {
            "id": self.id,
            "question": self.question,
            "answered": self.answered,
            "text": self.text,
            "source": self.source,
            "missing": list(self.missing),
            "must_remain_in": str(self.must_remain_in) if self.must_remain_in else None,
        }


@dataclass(frozen=True)
class ReadinessReport:
    """Every readiness answer for one workload and candidate, and the verdict."""

    workload: str
    category: str
    production_critical: bool
    candidate: dict[str, Any] | None
    answers: list[ReadinessAnswer]

    @property
    def ready(self) -> bool:
        """True when every question is answered: the workload may cut over to Stage 3 (gates permitting)."""
        return all(a.answered for a in self.answers)

    @property
    def missing(self) -> list[str]:
        """Ids of unanswered questions, in question order."""
        return [a.id for a in self.answers if not a.answered]

    @property
    def must_remain_in(self) -> Preparation | None:
        """The earliest preparation stage any missing answer keeps the workload in (None when ready)."""
        stages = [a.must_remain_in for a in self.answers if not a.answered and a.must_remain_in]
        return min(stages, key=lambda p: p.rank) if stages else None

    def answer(self, question_id: str) -> ReadinessAnswer:
        """The answer to ``question_id`` (a key of ``QUESTIONS``)."""
        return next(a for a in self.answers if a.id == question_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``railiance readiness --json``."""
        remain = self.must_remain_in
        return {
            "workload": self.workload,
            "category": self.category,
            "production_critical": self.production_critical,
            "candidate": self.candidate,
            "ready": self.ready,
            "may_cut_over_to_stage3": self.ready,
            "must_remain_in": str(remain) if remain else None,
            "missing": self.missing,
            "answers": [a.as_dict() for a in self.answers],
        }


# ---------------------------------------------------------------------------- the report


def readiness_report(*, store: EventStore, decl: Declaration, image: str | None = None) -> ReadinessReport:
    """Answer every readiness question for ``decl`` and its candidate (``image``, else the newest).

    Reads the declaration and the ledger only. An ``image`` that is not registered is
    ``InvalidInput``; no registered candidate at all is an unanswered first question.
    """
    workload = decl.workload.name
    history = store.read_stream(workload)
    registration = _candidate(history, workload, image)
    digest = registration.candidate if registration else None
    answers = [
        _artifact(registration),
        _local_checks(history, decl, digest),
        _canary_isolation(decl),
        _acceptance(decl),
        _approver(history, decl, digest),
        _previous_stable(store, decl),
        _data_protection(decl),
        _rollback_verification(decl),
    ]
    candidate = None
    if registration is not None:
        candidate = {
            "digest": registration.candidate,
            "image": read_or_default(CandidateRegistered, registration.payload).image,
            "revision": read_or_default(CandidateRegistered, registration.payload).revision,
        }
    return ReadinessReport(
        workload=workload,
        category=str(decl.category),
        production_critical=decl.production_critical,
        candidate=candidate,
        answers=answers,
    )


def _make(
    qid: str, *, answered: bool, text: str, source: str, missing: Iterable[str] = ()
) -> ReadinessAnswer:
    question, remain = QUESTIONS[qid]
    return ReadinessAnswer(
        id=qid,
        question=question,
        answered=answered,
        text=text,
        source=source,
        missing=list(missing),
        must_remain_in=None if answered else remain,
    )


def _candidate(history: list[RecordedEvent], workload: str, image: str | None) -> RecordedEvent | None:
    """The registration of the candidate ``image`` names, else the newest; ``None`` when none is."""
    found = select_candidate(history, workload, image.strip() if image else None)
    return found.registration if found is not None else None


def _artifact(reg: RecordedEvent | None) -> ReadinessAnswer:
    if reg is None:
        return _make(
            "artifact",
            answered=False,
            text="no candidate is registered in the ledger",
            source="ledger",
            missing=["a candidate registered by immutable digest (railiance candidate add)"],
        )
    registered = read_or_default(CandidateRegistered, reg.payload)
    revision = registered.revision
    image = registered.image or reg.candidate
    source = f"ledger candidate.registered seq {reg.seq}"
    if not revision:
        return _make(
            "artifact",
            answered=False,
            text=f"image {image}; source revision unknown",
            source=source,
            missing=[
                "the source revision of the candidate (register it with --revision or from a git work tree)"
            ],
        )
    return _make(
        "artifact", answered=True, text=f"image {image} built from revision {revision}", source=source
    )


def _local_checks(history: list[RecordedEvent], decl: Declaration, digest: str | None) -> ReadinessAnswer:
    declared = [c.name for c in decl.local_checks]
    declared_text = ", ".join(declared) if declared else "no [[local_checks]] declared"
    if digest is None:
        return _make(
            "local_checks",
            answered=False,
            text=f"declared local checks: {declared_text}",
            source="app.toml [[local_checks]]",
            missing=["a registered candidate with a passing Stage 1 result"],
        )
    result = CandidateState.from_events(history, digest).all_results.get(1)
    latest = next((ev for ev in history if result is not None and ev.event_id == result.event_id), None)
    if latest is None or result is None or not result.passed:
        state = "no Stage 1 result" if latest is None else f"Stage 1 failed (seq {latest.seq})"
        return _make(
            "local_checks",
            answered=False,
            text=f"{state} for {digest}; declared local checks: {declared_text}",
            source=f"ledger stage.completed stage 1 seq {latest.seq}" if latest else "ledger",
            missing=["a passing Stage 1 result for this candidate (railiance run APP_DIR)"],
        )
    checks = read_or_default(StageCompleted, latest.payload).checks or []
    summary = ", ".join(f"{c.get('name')} {c.get('status')}" for c in checks) or "passed"
    return _make(
        "local_checks",
        answered=True,
        text=f"Stage 1 passed for {digest}: {summary}",
        source=f"ledger stage.completed stage 1 seq {latest.seq}",
    )


def _canary_isolation(decl: Declaration) -> ReadinessAnswer:
    canary = decl.canary
    form = str(canary.form)
    if form == "weighted":
        how = f"weighted ingress split: {canary.weight}% of traffic to the canary"
        if canary.provider:
            how += f" via {canary.provider}"
    elif form == "header":
        how = f"header-based routing: only requests carrying {canary.header} reach the canary"
    elif form == "path":
        how = f"path-based routing: only {canary.path_prefix} reaches the canary"
    elif form == "shadow":
        how = "shadow deployment receiving replicated non-mutating traffic"
    elif form == "isolated-namespace":
        how = f"isolated namespace {decl.stages.canary.namespace} with manually triggered probes"
    else:
        how = form
    if decl.routing.host and form in ("weighted", "header", "path"):
        how += f" on {decl.routing.host}"
    how += f"; canary release {decl.stages.canary.namespace}/{decl.stages.canary.release}"
    extra = decl.readiness.canary_isolation
    if extra:
        how += f". {extra}"
    return _make(
        "canary_isolation",
        answered=True,
        text=how,
        source="app.toml [canary]" + (" and [readiness].canary_isolation" if extra else ""),
    )


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _covers(name: str, aliases: Iterable[str]) -> bool:
    n = _normal(name)
    parts = n.split("-")
    for alias in aliases:
        if n == alias or n.startswith(alias + "-") or n.endswith("-" + alias) or f"-{alias}-" in n:
            return True
        if "-" not in alias and alias in parts:
            return True
    return False


def _acceptance(decl: Declaration) -> ReadinessAnswer:
    health = [h.name for h in decl.health]
    accepted = [a.name for a in decl.acceptance]
    required = _REQUIRED_ACCEPTANCE.get(decl.category, ())
    missing = [
        need
        for need in required
        if not any(_covers(name, FORGE_ACCEPTANCE.get(need, (need,))) for name in accepted)
    ]
    parts = [f"health: {', '.join(health)}"]
    if accepted:
        parts.append(f"acceptance: {', '.join(accepted)}")
    if decl.smoke:
        parts.append(f"smoke: {', '.join(s.name for s in decl.smoke)}")
    thresholds = decl.canary.thresholds
    parts.append(
        f"thresholds: error rate <= {thresholds.max_error_rate}, p95 <= {thresholds.max_p95_latency_ms} ms, "
        f"window {format_duration(decl.observation_window_seconds)}"
    )
    text = "; ".join(parts)
    source = "app.toml [[health]]" + (", [[acceptance]]" if accepted else "") + ", [canary.thresholds]"
    if missing:
        return _make(
            "acceptance_checks",
            answered=False,
            text=f"{text}; a {decl.category} must also declare acceptance checks for: {', '.join(missing)}",
            source=source,
            missing=[f"[[acceptance]] check for {m}" for m in missing],
        )
    return _make("acceptance_checks", answered=True, text=text, source=source)


def _approver(history: list[RecordedEvent], decl: Declaration, digest: str | None) -> ReadinessAnswer:
    approvers = list(decl.approval.approvers)
    if approvers:
        who = (
            f"one of the declared approvers ({', '.join(approvers)}), never the operator who registered or "
            "deployed it"
        )
        source = "app.toml [approval].approvers"
    else:
        who = (
            "any named operator other than the one who registered or deployed the candidate (separation of "
            "duties)"
        )
        source = "lifecycle rule (no [approval].approvers declared)"
    required = (
        "explicit human approval is required (production-critical)"
        if decl.approval_required
        else "approval is not required for this criticality but is recorded when given"
    )
    text = f"{who}; {required}"
    if digest is not None:
        grant = CandidateState.from_events(history, digest).approval_in_force(3)
        if grant is not None:
            text += f"; approved for Stage 3 by {grant.actor} (event {grant.event_id})"
    return _make("stage3_approver", answered=True, text=text, source=source)


def _previous_stable(store: EventStore, decl: Declaration) -> ReadinessAnswer:
    from railiance_ledger.lifecycle.approvals import current_stable_target

    target = current_stable_target(store, decl.workload.name)
    rollback = decl.rollback
    how = f"rollback strategy {rollback.strategy}" + (
        f", command `{rollback.command}`" if rollback.command else ""
    )
    if target is not None:
        ref = target.get("image") or target.get("digest")
        return _make(
            "previous_stable",
            answered=True,
            text=f"{ref} (current stable in the ledger); {how}",
            source="ledger lineage",
        )
    if rollback.previous_stable:
        return _make(
            "previous_stable",
            answered=True,
            text=f"{rollback.previous_stable} (declared); {how}",
            source="app.toml rollback.previous_stable",
        )
    if rollback.strategy == "manual" and rollback.runbook:
        return _make(
            "previous_stable",
            answered=True,
            text=f"documented manual recovery path: {rollback.runbook}",
            source="app.toml rollback.runbook",
        )
    return _make(
        "previous_stable",
        answered=False,
        text=f"no stable version in the ledger and no rollback.previous_stable declared; {how}",
        source="ledger lineage, app.toml [rollback]",
        missing=[
            (
                "a previous stable target: a promotion in the ledger, rollback.previous_stable, "
                "or a manual strategy with rollback.runbook"
            )
        ],
    )


def _is_stateful(decl: Declaration) -> bool:
    return decl.backup.stateful or decl.category in STATEFUL_CATEGORIES


def _data_protection(decl: Declaration) -> ReadinessAnswer:
    backup = decl.backup
    text_answer = decl.readiness.data_protection
    if not _is_stateful(decl):
        text = text_answer or "backup.stateful = false: the workload declares no persistent data to protect"
        return _make(
            "data_protection",
            answered=True,
            text=text,
            source="app.toml [readiness].data_protection" if text_answer else "app.toml [backup]",
        )
    missing: list[str] = []
    parts: list[str] = []
    if not backup.stateful:
        missing.append(f"backup.stateful = true (a {decl.category} holds data)")
    if backup.check:
        age = f", at most {format_duration(backup.max_age)} old" if backup.max_age else ""
        parts.append(f"backup posture checked by `{' '.join(backup.check)}`{age}")
    else:
        missing.append("backup.check: the command proving backup and restore posture is current")
    if text_answer:
        parts.append(text_answer)
    else:
        missing.append("[readiness].data_protection: how data is protected before and after promotion")
    text = "; ".join(parts) if parts else "no data protection declared"
    return _make(
        "data_protection",
        answered=not missing,
        text=text,
        source="app.toml [backup], [readiness].data_protection",
        missing=missing,
    )


def _rollback_verification(decl: Declaration) -> ReadinessAnswer:
    rollback = decl.rollback
    text_answer = decl.readiness.rollback_verification
    missing: list[str] = []
    parts: list[str] = []
    if rollback.verification:
        parts.append(f"check {rollback.verification!r} runs after a rollback")
    else:
        missing.append("rollback.verification: the health/smoke/acceptance check run after a rollback")
    parts.append("rollback tested before" if rollback.tested else "rollback not yet tested")
    if text_answer:
        parts.append(text_answer)
    elif _is_stateful(decl):
        missing.append("[readiness].rollback_verification: how a rollback is verified without losing state")
    return _make(
        "rollback_verification",
        answered=not missing,
        text="; ".join(parts),
        source="app.toml [rollback]" + (", [readiness].rollback_verification" if text_answer else ""),
        missing=missing,
    )
