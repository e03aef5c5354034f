"""One exception hierarchy for the whole package.

Every exception carries its context (system, operation, address) and says what to do.
Third-party exceptions are translated at the adapter boundary (``raise AdapterError(...) from exc``)
and never escape into business code. Policy failures (a gate said no) and technical failures
(could not ask) are different types, and both fail the gate.

    RailianceError                      base; ``exit_code`` maps to the CLI contract
    ├── InvalidInput                    exit 2: usage, declaration, digest, duration
    │   ├── DeclarationError            app.toml invalid; carries a list of DeclarationIssue
    │   ├── InvalidDigest               image reference not pinned by a well-formed sha256 digest
    │   ├── UnknownName                 no such workload or candidate in the ledger (names the nearest)
    │   └── InvalidDuration             a duration string that does not parse
    ├── LedgerError                     exit 3: the ledger itself
    │   ├── ConcurrencyConflict         stale expected_version; re-read and retry
    │   │   └── LeaseHeld               another action holds the workload's lease (names the holder)
    │   ├── WorkloadBlocked             an unresolved rollback.incomplete blocks every action
    │   ├── IntegrityError              hash chain broken (edited, missing, reordered)
    │   └── RuleViolation               a domain rule refused the append (e.g. skipped stage)
    ├── GateFailed                      exit 1: a policy failure, the gate said no
    ├── ActionNotConfirmed              exit 1: an action on the cluster did not read back as asked
    ├── EnvironmentUnavailable          exit 4: the command cannot start (no kubeconfig, no server, no helm)
    └── AdapterError                    exit 1: a technical failure, could not ask
        ├── AdapterTimeout
        ├── AdapterUnavailable          connection refused, DNS, 5xx
        ├── AdapterAuthError            401/403
        ├── AdapterNotFound             404
        └── AdapterProtocolError        malformed answer
"""

from __future__ import annotations

from dataclasses import dataclass


class RailianceError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: int = 1
    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidInput(RailianceError):
    """The operator gave us something we refuse to act on (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class DeclarationIssue:
    """One problem in a declaration: the TOML path, what is wrong, and how to fix it."""

    path: str
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class DeclarationError(InvalidInput):
    """``railiance/app.toml`` is missing, unreadable or invalid; ``issues`` lists every problem."""

    def __init__(
        self, message: str, issues: list[DeclarationIssue] | None = None, *, source: str = ""
    ) -> None:
        super().__init__(message, hint="fix each listed field in railiance/app.toml; see docs/app-toml.md")
        self.issues = list(issues or [])
        self.source = source


class InvalidDigest(InvalidInput):
    """An image reference that is not pinned by ``@sha256:<64 lowercase hex>``."""


class UnknownName(InvalidInput):
    """A workload or candidate the ledger does not know (exit 2); ``nearest`` lists the closest known
    names (``difflib``), most similar first."""

    def __init__(self, message: str, *, nearest: list[str] | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.nearest = list(nearest or [])


class InvalidDuration(InvalidInput):
    """A duration that does not parse (use forms like ``90s``, ``15m``, ``1h30m``)."""


class LedgerError(RailianceError):
    """The ledger refused or cannot be trusted (exit 3)."""

    exit_code = 3


class ConcurrencyConflict(LedgerError):
    """Another writer appended to the same stream first; re-read the stream and retry."""


class LeaseHeld(ConcurrencyConflict):
    """Another action holds the workload's lease; ``holder`` and ``action`` name it (exit 3)."""

    def __init__(self, message: str, *, holder: str = "", action: str = "", expires_at: str = "") -> None:
        super().__init__(
            message,
            hint="wait for that action to finish, or for the lease to expire if its holder crashed",
        )
        self.holder = holder
        self.action = action
        self.expires_at = expires_at


class LedgerNotFound(LedgerError):
    """The ledger URL names no existing ledger (a typo must not create an empty one): exit 3."""


class WorkloadBlocked(LedgerError):
    """An unresolved ``rollback.incomplete`` blocks every action on the workload (exit 3)."""


class IntegrityError(LedgerError):
    """The hash chain does not verify; ``seq`` names the first bad event."""

    def __init__(self, message: str, *, seq: int | None = None, problem: str = "") -> None:
        super().__init__(message, hint="run `railiance ledger verify` and restore from a trusted export")
        self.seq = seq
        self.problem = problem


class RuleViolation(LedgerError):
    """A lifecycle rule refused the append (stage skipped, wrong digest, ...): a refused record is
    exit 3, never a warning."""


class GateFailed(RailianceError):
    """A policy failure: the gate was asked and said no (exit 1)."""

    exit_code = 1


class ActionNotConfirmed(RailianceError):
    """An action on the world was taken but did not read back as asked (a routing shift, a switch,
    a rollout): production may have changed, so the caller restores what it replaced (exit 1)."""

    exit_code = 1


class EnvironmentUnavailable(RailianceError):
    """The environment a command needs is missing or does not answer before any gate could be asked
    (no kubeconfig, an API server that does not answer, no helm binary): exit 4, nothing recorded.

    A fact that could not be collected *during* a stage is a failed check (``AdapterError``, exit 1):
    fail closed. This error is only raised by the pre-flight before a command takes its lease.
    """

    exit_code = 4


class AdapterError(RailianceError):
    """A technical failure talking to an external system: the fact could not be collected."""

    exit_code = 1

    def __init__(
        self, message: str, *, system: str, operation: str, address: str = "", hint: str = ""
    ) -> None:
        full = f"{system} {operation} failed"
        if address:
            full += f" at {address}"
        full += f": {message}"
        super().__init__(full, hint=hint)
        self.system = system
        self.operation = operation
        self.address = address
        self.reason = message


class AdapterTimeout(AdapterError):
    """The system did not answer in time."""


class AdapterUnavailable(AdapterError):
    """Connection refused, name resolution failed, or the server answered 5xx."""


class AdapterAuthError(AdapterError):
    """The system refused our credentials (401/403)."""


class AdapterNotFound(AdapterError):
    """The object asked for does not exist (404)."""


class AdapterProtocolError(AdapterError):
    """The system answered something we cannot parse."""
