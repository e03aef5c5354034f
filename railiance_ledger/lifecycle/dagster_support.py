"""What the Dagster code location asks the lifecycle: declared workloads, registry polls, gate and
guard decisions. No dagster import here (the import-linter contract forbids it); the ``assets/`` and
``sensors/`` packages turn these answers into materializations, run requests and skip reasons.

- ``discover_workloads``: every ``*/railiance/app.toml`` under an apps directory, loaded, with the
  problems of the ones that do not load (a broken declaration never hides the others).
- ``poll_registry``: the current ``tag -> digest`` of every declared workload's watched tags,
  concurrently; a registry failure is an answer (``TagPoll.error``), never an exception.
- ``register_polled``: register a polled digest as a candidate (``source="sensor"``, idempotent).
- ``next_stage_requests``: from new ledger events, which candidate may start which next stage now,
  and which must wait (and why): Stage 1 pass -> canary, canary deployed -> observe, canary
  accepted -> promote; production-critical workloads wait for an ``approval.granted``.
- ``rollback_conditions``: immediate-rollback conditions that appeared during an open Stage 2
  observation window (an approval revoked, a canary sample naming an immediate-rollback symptom).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain import canary as dc
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.errors import AdapterError, AdapterNotFound, InvalidInput, RailianceError
from railiance_ledger.ledger.projections import partition_key

if TYPE_CHECKING:
    from railiance_ledger.adapters.registry import Registry
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = [
    "DeclaredWorkload",
    "HeldStage",
    "NextStage",
    "RollbackCondition",
    "TagPoll",
    "discover_workloads",
    "find_workload",
    "next_stage_requests",
    "open_canary",
    "poll_registry",
    "register_polled",
    "registry_path",
    "rollback_conditions",
]

_HOST_RE = re.compile(r"[.:]|^localhost$")


# ------------------------------------------------------------------------------------ declared workloads


@dataclass(frozen=True)
class DeclaredWorkload:
    """One workload declared under the apps directory: where it lives and what the sensor watches."""

    app_dir: Path
    decl: Declaration

    @property
    def name(self) -> str:
        """The workload name (the ledger stream and partition-key prefix)."""
        return self.decl.workload.name

    @property
    def repository(self) -> str:
        """The declared ``image.repository`` (with its registry host)."""
        return str(self.decl.image.repository)

    @property
    def repository_path(self) -> str:
        """The repository path inside the registry: ``image.repository`` minus the registry host."""
        return registry_path(self.repository)

    @property
    def tag_pattern(self) -> str | None:
        """The declared ``image.tag_pattern`` (a regular expression), or ``None`` for every tag."""
        pattern = getattr(self.decl.image, "tag_pattern", None)
        return str(pattern) if pattern else None


def registry_path(repository: str) -> str:
    """``registry.local/railiance/hello-web`` -> ``railiance/hello-web``.

    The first component is a registry host when it contains a ``.`` or a ``:`` or is ``localhost``
    (the rule container tools use); otherwise the whole reference is the path.
    """
    first, sep, rest = repository.partition("/")
    if sep and _HOST_RE.search(first):
        return rest
    return repository


_DECLARATIONS: dict[Path, tuple[tuple[int, int, int], Declaration]] = {}
"""Loaded declarations by app.toml path, reused while the file is unchanged (sensors tick often)."""


def discover_workloads(apps_dir: Path) -> tuple[list[DeclaredWorkload], list[str]]:
    """Every loadable ``<apps_dir>/*/railiance/app.toml``, sorted by directory, and the problems of the rest.

    Two directories declaring the same workload name are a problem: the second one is left out.
    A declaration is parsed again only when its file changed (size, mtime, inode).
    """
    from railiance_ledger.declaration.loader import load_declaration

    found: list[DeclaredWorkload] = []
    problems: list[str] = []
    names: dict[str, Path] = {}
    if not apps_dir.is_dir():
        return [], [f"apps directory {apps_dir} does not exist"]
    for toml in sorted(apps_dir.glob("*/railiance/app.toml")):
        app_dir = toml.parent.parent
        try:
            st = toml.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = _DECLARATIONS.get(toml)
            if cached is not None and cached[0] == stamp:
                decl = cached[1]
            else:
                decl = load_declaration(app_dir)
                _DECLARATIONS[toml] = (stamp, decl)
        except RailianceError as exc:
            problems.append(f"{app_dir}: {exc.message}")
            continue
        except OSError as exc:
            problems.append(f"{app_dir}: {exc}")
            continue
        name = decl.workload.name
        if name in names:
            problems.append(f"{app_dir}: workload {name!r} is already declared by {names[name]}; ignored")
            continue
        names[name] = app_dir
        found.append(DeclaredWorkload(app_dir=app_dir, decl=decl))
    return found, problems


def find_workload(apps_dir: Path, workload: str) -> DeclaredWorkload:
    """The declared workload named ``workload``, else ``InvalidInput`` naming the apps directory."""
    found, problems = discover_workloads(apps_dir)
    for w in found:
        if w.name == workload:
            return w
    extra = f"; declarations that did not load: {'; '.join(problems)}" if problems else ""
    raise InvalidInput(
        f"workload {workload!r} is not declared under {apps_dir}{extra}",
        hint="set RAILIANCE_APPS_DIR (or the apps resource's apps_dir) to the directory holding <app>/railiance/app.toml",
    )


# ------------------------------------------------------------------------------------ registry polling


@dataclass(frozen=True)
class TagPoll:
    """The watched tags of one workload as the registry answered, or why it could not be asked."""

    workload: str
    tags: dict[str, str]
    error: str | None = None
    unavailable: bool = False
    """True when the registry could not be reached (connection refused, timeout, 5xx)."""

    @property
    def ok(self) -> bool:
        """True when the registry answered."""
        return self.error is None


def _poll_one(registry: Registry, workload: DeclaredWorkload) -> TagPoll:
    from railiance_ledger.errors import AdapterTimeout, AdapterUnavailable

    try:
        tags = registry.tags_with_digests(repository=workload.repository_path, pattern=workload.tag_pattern)
    except AdapterNotFound:
        return TagPoll(workload=workload.name, tags={})  # nothing pushed yet
    except (AdapterUnavailable, AdapterTimeout) as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc), unavailable=True)
    except RailianceError as exc:
        return TagPoll(workload=workload.name, tags={}, error=str(exc))
    return TagPoll(workload=workload.name, tags=dict(tags))


def poll_registry(
    registry: Registry, workloads: Sequence[DeclaredWorkload], *, max_workers: int = 16
) -> list[TagPoll]:
    """``tag -> digest`` of every workload's watched tags, asked concurrently (bounded by ``max_workers``).

    The order of the result follows ``workloads``. Failures are answers, not exceptions.
    """
    if not workloads:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(workloads))), thread_name_prefix="registry-poll"
    ) as pool:
        return list(pool.map(lambda w: _poll_one(registry, w), workloads))


def register_polled(
    *, store: EventStore, workload: DeclaredWorkload, tag: str, digest: str, operator: str
) -> tuple[RecordedEvent, bool]:
    """Register ``image.repository@digest`` (seen under ``tag``) as a candidate; ``(event, created)``.

    Idempotent (``register_candidate``): a digest already registered, by the CLI or another tag,
    returns its existing event and ``created=False``. The registration carries no source revision:
    the registry does not say which commit built the image (Stage 1 binds it to the work tree).
    """
    from railiance_ledger.lifecycle.candidates import register_candidate

    return register_candidate(
        store=store,
        decl=workload.decl,
        image=f"{workload.repository}@{digest}",
        operator=operator,
        revision=None,
        source="sensor",
        extra={"tag": tag},
    )


# ------------------------------------------------------------------------------------ stage gates


@dataclass(frozen=True)
class NextStage:
    """A candidate whose upstream stage passed (for this digest) and which policy lets continue."""

    workload: str
    digest: str
    job: str
    """``canary``, ``observe`` or ``promote``."""
    reason: str
    trigger_seq: int
    run_key: str

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


@dataclass(frozen=True)
class HeldStage:
    """A candidate that could continue but must wait (an approval, a service not available yet)."""

    workload: str
    digest: str
    job: str
    reason: str
    trigger_seq: int

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


def _latest(
    history: Sequence[RecordedEvent], digest: str, kind: EventKind, stage: int
) -> RecordedEvent | None:
    found = None
    for ev in history:
        if ev.candidate == digest and ev.kind == kind and ev.stage == stage:
            found = ev
    return found


def open_canary(history: Sequence[RecordedEvent], digest: str | None = None) -> RecordedEvent | None:
    """The Stage 2 ``stage.started`` (of ``digest`` when given) whose window is still open, or ``None``.

    A window closes with that candidate's Stage 2 ``stage.completed`` or a ``rollback.completed``.
    """
    current: RecordedEvent | None = None
    for ev in history:
        if digest is not None and ev.candidate not in (digest, None):
            continue
        if ev.kind == EventKind.STAGE_STARTED and ev.stage == 2:
            current = ev
        elif current is None or ev.candidate not in (current.candidate, None):
            continue
        elif (
            ev.kind == EventKind.STAGE_COMPLETED and ev.stage == 2
        ) or ev.kind == EventKind.ROLLBACK_COMPLETED:
            current = None
    return current


def _approved(store: EventStore, workload: str, digest: str, stage: int) -> bool:
    from railiance_ledger.lifecycle.approvals import approval_state

    return approval_state(store, workload, digest, stage).granted


def next_stage_requests(
    store: EventStore,
    events: Iterable[RecordedEvent],
    decls: Mapping[str, Declaration],
    *,
    promote_available: bool = True,
) -> tuple[list[NextStage], list[HeldStage]]:
    """Which candidates touched by ``events`` may start their next stage now, and which must wait.

    Reads each touched candidate's history from the ledger (the events only say *which* candidates to
    look at), so the answer never depends on where the cursor stopped:

    - Stage 1 passed and Stage 2 never started -> ``canary``; a production-critical workload waits
      for an ``approval.granted`` of that digest for stage 2.
    - a Stage 2 canary deployed and its window still open -> ``observe`` (one run per deployment).
    - Stage 2 passed (canary accepted) and Stage 3 never started -> ``promote``; production-critical
      waits for a stage 3 approval; held while the Stage 3 service is not available.

    Workloads not in ``decls`` (no declaration under the apps directory) are held with that reason.
    """
    touched: dict[tuple[str, str], int] = {}
    for ev in events:
        if ev.candidate and ev.kind in (
            EventKind.STAGE_COMPLETED,
            EventKind.STAGE_STARTED,
            EventKind.APPROVAL_GRANTED,
            EventKind.EXCEPTION_EMERGENCY,
        ):
            touched[(ev.stream, ev.candidate)] = ev.seq
    go: list[NextStage] = []
    held: list[HeldStage] = []
    histories: dict[str, list[RecordedEvent]] = {}
    for (workload, digest), seq in touched.items():
        history = histories.setdefault(workload, store.read_stream(workload))
        decl = decls.get(workload)
        key = partition_key(workload, digest)
        s1 = _latest(history, digest, EventKind.STAGE_COMPLETED, 1)
        s2_started = _latest(history, digest, EventKind.STAGE_STARTED, 2)
        s2_done = _latest(history, digest, EventKind.STAGE_COMPLETED, 2)
        s3_started = _latest(history, digest, EventKind.STAGE_STARTED, 3)
        if decl is None:
            held.append(
                HeldStage(workload, digest, "-", f"{workload} is not declared under the apps directory", seq)
            )
            continue
        critical = bool(decl.production_critical)
        canary = open_canary(history, digest)
        if canary is not None:
            go.append(
                NextStage(
                    workload,
                    digest,
                    "observe",
                    f"canary deployed at seq {canary.seq}",
                    seq,
                    f"{key}:observe:{canary.seq}",
                )
            )
        elif s1 is not None and s1.payload.get("status") == "pass" and s2_started is None and s2_done is None:
            if critical and not _approved(store, workload, digest, 2):
                held.append(
                    HeldStage(
                        workload,
                        digest,
                        "canary",
                        "production-critical: waiting for an approval.granted for stage 2",
                        seq,
                    )
                )
            else:
                why = "stage 2 approved" if critical else "not production-critical"
                go.append(
                    NextStage(
                        workload,
                        digest,
                        "canary",
                        f"Stage 1 passed at seq {s1.seq}; {why}",
                        seq,
                        f"{key}:canary",
                    )
                )
        elif s2_done is not None and s2_done.payload.get("status") == "pass" and s3_started is None:
            if critical and not _approved(store, workload, digest, 3):
                held.append(
                    HeldStage(
                        workload,
                        digest,
                        "promote",
                        "production-critical: waiting for an approval.granted for stage 3",
                        seq,
                    )
                )
            elif not promote_available:
                held.append(
                    HeldStage(workload, digest, "promote", "the Stage 3 service is not available yet", seq)
                )
            else:
                go.append(
                    NextStage(
                        workload,
                        digest,
                        "promote",
                        f"canary accepted at seq {s2_done.seq}",
                        seq,
                        f"{key}:promote",
                    )
                )
    return go, held


# ------------------------------------------------------------------------------------ canary guard


@dataclass(frozen=True)
class RollbackCondition:
    """An immediate-rollback condition seen during an open Stage 2 observation window."""

    workload: str
    digest: str
    reason: str
    seq: int

    @property
    def partition_key(self) -> str:
        """The candidate's partition key."""
        return partition_key(self.workload, self.digest)


def _sample_symptom(payload: Mapping[str, Any], decl: Declaration | None) -> str | None:
    flagged = payload.get("immediate_rollback")
    if flagged:
        return str(payload.get("symptom") or payload.get("immediate_rollback_reason") or flagged)
    if payload.get("immediate_rollback_reason"):
        return str(payload["immediate_rollback_reason"])
    if decl is None:
        return None
    try:
        sample = dc.CanarySample.from_payload(payload)
        thresholds = dc.Thresholds.from_mapping(decl.canary.thresholds.model_dump())
    except (KeyError, TypeError, ValueError):
        return None
    return dc.immediate_rollback_reason(sample, thresholds)


def rollback_conditions(
    store: EventStore, events: Iterable[RecordedEvent], decls: Mapping[str, Declaration]
) -> list[RollbackCondition]:
    """Immediate-rollback conditions among ``events`` whose candidate's canary window is still open.

    An ``approval.revoked`` (stage 2 or unstaged) of the candidate being observed, or a
    ``canary.sample`` naming an immediate-rollback symptom (``domain.canary.immediate_rollback_reason``
    against the declared thresholds, or an explicit ``immediate_rollback`` flag in its payload).
    One condition per candidate (the first seen).
    """
    out: dict[tuple[str, str], RollbackCondition] = {}
    histories: dict[str, list[RecordedEvent]] = {}
    for ev in events:
        if not ev.candidate or (ev.stream, ev.candidate) in out:
            continue
        reason: str | None = None
        if ev.kind == EventKind.APPROVAL_REVOKED and ev.stage in (None, 2):
            reason = f"approval revoked by {ev.actor} during the observation window (seq {ev.seq})"
        elif ev.kind == EventKind.CANARY_SAMPLE:
            symptom = _sample_symptom(ev.payload, decls.get(ev.stream))
            if symptom:
                reason = f"canary sample seq {ev.seq}: {symptom}"
        if reason is None:
            continue
        history = histories.setdefault(ev.stream, store.read_stream(ev.stream))
        if open_canary(history, ev.candidate) is None:
            continue  # the window already closed (observe rolled back itself, or it completed)
        out[(ev.stream, ev.candidate)] = RollbackCondition(ev.stream, ev.candidate, reason, ev.seq)
    return list(out.values())


def describe_error(exc: BaseException) -> str:
    """One line for an exception: our errors' message (with hint), else type and text."""
    if isinstance(exc, (RailianceError, AdapterError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
