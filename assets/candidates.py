"""The candidate partitions and the ``candidate`` asset, plus the helpers every stage asset shares.

One ``DynamicPartitionsDefinition(name="candidates")``: a partition per candidate artifact, keyed
``<workload>@<first 12 hex of the digest>``. The full digest lives in the ledger, which resolves a
key (``projections.resolve_partition_key``) and refuses an ambiguous one.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.resources import AppsResource, LedgerResource, log_of
from railiance_ledger.domain.events import RecordedEvent
from railiance_ledger.ledger.store import EventStore
from railiance_ledger.lifecycle.workloads import DeclaredWorkload

candidates_partitions = DynamicPartitionsDefinition(name="candidates")
"""One partition per candidate: ``<workload>@<first 12 hex of the digest>``."""

GROUP = "railiance"


def workload_of(partition_key: str) -> str:
    """The workload part of a partition key (``hello-web@0123456789ab`` -> ``hello-web``)."""
    workload, sep, _short = partition_key.rpartition("@")
    if not sep or not workload:
        raise Failure(description=f"partition key {partition_key!r} is not of the form <workload>@<12 hex>")
    return workload


@dataclass(frozen=True)
class Target:
    """The candidate a run works on: its workload's declaration, its digest and pinned image."""

    key: str
    workload: DeclaredWorkload
    digest: str

    @property
    def image(self) -> str:
        """``image.repository@digest``: the candidate pinned by digest."""
        return f"{self.workload.repository}@{self.digest}"


def resolve_digest(store: EventStore, key: str) -> str:
    """The full digest behind ``key`` (the ledger refuses unknown and ambiguous keys): a ``Failure``
    otherwise."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.ledger.projections import resolve_partition_key

    try:
        return resolve_partition_key(store, key)
    except RailianceError as exc:
        raise Failure(description=str(exc)) from exc


def resolve_target(store: EventStore, apps: AppsResource, key: str) -> Target:
    """Declaration and digest of the candidate ``key``, or a ``Failure`` that says what is missing."""
    from railiance_ledger.errors import RailianceError
    from railiance_ledger.lifecycle.workloads import find_workload

    digest = resolve_digest(store, key)
    try:
        workload = find_workload(apps.path(), workload_of(key))
    except RailianceError as exc:
        raise Failure(description=str(exc)) from exc
    return Target(key=key, workload=workload, digest=digest)


def check_candidate_matches(key: str, digest: str, named: str | None) -> None:
    """When the run config names a candidate (partition key or digest), it must be this partition's."""
    if not named:
        return
    named = named.strip()
    if named in (key, digest) or (
        named.startswith("sha256:") and digest.startswith(named) and len(named) >= 19
    ):
        return
    raise Failure(
        description=(
            f"the run config names candidate {named!r} but the run's partition is {key} ({digest}); "
            "refusing to act on a different candidate than the one named"
        )
    )


def ledger_metadata(
    document: Mapping[str, Any] | None,
    events: Iterable[RecordedEvent],
    *,
    digest: str,
    image: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Materialization metadata: the redacted document, the ledger seq and hash of the last event,
    every seq this step appended (``ledger_seqs``: the mirror sensor skips those) and the digest."""
    from railiance_ledger.domain.redaction import redact_value

    appended = list(events)
    doc = redact_value(dict(document)) if document is not None else None
    meta: dict[str, Any] = {"digest": MetadataValue.text(digest)}
    if image:
        meta["image"] = MetadataValue.text(image)
    if doc is not None:
        meta["document"] = MetadataValue.json(doc)
        if doc.get("status"):
            meta["status"] = MetadataValue.text(str(doc["status"]))
    ledger = (doc or {}).get("ledger") or {}
    seq = ledger.get("seq") if isinstance(ledger, Mapping) else None
    hash_ = ledger.get("hash") if isinstance(ledger, Mapping) else None
    if appended:
        seq, hash_ = seq or appended[-1].seq, hash_ or appended[-1].hash
    if seq is not None:
        meta["ledger_seq"] = MetadataValue.int(int(seq))
    if hash_:
        meta["ledger_hash"] = MetadataValue.text(str(hash_))
    meta["ledger_seqs"] = MetadataValue.text(",".join(str(e.seq) for e in appended))
    if appended:
        meta.update(top_level(next((e for e in appended if e.kind == "approval.granted"), appended[-1])))
    for k, v in (extra or {}).items():
        meta[k] = v if not isinstance(v, (dict, list)) else MetadataValue.json(redact_value(v))
    return meta


def top_level(ev: RecordedEvent) -> dict[str, Any]:
    """What an operator scans for, as top-level metadata of the Dagster event reporting ``ev``: when the
    ledger recorded it (``recorded_at``, also as a timestamp: Dagster stamps its own events with its own
    clock and offers no way to set it), who acted (``operator``), who approved (``approved_by``) and why
    (``reason``)."""
    from datetime import datetime

    from railiance_ledger.domain.redaction import redact

    meta: dict[str, Any] = {
        "recorded_at": MetadataValue.text(ev.recorded_at),
        "recorded_at_ts": MetadataValue.timestamp(datetime.fromisoformat(ev.recorded_at)),
        "operator": MetadataValue.text(str(ev.payload.get("operator") or ev.actor)),
    }
    if ev.kind == "approval.granted":
        meta["approved_by"] = MetadataValue.text(str(ev.payload.get("operator") or ev.actor))
        signed = ev.payload.get("signature")
        if isinstance(signed, dict) and signed.get("principal"):
            meta["approved_by"] = MetadataValue.text(f"{signed['principal']} (signed)")
    reason = ev.payload.get("reason") or ev.payload.get("symptom")
    if reason:
        meta["reason"] = MetadataValue.text(redact(str(reason)))
    return meta


def stage_failed(document: Mapping[str, Any] | None) -> str | None:
    """Why a stage's outcome is a failure (its document reports ``fail``, or it was rolled back), or None."""
    if not document:
        return None
    checks = [c for c in document.get("checks") or [] if isinstance(c, Mapping)]
    failed = [
        f"{c.get('name')}: {c.get('reason') or c.get('status')}" for c in checks if c.get("status") == "fail"
    ]
    if document.get("status") == "fail" or document.get("rolled_back"):
        return "; ".join(failed) or str(document.get("reason") or document.get("status") or "rolled back")
    return None


def check_evaluations(
    asset_key: AssetKey, key: str, document: Mapping[str, Any], names: Iterable[str], seq: int | None
) -> list[AssetCheckEvaluation]:
    """One evaluation per gate ``names`` from a stage-result document (pass and waived pass; else red)."""
    from railiance_ledger.domain.redaction import redact

    checks = {str(c.get("name")): c for c in document.get("checks") or [] if isinstance(c, Mapping)}
    out = []
    for name in names:
        c = checks.get(name)
        status = str(c.get("status")) if c else "missing"
        reason = redact(str(c.get("reason") or "")) if c else "not reported"
        meta: dict[str, Any] = {"status": MetadataValue.text(status), "reason": MetadataValue.text(reason)}
        if seq is not None:
            meta["ledger_seq"] = MetadataValue.int(seq)
        out.append(
            AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=check_name_of(name),
                passed=status in ("pass", "waived"),
                severity=AssetCheckSeverity.ERROR,
                description=f"{status}: {reason}",
                partition=key,
                metadata=meta,
            )
        )
    return out


def check_name_of(gate: str) -> str:
    """The Dagster check name of a gate (``local_check:unit`` -> ``local_check_unit``)."""
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", gate)


NOT_ROLLED_BACK = "not_rolled_back"
"""The check that turns a stage red when a rollback later left its candidate."""


def rollback_of(history: Sequence[RecordedEvent], digest: str, stage: int) -> RecordedEvent | None:
    """The latest ``rollback.completed`` that left ``digest`` at ``stage`` (2: its canary, 3: production)."""
    for ev in reversed(history):
        if ev.kind == "rollback.completed" and ev.candidate == digest and (ev.stage or 3) == stage:
            return ev
    return None


def rollback_evaluation(asset_key: AssetKey, key: str, ev: RecordedEvent) -> AssetCheckEvaluation:
    """``not_rolled_back`` red on ``asset_key`` (the stage a ``rollback.completed`` left), with its reason."""
    from railiance_ledger.domain.redaction import redact

    reason = redact(str(ev.payload.get("reason") or ev.payload.get("symptom") or "no reason recorded"))
    return AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=NOT_ROLLED_BACK,
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        description=f"rolled back by {ev.actor} at {ev.recorded_at}: {reason}",
        partition=key,
        metadata={
            "reason": MetadataValue.text(reason),
            "operator": MetadataValue.text(ev.actor),
            "recorded_at": MetadataValue.text(ev.recorded_at),
            "final_stable": MetadataValue.text(str(ev.payload.get("final_stable") or "none")),
            "ledger_seq": MetadataValue.int(ev.seq),
        },
    )


def finish_stage(
    context: AssetExecutionContext,
    meta: dict[str, Any],
    document: Mapping[str, Any] | None,
    gates: Iterable[str],
) -> MaterializeResult:  # type: ignore[type-arg]
    """The stage asset's result: a materialization when the stage passed; when it failed (or was rolled
    back) the document is an observation, every gate of the asset is evaluated from it (red where it
    failed), and the step fails, so the partition is Failed, never a green "Materialized"."""
    why = stage_failed(document)
    if why is None:
        return MaterializeResult(metadata=meta)
    key = context.partition_key
    asset_key = context.asset_key
    context.log_event(AssetObservation(asset_key=asset_key, partition=key, metadata=meta))
    seq = meta.get("ledger_seq")
    seq_value = getattr(seq, "value", seq)
    for evaluation in check_evaluations(
        asset_key, key, document or {}, gates, int(seq_value) if seq_value is not None else None
    ):
        context.log_event(evaluation)
    raise Failure(description=f"{asset_key.to_user_string()} failed for {key}: {why}", metadata=meta)


@asset(
    partitions_def=candidates_partitions,
    group_name=GROUP,
    kinds={"oci"},
    description=(
        "A candidate artifact: an image named by immutable digest, registered in the ledger "
        "(candidate.registered) by the new-digest sensor or `railiance candidate add`. Materializing it "
        "reads the registration back from the ledger: digest, image, source revision, who registered it."
    ),
)
def candidate(
    context: AssetExecutionContext, ledger: LedgerResource, apps: AppsResource
) -> MaterializeResult:
    """The candidate's registration as the ledger recorded it (nothing is written)."""
    from railiance_ledger.lifecycle.candidates import find_registration

    key = context.partition_key
    with ledger.open() as store:
        digest = resolve_digest(store, key)
        reg = find_registration(store, workload_of(key), digest)
    if reg is None:  # resolve_partition_key found it, so this cannot happen short of a race
        raise Failure(description=f"no candidate.registered for {key}")
    log_of(context).info(
        f"{key}: {reg.payload.get('image')} registered by {reg.actor} at ledger seq {reg.seq}"
    )
    return MaterializeResult(
        metadata=ledger_metadata(
            reg.payload,
            [reg],
            digest=digest,
            image=str(reg.payload.get("image") or ""),
            extra={
                "registered_by": MetadataValue.text(reg.actor),
                "source": MetadataValue.text(str(reg.payload.get("source") or "")),
                "revision": MetadataValue.text(str(reg.payload.get("revision") or "(not recorded)")),
                "tag": MetadataValue.text(str(reg.payload.get("tag") or "")),
            },
        )
    )
