"""``stage_gate_sensor`` (the next stage when the ledger says its upstream passed) and
``canary_guard_sensor`` (a rollback run when an immediate-rollback condition appears while observing).

Both read the ledger from a JSON cursor ``{"seq": <last seq read>}``; the decisions are the
lifecycle's (``lifecycle.gating``, ``lifecycle.guard``), which read each touched candidate's whole
history (and nothing else), so a decision never depends on where a cursor happened to stop and a tick
costs the same whatever the number of candidates or partitions.
"""

from dagster import (
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.candidates import candidates_partitions
from assets.jobs import canary_job, observe_job, promote_job, rollback_job
from assets.resources import AppsResource, LedgerResource, log_of
from sensors.settings import chain_refusal, default_status, dump_cursor, interval, load_cursor

GATE = "stage_gate_sensor"
GUARD = "canary_guard_sensor"
BATCH = 5000
"""Most ledger events read per tick (the rest next tick)."""


def _decls(apps: AppsResource, context: SensorEvaluationContext) -> dict[str, object]:
    from railiance_ledger.lifecycle.workloads import discover_workloads

    workloads, problems = discover_workloads(apps.path())
    for problem in problems:
        log_of(context).warning(problem)
    return {w.name: w.decl for w in workloads}


@sensor(
    name=GATE,
    jobs=[canary_job, observe_job, promote_job],
    minimum_interval_seconds=interval(15),
    default_status=default_status(GATE),
    description=(
        "Reads new ledger events and requests the next stage for the same digest only when the ledger says "
        "its upstream passed: Stage 1 pass -> canary, canary deployed -> observe, canary accepted -> "
        "promote. "
        'Production-critical workloads wait for an approval.granted. Cursor: {"seq": N}.'
    ),
)
def stage_gate_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource, apps: AppsResource
) -> SensorResult | SkipReason:
    """One tick: read the ledger after the cursor, ask the gates, request what may run."""
    from railiance_ledger.lifecycle.gating import next_stage_requests

    after = int(load_cursor(context.cursor, {"seq": 0}).get("seq", 0))
    with ledger.open() as store:
        refusal = chain_refusal(store, context)
        if refusal is not None:
            return refusal
        events = list(store.read_all(after_seq=after, limit=BATCH))
        if not events:
            return SkipReason(f"no ledger events after seq {after}")
        go, held = next_stage_requests(store, events, _decls(apps, context))
    name = candidates_partitions.name or "candidates"
    # one indexed lookup per requested key: the tick never lists every partition
    missing = sorted(
        {n.partition_key for n in go if not context.instance.has_dynamic_partition(name, n.partition_key)}
    )
    for h in held:
        log_of(context).info(f"{h.partition_key}: {h.job} held: {h.reason}")
    requests = [
        RunRequest(
            job_name=n.job,
            partition_key=n.partition_key,
            run_key=n.run_key,
            tags={
                "railiance/workload": n.workload,
                "railiance/digest": n.digest,
                "railiance/reason": n.reason[:200],
            },
        )
        for n in go
    ]
    cursor = dump_cursor({"seq": events[-1].seq})
    skip = (
        None
        if requests
        else (
            f"{len(events)} event(s) up to seq {events[-1].seq}: nothing may start"
            + (f"; held: {'; '.join(f'{h.partition_key} {h.job}: {h.reason}' for h in held)}" if held else "")
        )
    )
    return SensorResult(
        run_requests=requests,
        skip_reason=skip,
        cursor=cursor,
        dynamic_partitions_requests=[candidates_partitions.build_add_request(missing)] if missing else None,
    )


@sensor(
    name=GUARD,
    job=rollback_job,
    minimum_interval_seconds=interval(10),
    default_status=default_status(GUARD),
    description=(
        "During an open Stage 2 observation window, requests a `rollback` run when an immediate-rollback "
        "condition appears in the ledger: an approval revoked, or a canary.sample naming an "
        "immediate-rollback "
        'symptom (the declared thresholds). Cursor: {"seq": N}.'
    ),
)
def canary_guard_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource, apps: AppsResource
) -> SensorResult | SkipReason:
    """One tick: find immediate-rollback conditions among new events and request a rollback for each."""
    from railiance_ledger.lifecycle.guard import rollback_conditions

    after = int(load_cursor(context.cursor, {"seq": 0}).get("seq", 0))
    with ledger.open() as store:
        refusal = chain_refusal(store, context)
        if refusal is not None:
            return refusal
        events = list(store.read_all(after_seq=after, limit=BATCH))
        if not events:
            return SkipReason(f"no ledger events after seq {after}")
        conditions = rollback_conditions(store, events, _decls(apps, context))
    requests = []
    for c in conditions:
        log_of(context).warning(f"{c.partition_key}: immediate rollback: {c.reason}")
        requests.append(
            RunRequest(
                run_key=f"{c.partition_key}:rollback:{c.seq}",
                run_config={
                    "ops": {
                        "rollback_workload": {
                            "config": {
                                "workload": c.workload,
                                "reason": f"canary guard: {c.reason}",
                                "candidate": c.partition_key,
                            }
                        }
                    }
                },
                tags={
                    "railiance/workload": c.workload,
                    "railiance/digest": c.digest,
                    "railiance/partition": c.partition_key,
                },
            )
        )
    cursor = dump_cursor({"seq": events[-1].seq})
    skip = (
        None
        if requests
        else f"no immediate-rollback condition in {len(events)} event(s) up to seq {events[-1].seq}"
    )
    return SensorResult(run_requests=requests, skip_reason=skip, cursor=cursor)
