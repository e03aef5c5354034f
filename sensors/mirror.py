"""``ledger_mirror_sensor``: ledger events appended outside Dagster (the CLI, another tool) appear in
the UI as runless materializations and observations on the matching asset and partition.

An event is Dagster's own when a materialization or observation of that partition already lists its
seq in ``ledger_seqs`` metadata (every asset and sensor here writes it). Events of a partition with a
run in progress are held (their event ids stay in the cursor) until the run ends, so a run's own
events are not reported twice; whatever a crashed run appended but never materialized is reported
once the run is over. Cursor: ``{"seq": N, "held": [event ids]}``.
"""

from collections.abc import Iterable
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    DagsterRunStatus,
    MetadataValue,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.candidates import candidates_partitions
from assets.resources import LedgerResource, log_of
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.gates import names_for, sample_gate_names
from sensors.settings import chain_refusal, default_status, dump_cursor, interval, load_cursor

NAME = "ledger_mirror_sensor"
BATCH = 2000
ASSET_NAMES = (
    "candidate",
    "stage1_validation",
    "stage2_canary",
    "canary_acceptance",
    "promotion_approval",
    "stage3_promotion",
)
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def placement(ev: RecordedEvent) -> tuple[str, bool]:
    """``(asset name, is_materialization)`` an event is shown on; the rest are observations."""
    kind, stage = ev.kind, ev.stage
    if kind == "candidate.registered":
        return "candidate", True
    if kind == "stage.completed":
        if stage == 1:
            return "stage1_validation", True
        if stage == 2:
            names = {str(c.get("name")) for c in ev.payload.get("checks") or [] if isinstance(c, dict)}
            return ("canary_acceptance" if names & set(sample_gate_names()) else "stage2_canary"), True
        return "stage3_promotion", True
    if kind == "stage.started":
        return {1: "stage1_validation", 2: "stage2_canary"}.get(stage or 0, "stage3_promotion"), stage == 2
    if kind == "canary.sample":
        return "canary_acceptance", False
    if kind == "approval.granted":
        return ("promotion_approval", True) if stage == 3 else ("stage2_canary", False)
    if kind == "approval.revoked":
        return ("promotion_approval" if stage == 3 else "stage2_canary"), False
    if kind == "waiver.granted":
        scope = ev.payload.get("scope") or {}
        wstage = scope.get("stage", stage) if isinstance(scope, dict) else stage
        return {1: "stage1_validation", 2: "stage2_canary", 3: "promotion_approval"}.get(
            int(wstage or 1), "stage1_validation"
        ), False
    if kind == "exception.emergency":
        return "promotion_approval", False
    if kind == "promotion.completed":
        return "stage3_promotion", True
    if kind in ("routing.changed", "rollback.started", "rollback.completed", "rollback.deferred"):
        return ("stage2_canary" if stage == 2 else "stage3_promotion"), False
    return "candidate", False


def mirrored_events(ev: RecordedEvent, key: str) -> list[Any]:
    """The runless asset events that report ``ev`` (and, for a Stage 1 result, its gate evaluations)."""
    from railiance_ledger.domain.redaction import redact, redact_value

    asset_name, is_mat = placement(ev)
    payload = redact_value(ev.payload)
    meta: dict[str, Any] = {
        "kind": MetadataValue.text(ev.kind),
        "actor": MetadataValue.text(ev.actor),
        "recorded_at": MetadataValue.text(ev.recorded_at),
        "ledger_seq": MetadataValue.int(ev.seq),
        "ledger_hash": MetadataValue.text(ev.hash),
        "ledger_seqs": MetadataValue.text(str(ev.seq)),
        "digest": MetadataValue.text(str(ev.candidate)),
        "source": MetadataValue.text("ledger mirror: appended outside Dagster"),
        ("document" if ev.kind == "stage.completed" else "payload"): MetadataValue.json(payload),
    }
    if isinstance(payload, dict) and payload.get("status"):
        meta["status"] = MetadataValue.text(str(payload["status"]))
    description = f"{ev.kind} by {ev.actor} (ledger seq {ev.seq}), appended outside Dagster"
    cls = AssetMaterialization if is_mat else AssetObservation
    out: list[Any] = [
        cls(asset_key=AssetKey(asset_name), partition=key, description=description, metadata=meta)
    ]
    if ev.kind == "stage.completed" and ev.stage == 1 and isinstance(payload, dict):
        checks = {str(c.get("name")): c for c in payload.get("checks") or [] if isinstance(c, dict)}
        for name in names_for(1):
            c = checks.get(name)
            status = str(c.get("status")) if c else "missing"
            reason = redact(str(c.get("reason") or "")) if c else "not reported"
            out.append(
                AssetCheckEvaluation(
                    asset_key=AssetKey(asset_name),
                    check_name=name,
                    passed=status in ("pass", "waived"),
                    severity=AssetCheckSeverity.ERROR,
                    description=f"{status}: {reason}",
                    partition=key,
                    metadata={
                        "status": MetadataValue.text(status),
                        "reason": MetadataValue.text(reason),
                        "ledger_seq": MetadataValue.int(ev.seq),
                    },
                )
            )
    return out


def _seqs(records: Iterable[Any]) -> set[int]:
    out: set[int] = set()
    for record in records:
        entry = getattr(record, "event_log_entry", None)
        meta = (
            getattr(
                getattr(entry, "asset_materialization", None) or getattr(entry, "asset_observation", None),
                "metadata",
                None,
            )
            or {}
        )
        value = meta.get("ledger_seqs")
        text = getattr(value, "value", value)
        for part in str(text or "").split(","):
            if part.strip().isdigit():
                out.add(int(part))
    return out


LOOKBACK_SECONDS = 3600.0
"""How far before the oldest event of a tick the mirror looks for Dagster records of it (clock skew,
runs that materialize late)."""


def covered_seqs(instance: Any, key: str, *, since: float | None = None, page: int = 500) -> set[int]:
    """Every ledger seq that Dagster's event log already shows for partition ``key``.

    All records of the partition since ``since`` (a UNIX time) are read, page by page, so a busy
    partition (a long observation window) never hides an earlier record and gets mirrored twice.
    """
    out: set[int] = set()
    for name in ASSET_NAMES:
        flt = AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[key], after_timestamp=since)
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            cursor = None
            while True:
                result = fetch(flt, limit=page, cursor=cursor)
                out |= _seqs(result.records)
                if not result.has_more:
                    break
                cursor = result.cursor
    return out


def _unix(recorded_at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(recorded_at).timestamp()


def active_partitions(instance: Any) -> set[str]:
    """Partitions with a run queued or in progress (partition tag, or ``railiance/partition``)."""
    out: set[str] = set()
    for run in instance.get_runs(filters=RunsFilter(statuses=_ACTIVE)):
        for tag in ("dagster/partition", "railiance/partition"):
            if run.tags.get(tag):
                out.add(run.tags[tag])
    return out


@sensor(
    name=NAME,
    minimum_interval_seconds=interval(15),
    default_status=default_status(NAME),
    description=(
        "Mirrors ledger events appended outside Dagster (e.g. the railiance CLI) as runless materializations "
        "and observations on the matching asset and candidate partition (Stage 1 results with their gate "
        'evaluations), so the UI audits every action. Cursor: {"seq": N, "held": [...]}.'
    ),
)
def ledger_mirror_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource
) -> SensorResult | SkipReason:
    """One tick: report new (and previously held) ledger events that Dagster's log does not show yet."""
    from railiance_ledger.ledger.projections import partition_key

    state = load_cursor(context.cursor, {"seq": 0, "held": []})
    after = int(state.get("seq", 0))
    held_ids = [str(i) for i in state.get("held") or []]
    with ledger.open() as store:
        refusal = chain_refusal(store, context)
        if refusal is not None:
            return refusal
        held = [ev for ev in (store.get(i) for i in held_ids) if ev is not None]
        fresh = list(store.read_all(after_seq=after, limit=BATCH))
    if not fresh and not held:
        return SkipReason(f"no ledger events after seq {after}")
    instance = context.instance
    active = active_partitions(instance)
    known = set(instance.get_dynamic_partitions(candidates_partitions.name or "candidates"))
    covered: dict[str, set[int]] = {}
    oldest: dict[str, float] = {}
    for ev in [*held, *fresh]:
        if ev.candidate:
            k = partition_key(ev.stream, ev.candidate)
            oldest[k] = min(oldest.get(k, float("inf")), _unix(ev.recorded_at))
    still_held: list[str] = []
    asset_events: list[Any] = []
    new_keys: list[str] = []
    for ev in [*held, *fresh]:
        if not ev.candidate:
            continue  # no candidate: no partition to show it on (it stays in `railiance history`)
        key = partition_key(ev.stream, ev.candidate)
        if key in active:
            still_held.append(ev.event_id)
            continue
        if key not in covered:
            covered[key] = (
                covered_seqs(instance, key, since=oldest[key] - LOOKBACK_SECONDS) if key in known else set()
            )
        if ev.seq in covered[key]:
            continue
        if key not in known:
            known.add(key)
            new_keys.append(key)
        asset_events.extend(mirrored_events(ev, key))
        covered[key].add(ev.seq)
    last = fresh[-1].seq if fresh else after
    cursor = dump_cursor({"seq": last, "held": still_held})
    reported = sum(1 for e in asset_events if not isinstance(e, AssetCheckEvaluation))
    log_of(context).info(f"ledger seq {after}->{last}: {reported} event(s) mirrored, {len(still_held)} held")
    return SensorResult(
        cursor=cursor,
        skip_reason=None if asset_events else f"nothing appended outside Dagster up to seq {last}",
        dynamic_partitions_requests=[candidates_partitions.build_add_request(new_keys)] if new_keys else None,
        asset_events=asset_events,
    )
