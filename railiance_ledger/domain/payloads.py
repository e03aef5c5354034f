"""Typed event payloads: one frozen, versioned model per event kind, with upcasters for older shapes.

Every ``EventKind`` has a payload model here (``MODELS``). The models name and type the keys the
lifecycle reads; other keys are kept (``extra="allow"``) because payloads also carry evidence a
human reads (the stage-result document, restore facts, read-backs). The store validates every
payload at append (``validate``): a known key with the wrong type is refused.

Versions follow the ``eventsourcing`` library's class versions: a payload written at version 1
carries no version key; a later version writes ``payload_version``. Reading goes through ``parse``,
which applies ``upcast_vN_vN+1`` functions in order until the payload is at the model's version, so
no reader ever sniffs keys of an older record. Upcasting never rewrites the stored event (the hash
chain covers it); it happens each time the payload is read.

Versions today:

- ``approval.revoked`` v2: the revoked approval is ``approval_id`` only. v1 records also wrote it
  under ``approval_event_id`` (and some ``approval``) for a second reader; the upcaster folds them.
- ``rollback.completed`` v2: ``candidate_fate`` is the machine-readable fate
  (``returned-to-stage1``, ``blocked``, ``abandoned``). v1 records may carry only the prose
  ``candidate_disposition``; the upcaster derives the fate from it, once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from railiance_ledger.domain.events import EventKind

__all__ = [
    "MODELS",
    "VERSION_KEY",
    "ApprovalGranted",
    "ApprovalRevoked",
    "CanarySample",
    "CandidateRegistered",
    "ExceptionEmergency",
    "InvalidPayload",
    "LeaseAcquired",
    "LeaseReleased",
    "NotePosted",
    "Payload",
    "PromotionCompleted",
    "RollbackCompleted",
    "RollbackDeferred",
    "RollbackIncomplete",
    "RollbackStarted",
    "RoutingChanged",
    "StageCompleted",
    "StageStarted",
    "WaiverGranted",
    "parse",
    "parse_as",
    "read_or_default",
    "validate",
]

VERSION_KEY = "payload_version"
"""The payload key that names its version; absent means version 1."""

CandidateRef = dict[str, Any] | str | None
"""How payloads name a candidate: ``{"digest", "image", "revision"}`` (or, in older ones, the digest)."""


class InvalidPayload(ValueError):
    """A payload does not match its kind's model; the message names the kind and the keys."""


class Payload(BaseModel):
    """Base of every payload model: frozen, extra keys kept, a kind and a version."""

    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)

    KIND: ClassVar[EventKind]
    VERSION: ClassVar[int] = 1
    UPCASTERS: ClassVar[tuple[Callable[[dict[str, Any]], dict[str, Any]], ...]] = ()
    """``UPCASTERS[i]`` turns a version ``i + 1`` payload into version ``i + 2``."""

    payload_version: int = Field(default=1, ge=1)

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload to store: set keys only, the version key from version 2 on."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data.pop(VERSION_KEY, None)
        if self.VERSION > 1:
            data[VERSION_KEY] = self.VERSION
        return data


# ------------------------------------------------------------------------------- kinds


class CandidateRegistered(Payload):
    """``candidate.registered``: the image by digest, where it came from, whether approval is required."""

    KIND = EventKind.CANDIDATE_REGISTERED
    image: str | None = None
    digest: str | None = None
    revision: str | None = None
    repository: str | None = None
    approval_required: bool | None = None
    """Older registrations did not record it: readers treat ``None`` as required (fail closed)."""
    platforms: dict[str, str] | None = None
    """An image index's platform manifests (``os/arch[/variant]`` -> digest), as the registry listed them."""
    revision_source: str | None = None
    """Where ``revision`` came from: ``image-label`` (the image's OCI revision label) or the CLI."""
    source_url: str | None = None
    """The image's ``org.opencontainers.image.source`` label, when it has one."""


class StageStarted(Payload):
    """``stage.started``: the plan of the stage (target, release, routing) as the stage records it."""

    KIND = EventKind.STAGE_STARTED
    stage: int | None = None
    phase: str | None = None


class StageCompleted(Payload):
    """``stage.completed``: the stage-result document (``railiance.stage-result/v1``)."""

    KIND = EventKind.STAGE_COMPLETED
    schema_: str | None = Field(default=None, alias="schema")
    stage: int | None = None
    status: Literal["pass", "fail"] | None = None
    """``pass`` or ``fail``; readers take anything but ``pass`` as a failure."""
    candidate: CandidateRef = None
    checks: list[dict[str, Any]] | None = None
    approval: dict[str, Any] | None = None

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, defer_build=True)

    @property
    def passed(self) -> bool:
        """True when the result passed."""
        return self.status == "pass"

    @staticmethod
    def passed_in(payload: Mapping[str, Any]) -> bool:
        """``passed`` without building the model: the one field folds read from every result.

        Stage-result documents are large and this document has one version; ``status`` was
        validated at append (``pass`` or ``fail``), and anything but ``pass`` is a failure.
        """
        return payload.get("status") == "pass"


class CanarySample(Payload):
    """``canary.sample``: one observation sample of the window."""

    KIND = EventKind.CANARY_SAMPLE


class ApprovalGranted(Payload):
    """``approval.granted``: a human approved one candidate for one stage."""

    KIND = EventKind.APPROVAL_GRANTED
    operator: str | None = None
    operator_explicit: bool | None = None
    """True when the identity was given explicitly (``--operator``, launchpad); absent in older records."""
    stage: int | None = None
    candidate: CandidateRef = None
    retrospective: bool = False
    covers_exceptions: list[str] = Field(default_factory=list)
    waived_gates: list[dict[str, Any]] = Field(default_factory=list)
    rollback_target: dict[str, Any] | None = None
    production_critical: bool | None = None
    approval_required: bool | None = None


def _revoked_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 wrote the revoked approval's id under ``approval_id`` and ``approval_event_id`` (or
    ``approval``); v2 keeps ``approval_id`` only."""
    out = dict(data)
    first = out.get("approval_id") or out.get("approval_event_id") or out.get("approval")
    out.pop("approval_event_id", None)
    if isinstance(out.get("approval"), str):
        out.pop("approval")
    if first is not None:
        out["approval_id"] = str(first)
    return out


class ApprovalRevoked(Payload):
    """``approval.revoked``: a human withdrew an approval (``approval_id``; none means the stage's latest)."""

    KIND = EventKind.APPROVAL_REVOKED
    VERSION = 2
    UPCASTERS = (_revoked_v1_to_v2,)
    workload: str | None = None
    approval_id: str | None = None
    approved_by: str | None = None
    operator: str | None = None
    operator_explicit: bool | None = None
    reason: str | None = None
    stage: int | None = None
    candidate: CandidateRef = None
    in_observation_window: bool | None = None
    observing_stage: int | None = None
    immediate_rollback: bool | None = None


class WaiverGranted(Payload):
    """``waiver.granted``: a human let one gate fail for one candidate and stage, with a reason."""

    KIND = EventKind.WAIVER_GRANTED
    gate: str | None = None
    reason: str | None = None
    operator: str | None = None
    operator_explicit: bool | None = None
    scope: dict[str, Any] | None = None
    """``{"gate", "candidate", "stage"}``: what exactly the waiver covers."""

    def scoped_gate(self) -> str:
        """The gate the waiver names (its scope's, else the top-level one); empty when none."""
        scope = self.scope or {}
        return str(scope.get("gate") or self.gate or "")

    def scoped_stage(self, envelope_stage: int | None) -> int | None:
        """The stage the waiver covers: its scope's, else the envelope's."""
        scope = self.scope or {}
        value = scope.get("stage", envelope_stage)
        return None if value is None else int(value)

    def scoped_candidate(self) -> str | None:
        """The candidate digest its scope names (``None`` when the scope does not say)."""
        value = (self.scope or {}).get("candidate")
        return None if value is None else str(value)


class ExceptionEmergency(Payload):
    """``exception.emergency``: an operator skipped a stage for one candidate, awaiting approval."""

    KIND = EventKind.EXCEPTION_EMERGENCY
    skip_stage: int | None = None
    operator: str | None = None
    operator_explicit: bool | None = None
    reason: str | None = None
    candidate: CandidateRef = None
    scope: dict[str, Any] | None = None


class RoutingChanged(Payload):
    """``routing.changed``: production or canary routing changed (what, and the read-back)."""

    KIND = EventKind.ROUTING_CHANGED
    action: str | None = None


class PromotionCompleted(Payload):
    """``promotion.completed``: the candidate became stable, with the facts a rollback restores."""

    KIND = EventKind.PROMOTION_COMPLETED
    digest: str | None = None
    image: str | None = None
    previous_stable: str | None = None


class RollbackStarted(Payload):
    """``rollback.started``: a rollback began, with its symptom and target."""

    KIND = EventKind.ROLLBACK_STARTED
    symptom: str | None = None


CandidateFate = Literal["returned-to-stage1", "blocked", "abandoned"]


def _rollback_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 records may name the fate only in prose (``candidate_disposition``: "returned to Stage 1")."""
    out = dict(data)
    if out.get("candidate_fate"):
        return out
    text = str(out.get("candidate_disposition") or "").lower()
    for known in ("blocked", "abandoned"):
        if known in text:
            out["candidate_fate"] = known
            return out
    if "stage 1" in text:
        out["candidate_fate"] = "returned-to-stage1"
    return out


class RollbackCompleted(Payload):
    """``rollback.completed``: the final stable, and the fate of the candidate rolled back."""

    KIND = EventKind.ROLLBACK_COMPLETED
    VERSION = 2
    UPCASTERS = (_rollback_v1_to_v2,)
    final_stable: str | None = None
    final_image: str | None = None
    image: str | None = None
    """Older records name the final stable's image here instead of ``final_image``."""
    restore: dict[str, Any] | None = None
    reason: str | None = None
    symptom: str | None = None
    candidate_fate: CandidateFate | None = None


class RollbackDeferred(Payload):
    """``rollback.deferred``: a human judged the rollback more dangerous than the incident."""

    KIND = EventKind.ROLLBACK_DEFERRED


class RollbackIncomplete(Payload):
    """``rollback.incomplete``: a rollback that could not finish, and what is left to do."""

    KIND = EventKind.ROLLBACK_INCOMPLETE
    reason: str | None = None
    failures: list[Any] | None = None
    remaining_cleanup: list[Any] | None = None


class LeaseAcquired(Payload):
    """``lease.acquired``: who holds the workload's lease, for which action, until when."""

    KIND = EventKind.LEASE_ACQUIRED
    holder: str | None = None
    action: str | None = None
    expires_at: str | None = None


class LeaseReleased(Payload):
    """``lease.released``: the lease an action held is given back."""

    KIND = EventKind.LEASE_RELEASED
    holder: str | None = None
    action: str | None = None
    lease_id: str | None = None
    """The ``lease.acquired`` event released."""


class NotePosted(Payload):
    """``note.posted``: a State Hub note was posted (or not) about another event."""

    KIND = EventKind.NOTE_POSTED
    ref_event_id: str | None = None
    ref_kind: str | None = None
    ref_seq: int | None = None
    delivered: bool | None = None
    note_id: str | None = None


MODELS: dict[EventKind, type[Payload]] = {
    model.KIND: model
    for model in (
        CandidateRegistered,
        StageStarted,
        StageCompleted,
        CanarySample,
        ApprovalGranted,
        ApprovalRevoked,
        WaiverGranted,
        ExceptionEmergency,
        RoutingChanged,
        PromotionCompleted,
        RollbackStarted,
        RollbackCompleted,
        RollbackDeferred,
        RollbackIncomplete,
        NotePosted,
        LeaseAcquired,
        LeaseReleased,
    )
}
"""The payload model of every event kind."""


def _upcast(model: type[Payload], payload: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    raw = data.get(VERSION_KEY, 1)
    version = raw if isinstance(raw, int) and not isinstance(raw, bool) else 1
    if version > model.VERSION:
        raise InvalidPayload(
            f"{model.KIND.value} payload version {version} is newer than this program reads ({model.VERSION})"
        )
    while version < model.VERSION:
        data = model.UPCASTERS[version - 1](data)
        version += 1
    data[VERSION_KEY] = version
    return data


def parse(kind: str | EventKind, payload: Mapping[str, Any]) -> Payload:
    """The typed payload of an event of ``kind``, upcast to the current version.

    Raises ``InvalidPayload`` when it does not match the model (or ``kind`` is unknown).
    """
    try:
        model = MODELS[EventKind(kind)]
    except ValueError as exc:
        raise InvalidPayload(f"unknown event kind {kind!r}") from exc
    try:
        return model.model_validate(_upcast(model, payload))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(payload)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidPayload(f"{model.KIND.value} payload invalid: {problems}") from exc


P = TypeVar("P", bound=Payload)


def parse_as(model: type[P], payload: Mapping[str, Any]) -> P:
    """``parse`` for a caller that knows the kind: the typed payload as ``model``."""
    parsed = parse(model.KIND, payload)
    assert isinstance(parsed, model)
    return parsed


def read_or_default(model: type[P], payload: Mapping[str, Any]) -> P:
    """``parse_as``, or the model's defaults when a record (older than validation at append) does
    not parse: for readers whose defaults fail closed (no approval, no fate, no final stable)."""
    try:
        return parse_as(model, payload)
    except InvalidPayload:
        return model.model_construct()


def validate(kind: str | EventKind, payload: Mapping[str, Any]) -> None:
    """Raise ``InvalidPayload`` unless ``payload`` is a valid payload of ``kind`` (any known version)."""
    parse(kind, payload)
