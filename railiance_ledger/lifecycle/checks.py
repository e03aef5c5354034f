"""Building the named checks of a stage result, the same way in every stage.

A check either passes or fails with its reason; a failure is a *policy* failure (the gate was asked
and said no) or a *technical* one (the fact could not be collected). Both fail closed. Every reason
passes the one redaction path before it is stored or shown.

Running a check so that nothing it raises can pass it or abort the stage comes in two flavours:

- ``judge(name, fn)``: errors are classified by type: a gate that refused (a ``RailianceError``
  other than an ``AdapterError``) fails the check as *policy*; could-not-ask errors (adapters,
  anything unexpected) fail it as *technical*. Stages 2 and 3 judge their checks this way.
- ``judge_or_unevaluated(name, fn)`` (and ``judge_all_or_unevaluated`` for a function returning a
  list of checks): any error means the check "could not be evaluated" and fails it as *technical*.
  Stage 1 runs its checks this way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import Check, CheckStatus, Evidence, FailureKind
from railiance_ledger.errors import AdapterError, RailianceError

_REASON_LIMIT = 300


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


def bounded(text: str, limit: int = _REASON_LIMIT) -> str:
    """``text`` cut to ``limit`` characters (ending in ``[...]`` when cut)."""
    return text if len(text) <= limit else text[: limit - 5] + "[...]"


def judge(name: str, fn: Callable[[], Check]) -> Check:
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


def judge_or_unevaluated(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; any error fails it as technical ("could not be evaluated") instead of
    aborting the stage."""
    try:
        return fn()
    except RailianceError as exc:
        return make_check(
            name, False, f"could not be evaluated: {exc.message}", failure=FailureKind.TECHNICAL
        )
    except Exception as exc:  # noqa: BLE001 - fail closed, never crash between started and completed
        return make_check(
            name,
            False,
            f"could not be evaluated: {type(exc).__name__}: {bounded(str(exc))}",
            failure=FailureKind.TECHNICAL,
        )


def judge_all_or_unevaluated(name: str, what: str, fn: Callable[[], list[Check]]) -> list[Check]:
    """Run a function returning several checks; any error yields the one technical failure ``name``
    saying ``what`` could not be run."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - fail closed
        return [
            make_check(
                name,
                False,
                f"{what} could not be run: {type(exc).__name__}: {bounded(str(exc))}",
                failure=FailureKind.TECHNICAL,
            )
        ]
