"""The candidate partitions and the ``candidate`` asset, plus the helpers every stage asset shares.

One ``DynamicPartitionsDefinition(name="candidates")``: a partition per candidate artifact, keyed
``<workload>@<first 12 hex of the digest>``. The full digest lives in the ledger, which resolves a
key (``projections.resolve_partition_key``) and refuses an ambiguous one.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
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
    for k, v in (extra or {}).items():
        meta[k] = v if not isinstance(v, (dict, list)) else MetadataValue.json(redact_value(v))
    return meta


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
