"""What every human record shares: the operator identity, reasons, the candidate, notes' evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from railiance_ledger import config
from railiance_ledger.domain.identity import Operator, OperatorLike
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.text import NAME_MAX, REASON_MAX, text_problem
from railiance_ledger.errors import InvalidInput
from railiance_ledger.lifecycle.candidates import ResolvedCandidate

if TYPE_CHECKING:
    from railiance_ledger.domain.events import RecordedEvent

__all__ = [
    "APPROVABLE_STAGES",
    "SKIPPABLE_STAGES",
    "WINDOW_GATE",
    "candidate_evidence",
    "require_identity",
    "require_operator",
    "require_reason",
    "stream_version",
    "target_text",
]

APPROVABLE_STAGES = (2, 3)
"""Stages a human approves: the production canary (Stage 2) and the promotion (Stage 3)."""

SKIPPABLE_STAGES = (1, 2)
"""Stages an emergency exception may skip on the way to production."""

WINDOW_GATE = "observation_window"
"""Gate name for the spec's 60-minute minimum window of production-critical workloads."""

_HINT = "pass --operator NAME or set RAILIANCE_OPERATOR (the login name is not accepted for human decisions)"


def require_identity(operator: OperatorLike | None, *, what: str = "an approval") -> Operator:
    """The explicit operator identity, else ``InvalidInput`` (exit 2).

    ``operator`` is an ``Operator`` (refused when it was defaulted rather than given), or a plain
    name (``--operator``), else ``RAILIANCE_OPERATOR``. The login name is deliberately not accepted:
    a human decision needs a named human.
    """
    if isinstance(operator, Operator):
        _check_name(operator.name)
        if not operator.explicit:
            raise InvalidInput(
                f"{what} needs an explicit operator identity, not the default {operator.name!r}", hint=_HINT
            )
        return operator
    who = config.explicit_operator(operator.strip() if operator else None)
    if not who or not who.strip():
        raise InvalidInput(f"{what} needs an operator identity", hint=_HINT)
    _check_name(who.strip())
    return Operator.given(who.strip())


def _check_name(name: str) -> None:
    """The same free-text rule for an operator name from every entry point (CLI, Dagster launchpad)."""
    problem = text_problem(name, limit=NAME_MAX)
    if problem:
        raise InvalidInput(f"the operator name {problem}", hint=_HINT)


def require_operator(operator: OperatorLike | None, *, what: str = "an approval") -> str:
    """``require_identity`` as the operator's name (for callers that record only the name)."""
    return require_identity(operator, what=what).name


def require_reason(reason: str | None, *, what: str, flag: str = "--reason TEXT") -> str:
    """The reason, stripped and redacted; ``InvalidInput`` when it is empty."""
    if not reason or not reason.strip():
        raise InvalidInput(f"{what} needs a reason", hint=f"pass {flag}")
    problem = text_problem(reason.strip(), limit=REASON_MAX, allow_newlines=True)
    if problem:
        raise InvalidInput(f"the reason of {what} {problem}", hint=f"pass a shorter, plain {flag}")
    return redact(reason.strip())


def stream_version(history: list[RecordedEvent]) -> int:
    """The stream version ``history`` ends at (0 for an empty stream): the append's expected version."""
    return history[-1].version if history else 0


def candidate_evidence(cand: ResolvedCandidate) -> list[dict[str, Any]]:
    """The State Hub note evidence naming a candidate: its image and, when known, its revision."""
    out: list[dict[str, Any]] = [{"kind": "summary", "ref": cand.image, "detail": "candidate image"}]
    if cand.revision:
        out.append({"kind": "commit", "ref": str(cand.revision), "detail": "source revision"})
    return out


def target_text(target: Mapping[str, Any]) -> str:
    """A rollback target in one line: its kind and what it names."""
    kind = target.get("kind", "?")
    ref = target.get("image") or target.get("digest") or target.get("detail") or target.get("ref") or ""
    return f"{kind} {ref}".strip()
