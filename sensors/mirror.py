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
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    DagsterRunStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.candidates import (
    candidates_partitions,
    check_evaluations,
    rollback_evaluation,
    stage_failed,
    top_level,
)
from assets.jobs import promote_job
from assets.production import production_event, read_view, workloads_partitions
from assets.resources import AppsResource, LedgerResource, log_of
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.domain.gates import GatePhase, is_local_check, names_for, sample_gate_names
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


def stage_gates(ev: RecordedEvent, asset_name: str) -> list[str]:
    """The gates a stage result on ``asset_name`` is judged on (Stage 1: with its declared local checks)."""
    checks = [str(c.get("name")) for c in ev.payload.get("checks") or [] if isinstance(c, dict)]
    if asset_name == "stage1_validation":
        return [*names_for(1), *(n for n in checks if is_local_check(n))]
    if asset_name == "stage2_canary":
        return [*names_for(2, GatePhase.PRECHECK), *names_for(2, GatePhase.EVIDENCE)]
    if asset_name == "canary_acceptance":
        return list(names_for(2, GatePhase.ACCEPTANCE))
    return [*names_for(3, GatePhase.PRECHECK), *names_for(3, GatePhase.PROMOTION)]


def mirrored_events(ev: RecordedEvent, key: str) -> list[Any]:
    """The runless asset events that report ``ev``: a stage result that failed is an observation with its
    gates evaluated (red where they failed), never a materialization; a rollback turns the stage it
    left red (``not_rolled_back``)."""
    from railiance_ledger.domain.redaction import redact_value

    asset_name, is_mat = placement(ev)
    payload = redact_value(ev.payload)
    failed = ev.kind == "stage.completed" and isinstance(payload, dict) and payload.get("status") == "fail"
    meta: dict[str, Any] = {
        "kind": MetadataValue.text(ev.kind),
        "actor": MetadataValue.text(ev.actor),
        **top_level(ev),
        "ledger_seq": MetadataValue.int(ev.seq),
        "ledger_hash": MetadataValue.text(ev.hash),
        "ledger_seqs": MetadataValue.text(str(ev.seq)),
        "digest": MetadataValue.text(str(ev.candidate)),
        "source": MetadataValue.text("ledger mirror: appended outside Dagster"),
        ("document" if ev.kind == "stage.completed" else "payload"): MetadataValue.json(payload),
    }
    if isinstance(payload, dict) and payload.get("status"):
        meta["status"] = MetadataValue.text(str(payload["status"]))
    description = (
        f"{ev.kind} by {ev.actor} at {ev.recorded_at} (ledger seq {ev.seq}), appended outside Dagster"
    )
    if failed:
        description = f"FAILED: {stage_failed(payload) or 'fail'} ({description})"
    cls = AssetMaterialization if is_mat and not failed else AssetObservation
    out: list[Any] = [
        cls(asset_key=AssetKey(asset_name), partition=key, description=description, metadata=meta)
    ]
    if ev.kind == "stage.completed" and isinstance(payload, dict):
        out.extend(check_evaluations(AssetKey(asset_name), key, payload, stage_gates(ev, asset_name), ev.seq))
    if ev.kind == "rollback.completed":
        out.append(rollback_evaluation(AssetKey(asset_name), key, ev))
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


def shown_production_seq(instance: Any, workload: str) -> int | None:
    """The ledger seq of the production view Dagster shows last for ``workload`` (one record read)."""
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("production"), asset_partitions=[workload]), limit=1
    )
    for record in result.records:
        mat = getattr(record.event_log_entry, "asset_materialization", None)
        value = (getattr(mat, "metadata", None) or {}).get("ledger_seq")
        raw = getattr(value, "value", value)
        return int(raw) if raw is not None else None
    return None


def _has(instance: Any, name: str, key: str, cache: dict[tuple[str, str], bool]) -> bool:
    """Whether the dynamic partition exists (one indexed lookup per key, never the whole list)."""
    if (name, key) not in cache:
        cache[(name, key)] = bool(instance.has_dynamic_partition(name, key))
    return cache[(name, key)]


@sensor(
    name=NAME,
    jobs=[promote_job],
    minimum_interval_seconds=interval(15),
    default_status=default_status(NAME),
    description=(
        "Mirrors ledger events appended outside Dagster (e.g. the railiance CLI) as runless materializations "
        "and observations on the matching asset and candidate partition (stage results with their gate "
        "evaluations; failed stages and rollbacks red), keeps the `production` asset current per workload, "
        "and retires old candidate partitions (the newest N per workload, every stable and rollback target "
        'stay). Tick cost depends on the new events only. Cursor: {"seq": N, "held": [...]}.'
    ),
)
def ledger_mirror_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource, apps: AppsResource
) -> SensorResult | SkipReason:
    """One tick: report new (and previously held) ledger events that Dagster's log does not show yet,
    refresh the production view of every workload they touch, retire partitions out of the window."""
    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.lifecycle.production import PRODUCTION_KINDS
    from railiance_ledger.lifecycle.retention import retired_candidates

    state = load_cursor(context.cursor, {"seq": 0, "held": []})
    after = int(state.get("seq", 0))
    held_ids = [str(i) for i in state.get("held") or []]
    keep = ledger.keep()
    arrived: dict[str, int] = {}
    retired: dict[str, list[str]] = {}
    with ledger.open() as store:
        refusal = chain_refusal(store, context)
        if refusal is not None:
            return refusal
        held = [ev for ev in (store.get(i) for i in held_ids) if ev is not None]
        fresh = list(store.read_all(after_seq=after, limit=BATCH))
        for ev in fresh:
            if ev.kind == "candidate.registered":
                arrived[ev.stream] = arrived.get(ev.stream, 0) + 1
        for workload, count in arrived.items():
            retired[workload] = retired_candidates(store, workload, keep=keep, arrived=count)
    if not fresh and not held:
        return SkipReason(f"no ledger events after seq {after}")
    instance = context.instance
    active = active_partitions(instance)
    exists: dict[tuple[str, str], bool] = {}
    cands = candidates_partitions.name or "candidates"
    covered: dict[str, set[int]] = {}
    oldest: dict[str, float] = {}
    for ev in [*held, *fresh]:
        if ev.candidate:
            k = partition_key(ev.stream, ev.candidate)
            oldest[k] = min(oldest.get(k, float("inf")), _unix(ev.recorded_at))
    still_held: list[str] = []
    asset_events: list[Any] = []
    new_keys: list[str] = []
    retiring = {partition_key(w, d) for w, digests in retired.items() for d in digests}
    for ev in [*held, *fresh]:
        if not ev.candidate:
            continue  # no candidate: no partition to show it on (it stays in `railiance history`)
        key = partition_key(ev.stream, ev.candidate)
        if key in retiring:
            continue  # out of the retention window already: no partition (the ledger keeps its events)
        if key in active:
            still_held.append(ev.event_id)
            continue
        known = _has(instance, cands, key, exists)
        if key not in covered:
            covered[key] = (
                covered_seqs(instance, key, since=oldest[key] - LOOKBACK_SECONDS) if known else set()
            )
        if ev.seq in covered[key]:
            continue
        if not known:
            exists[(cands, key)] = True
            new_keys.append(key)
        asset_events.extend(mirrored_events(ev, key))
        covered[key].add(ev.seq)
    # retention: only the registrations pushed out of the window by this tick's arrivals are looked at
    retire = sorted(k for k in retiring if k not in active and _has(instance, cands, k, exists))
    # the production view of every workload a new event may have changed (once per workload per tick)
    touched = sorted({ev.stream for ev in fresh if ev.kind in PRODUCTION_KINDS})
    new_workloads = [
        w for w in touched if not _has(instance, workloads_partitions.name or "workloads", w, exists)
    ]
    for workload in touched:
        view = read_view(ledger, apps, workload)
        if view.last_seq != shown_production_seq(instance, workload):
            asset_events.append(production_event(view))
    # a production rollback fails the candidate's Stage 3 partition in Dagster's own terms: a `promote`
    # run with record_rollback (promotes nothing, fails with the ledger's reason), so it shows Failed
    run_requests = [
        RunRequest(
            job_name=promote_job.name,
            partition_key=partition_key(ev.stream, ev.candidate),
            run_key=f"{partition_key(ev.stream, ev.candidate)}:rolled-back:{ev.seq}",
            run_config={"ops": {"stage3_promotion": {"config": {"record_rollback": True}}}},
            tags={
                "railiance/workload": ev.stream,
                "railiance/digest": ev.candidate,
                "railiance/reason": "rollback",
            },
        )
        for ev in fresh
        if ev.kind == "rollback.completed"
        and ev.candidate
        and (ev.stage or 3) == 3
        and partition_key(ev.stream, ev.candidate) not in retiring
    ]
    last = fresh[-1].seq if fresh else after
    cursor = dump_cursor({"seq": last, "held": still_held})
    reported = sum(1 for e in asset_events if not isinstance(e, AssetCheckEvaluation))
    log_of(context).info(
        f"ledger seq {after}->{last}: {reported} event(s) reported, {len(still_held)} held, "
        f"{len(retire)} partition(s) retired (keep {keep} per workload)"
    )
    requests: list[Any] = []
    if new_keys:
        requests.append(candidates_partitions.build_add_request(new_keys))
    if retire:
        requests.append(candidates_partitions.build_delete_request(retire))
    if new_workloads:
        requests.append(workloads_partitions.build_add_request(new_workloads))
    return SensorResult(
        cursor=cursor,
        run_requests=run_requests,
        skip_reason=(
            None if asset_events or run_requests else f"nothing appended outside Dagster up to seq {last}"
        ),
        dynamic_partitions_requests=requests or None,
        asset_events=asset_events,
    )
