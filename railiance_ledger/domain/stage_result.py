"""The stage-result document, schema id ``railiance.stage-result/v1``.

Every stage emits one: stored in the ledger (payload of ``stage.completed``), printed by ``--json``,
and attached to the Dagster materialization.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID: Literal["railiance.stage-result/v1"] = "railiance.stage-result/v1"


class CheckStatus(StrEnum):
    """Verdict of one check."""

    PASS = "pass"
    """The check ran and the fact satisfied the gate."""
    FAIL = "fail"
    """The gate said no, or the fact could not be collected (fail closed)."""
    WAIVED = "waived"
    """The check failed or was skipped, and a recorded waiver covers it."""

    @property
    def is_terminal(self) -> bool:
        """Every verdict is terminal once recorded."""
        return True


class FailureKind(StrEnum):
    """Why a check failed: the record says which, both fail closed."""

    POLICY = "policy"
    """The gate was asked and said no."""
    TECHNICAL = "technical"
    """The fact could not be collected (timeout, 5xx, refused, malformed)."""


class Evidence(BaseModel):
    """A non-secret evidence reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal[
        "commit",
        "digest",
        "workflow",
        "k8s-object",
        "pod-status",
        "http-status",
        "timestamp",
        "statehub",
        "summary",
        "query",
    ]
    ref: str
    detail: str = ""


class Check(BaseModel):
    """One named check in a stage result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    status: CheckStatus
    reason: str = ""
    failure: FailureKind | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    waiver: str | None = None
    """The ``waiver.granted`` event id when ``status`` is ``waived``."""


class Workload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    repo: str


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    image: str
    revision: str | None = None


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    required: bool
    decision: str
    """``"not required"`` or the approval event id."""
    operator: str | None = None


class LedgerRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    hash: str


class StageResult(BaseModel):
    """The machine-readable result every stage emits."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["railiance.stage-result/v1"] = Field(default=SCHEMA_ID, alias="schema")
    workload: Workload
    stage: Literal[1, 2, 3]
    candidate: Candidate
    target_environment: Literal["local", "canary", "production"]
    checks: list[Check]
    status: Literal["pass", "fail"]
    evidence: list[Evidence] = Field(default_factory=list)
    rollback_target: dict[str, Any] | None = None
    approval: Approval
    ledger: LedgerRef | None = None
    started_at: str
    finished_at: str

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document with ``schema`` as its key."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def failed_checks(self) -> list[Check]:
        """Checks whose verdict is ``fail``."""
        return [c for c in self.checks if c.status == CheckStatus.FAIL]


def overall_status(checks: list[Check]) -> Literal["pass", "fail"]:
    """``pass`` only when there is at least one check and none failed."""
    if not checks:
        return "fail"
    return "fail" if any(c.status == CheckStatus.FAIL for c in checks) else "pass"
