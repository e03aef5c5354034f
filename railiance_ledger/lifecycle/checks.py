"""Building the named checks of a stage result, the same way in every stage.

A check either passes or fails with its reason; a failure is a *policy* failure (the gate was asked
and said no) or a *technical* one (the fact could not be collected). Both fail closed. Every reason
passes the one redaction path before it is stored or shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import Check, CheckStatus, Evidence, FailureKind
from railiance_ledger.errors import AdapterError, RailianceError


def make_check(
    name: str,
    ok: bool,
    reason: str,
    *,
    technical: bool = False,
    failure: FailureKind | None = None,
    evidence: Iterable[Evidence] | None = None,
) -> Check:
    """A passing or failing check; ``technical`` (or ``failure``) says why a failure happened."""
    kind = failure or (FailureKind.TECHNICAL if technical else FailureKind.POLICY)
    return Check(
        name=name,
        status=CheckStatus.PASS if ok else CheckStatus.FAIL,
        reason=redact(reason),
        failure=None if ok else kind,
        evidence=list(evidence or ()),
    )


def guarded(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check so that nothing it raises can pass it or abort the stage.

    Could-not-ask errors (adapters, anything unexpected) fail it as technical; a gate that refused
    (any other ``RailianceError``) fails it as policy.
    """
    try:
        return fn()
    except AdapterError as exc:
        return make_check(name, False, str(exc), technical=True)
    except RailianceError as exc:
        return make_check(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any unexpected failure fails the check closed
        return make_check(name, False, f"{type(exc).__name__}: {exc}", technical=True)
