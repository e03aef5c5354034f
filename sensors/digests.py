"""``new_digest_sensor``: new image digests in the registry become candidates and get a Stage 1 run."""

from contextlib import ExitStack
from typing import Any

from dagster import (
    AssetMaterialization,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.candidates import candidate, candidates_partitions, ledger_metadata
from assets.jobs import stage1_job
from assets.resources import AppsResource, LedgerResource, RegistryResource, log_of
from sensors.settings import default_status, dump_cursor, interval, load_cursor

NAME = "new_digest_sensor"


@sensor(
    name=NAME,
    job=stage1_job,
    minimum_interval_seconds=interval(30),
    default_status=default_status(NAME),
    description=(
        "Polls the OCI registry each workload's image.repository names (Docker Hub defaults; "
        "RAILIANCE_REGISTRY_URL overrides) with the user's docker credentials, for every workload declared "
        "under the apps directory (tags matching image.tag_pattern), registers each new digest as a "
        "candidate in the ledger "
        "(source 'sensor'), adds its partition and requests Stage 1. Cursor: {workload: {tag: digest}}. "
        "A registry outage is a skip with the reason."
    ),
)
def new_digest_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource, apps: AppsResource, registry: RegistryResource
) -> SensorResult | SkipReason:
    """One tick: poll every declared workload concurrently, register what is new, request Stage 1."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.registry_poll import poll_registry
    from railiance_ledger.lifecycle.workloads import discover_workloads

    seen: dict[str, dict[str, str]] = load_cursor(context.cursor, {})
    workloads, problems = discover_workloads(apps.path())
    for problem in problems:
        log_of(context).warning(problem)
    if not workloads:
        return SkipReason(
            f"no workload declared under {apps.path()}" + (f" ({'; '.join(problems)})" if problems else "")
        )
    url = registry.resolved_url() or "named by each image reference"
    with ExitStack() as stack:
        try:
            pool = stack.enter_context(open_pool(registry))
            polls = poll_registry(pool, workloads, max_workers=registry.max_workers)
        except RailianceError as exc:
            return SkipReason(f"registry {url} could not be asked: {exc}")
        failed = [p for p in polls if not p.ok]
        if failed and len(failed) == len(polls):
            return SkipReason(
                f"registry {url} unavailable for all {len(polls)} workload(s): {failed[0].error}"
            )
        for poll in failed:
            log_of(context).warning(f"{poll.workload}: {poll.error} (cursor kept; retried next tick)")
        return register_polls(context, ledger, pool, workloads, polls, seen)


def open_pool(registry: RegistryResource) -> Any:
    """The registry pool of the resource's settings (``lifecycle.environment.open_registries``)."""
    from railiance_ledger.lifecycle.environment import open_registries

    return open_registries(
        url=registry.url,
        username=registry.username,
        password=registry.password,
        token=registry.token,
        timeout=registry.timeout,
        max_workers=registry.max_workers,
    )


def register_polls(
    context: SensorEvaluationContext,
    ledger: LedgerResource,
    pool: Any,
    workloads: list[Any],
    polls: list[Any],
    seen: dict[str, dict[str, str]],
) -> SensorResult:
    """Register every new digest of ``polls`` (with what the registry says of it) and request Stage 1."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.lifecycle.registry_poll import register_polled, workload_reference

    known = set(context.instance.get_dynamic_partitions(candidates_partitions.name or "candidates"))
    cursor: dict[str, dict[str, str]] = {}
    run_requests: list[RunRequest] = []
    new_keys: list[str] = []
    events: list[Any] = []
    done: set[tuple[str, str]] = set()
    with ledger.open() as store:
        for workload, poll in zip(workloads, polls, strict=True):
            before = seen.get(workload.name, {})
            if not poll.ok:
                cursor[workload.name] = before
                continue
            after: dict[str, str] = {}
            for tag, digest in sorted(poll.tags.items()):
                after[tag] = digest
                if before.get(tag) == digest or (workload.name, digest) in done:
                    continue
                try:
                    event, created = register_polled(
                        store=store,
                        workload=workload,
                        tag=tag,
                        digest=digest,
                        operator=ledger.sensor_actor,
                        registry=pool.for_reference(workload_reference(workload)),
                    )
                except RailianceError as exc:
                    log_of(context).error(f"{workload.name}:{tag} -> {digest}: not registered: {exc}")
                    if tag in before:
                        after[tag] = before[tag]
                    else:
                        del after[tag]
                    continue
                done.add((workload.name, digest))
                key = partition_key(workload.name, digest)
                if key not in known:
                    known.add(key)
                    new_keys.append(key)
                if not created:
                    log_of(context).info(
                        f"{key}: {tag} -> {digest} was already registered (seq {event.seq}); no run"
                    )
                    continue
                log_of(context).info(
                    f"{key}: new digest {digest} under tag {tag}; registered at seq {event.seq}"
                )
                events.append(
                    AssetMaterialization(
                        asset_key=candidate.key,
                        partition=key,
                        description=f"registered by {NAME} from tag {tag}",
                        metadata=ledger_metadata(
                            event.payload, [event], digest=digest, image=str(event.payload.get("image") or "")
                        ),
                    )
                )
                run_requests.append(
                    RunRequest(
                        partition_key=key,
                        run_key=f"{key}:stage1",
                        tags={
                            "railiance/workload": workload.name,
                            "railiance/digest": digest,
                            "railiance/tag": tag,
                        },
                    )
                )
            cursor[workload.name] = after
    skip = None if run_requests else f"no new digest across {len(workloads)} workload(s)"
    return SensorResult(
        run_requests=run_requests,
        skip_reason=skip,
        cursor=dump_cursor(cursor),
        dynamic_partitions_requests=[candidates_partitions.build_add_request(new_keys)] if new_keys else None,
        asset_events=events,
    )


PUSH_NAME = "registry_push_sensor"


def has_run(context: SensorEvaluationContext, key: str) -> bool:
    """True when a run of partition ``key`` exists (requested by a sensor or the webhook's fast path)."""
    from dagster import RunsFilter

    return bool(
        context.instance.get_run_records(filters=RunsFilter(tags={"dagster/partition": key}), limit=1)
    )


@sensor(
    name=PUSH_NAME,
    job=stage1_job,
    minimum_interval_seconds=1,
    default_status=default_status(PUSH_NAME),
    description=(
        "Reads the push notifications `railiance webhook serve` stored (RAILIANCE_WEBHOOK_SPOOL, default "
        "$RAILIANCE_HOME/registry-events.db), registers each pushed digest of a watched tag as a candidate "
        "(source 'webhook', with the image's revision label and an index's platforms) and requests Stage 1. "
        "Cursor: the last spool sequence read. A digest registered before (a replayed notification, the "
        "polling sensor, the CLI, the receiver's fast path) requests a run only when its partition has "
        "none; new_digest_sensor stays the fallback."
    ),
)
def registry_push_sensor(
    context: SensorEvaluationContext, ledger: LedgerResource, apps: AppsResource, registry: RegistryResource
) -> SensorResult | SkipReason:
    """One tick: read the spool after the cursor, register what matches, request Stage 1."""
    from railiance_ledger.adapters.push_spool import PushSpool
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.ledger.projections import partition_key
    from railiance_ledger.lifecycle.registry_push import register_pushes, spool_path
    from railiance_ledger.lifecycle.workloads import discover_workloads

    last = int(load_cursor(context.cursor, 0) or 0)
    spool = PushSpool(spool_path())
    try:
        notices = spool.since(last)
    except RailianceError as exc:
        return SkipReason(f"push spool {spool.path} unreadable: {exc}")
    if not notices:
        return SkipReason(f"no push notification after spool seq {last}")
    workloads, problems = discover_workloads(apps.path())
    for problem in problems:
        log_of(context).warning(problem)
    with open_pool(registry) as pool, ledger.open() as store:
        done = register_pushes(
            store=store,
            workloads=workloads,
            notices=notices,
            registries=pool,
            operator=ledger.sensor_actor,
            any_host=bool(registry.resolved_url()),
        )
    known = set(context.instance.get_dynamic_partitions(candidates_partitions.name or "candidates"))
    run_requests: list[RunRequest] = []
    new_keys: list[str] = []
    events: list[Any] = []
    for item in done:
        if item.error is not None or item.event is None or item.workload is None:
            log_of(context).error(
                f"push {item.notice.repository}:{item.notice.tag}: not registered: {item.error}"
            )
            continue
        key = partition_key(item.workload.name, item.notice.digest)
        if key not in known:
            known.add(key)
            new_keys.append(key)
        if not item.created and has_run(context, key):
            log_of(context).info(f"{key}: already registered (seq {item.event.seq}) and run; no run")
            continue
        events.append(
            AssetMaterialization(
                asset_key=candidate.key,
                partition=key,
                description=f"registered by {PUSH_NAME} from a push of tag {item.notice.tag}",
                metadata=ledger_metadata(
                    item.event.payload,
                    [item.event],
                    digest=item.notice.digest,
                    image=str(item.event.payload.get("image") or ""),
                ),
            )
        )
        run_requests.append(
            RunRequest(
                partition_key=key,
                run_key=f"{key}:stage1",
                tags={
                    "railiance/workload": item.workload.name,
                    "railiance/digest": item.notice.digest,
                    "railiance/tag": item.notice.tag or "",
                    "railiance/source": "webhook",
                },
            )
        )
    return SensorResult(
        run_requests=run_requests,
        skip_reason=None if run_requests else f"{len(notices)} notification(s), nothing new to register",
        cursor=dump_cursor(notices[-1].seq),
        dynamic_partitions_requests=[candidates_partitions.build_add_request(new_keys)] if new_keys else None,
        asset_events=events,
    )
