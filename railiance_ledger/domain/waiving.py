"""Waiver application: turning a failed check into ``waived`` when a recorded waiver covers it.

Pure: the waivers are the ``waiver.granted`` events already chosen for the candidate and stage
(``lifecycle.waivers.active_waivers``); nothing here reads the ledger or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.redaction import redact
from railiance_ledger.domain.stage_result import Check, CheckStatus


class WaiverWording(StrEnum):
    """How a waived check's reason reads (each stage keeps the wording its records already use)."""

    WAIVER_FIRST = "waiver-first"
    """Stage 1: ``waived by OPERATOR: REASON (was: CHECK REASON)``; the failure kind stays on record."""
    CHECK_FIRST = "check-first"
    """Stage 2: ``CHECK REASON (waived by OPERATOR, event ID)``; no failure kind on the waived check."""


def waive(check: Check, waiver: RecordedEvent | None, *, wording: WaiverWording) -> Check:
    """``check`` as ``waived`` (with the waiver's event id) when it failed and ``waiver`` covers it;
    otherwise ``check`` unchanged. The new reason is redacted."""
    if check.status != CheckStatus.FAIL or waiver is None:
        return check
    if wording == WaiverWording.WAIVER_FIRST:
        reason = f"waived by {waiver.actor}: {waiver.payload.get('reason', '')} (was: {check.reason})"
        return check.model_copy(
            update={"status": CheckStatus.WAIVED, "reason": redact(reason), "waiver": waiver.event_id}
        )
    return Check(
        name=check.name,
        status=CheckStatus.WAIVED,
        waiver=waiver.event_id,
        evidence=check.evidence,
        reason=redact(f"{check.reason} (waived by {waiver.actor}, event {waiver.event_id})"),
    )


def apply_waivers(
    checks: Iterable[Check],
    waivers: Mapping[str, RecordedEvent],
    *,
    wording: WaiverWording = WaiverWording.WAIVER_FIRST,
) -> list[Check]:
    """Every check, with each failed one that a waiver (by gate name) covers turned into ``waived``."""
    return [waive(c, waivers.get(c.name), wording=wording) for c in checks]
