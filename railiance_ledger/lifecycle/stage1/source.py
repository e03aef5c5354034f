"""Stage 1 gates about where the candidate comes from: ``source_revision_identified``,
``candidate_immutable``, ``artifact_deterministic`` and ``artifact_traceable``.

Provenance (``read_artifact``): the candidate's image configuration is read from the registry its
reference names; ``artifact_traceable`` compares the ``org.opencontainers.image.revision`` label
with the work tree's commit. With ``revision_policy = "image-label"`` the label is required: missing,
different, or unreadable (registry unreachable, none configured) fails the gate (waivable). With
``git-commit`` a label that names another commit fails it; no label leaves the work tree's binding.
``check_platform`` (part of ``candidate_immutable``): the declared ``image.platform`` is among an
index's platform manifests, or is the platform of a single-platform image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from railiance_ledger.adapters.git import GitRepo
from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import Check, FailureKind
from railiance_ledger.errors import AdapterError, InvalidInput
from railiance_ledger.lifecycle.candidates import register_candidate, select_candidate
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.registry_poll import ArtifactFacts, describe_digest
from railiance_ledger.lifecycle.stage1.context import STAGE, Stage1Context

if TYPE_CHECKING:
    from railiance_ledger.lifecycle.registry_poll import RegistryLookup

NOT_READ = ArtifactFacts(error="no registry was consulted (none configured for this run)")
"""The artifact facts of a run that had no registry to read them from."""


def read_artifact(ctx: Stage1Context, registries: RegistryLookup | None) -> ArtifactFacts:
    """What the registry says about the candidate (labels, platforms); failures are answers."""
    from railiance_ledger.domain.image_ref import ReferenceError, parse_reference

    if ctx.run.digest is None or not ctx.run.image:
        return ArtifactFacts(error="no candidate digest")
    if registries is None:
        return NOT_READ
    try:
        ref = parse_reference(ctx.run.image)
        registry = registries.for_reference(ref)
    except (ReferenceError, InvalidInput) as exc:
        return ArtifactFacts(error=f"cannot name the candidate's registry: {exc}")
    except AdapterError as exc:
        return ArtifactFacts(error=str(exc))
    platform = getattr(ctx.decl.image, "platform", None)
    return describe_digest(registry, repository=ref.path, digest=ctx.run.digest, platform=platform)


def check_platform(ctx: Stage1Context, candidate: Check, artifact: ArtifactFacts) -> Check:
    """``candidate_immutable`` with the declared platform checked: an index must list it, a single image
    must be it. Without a declared platform, or a failed ``candidate``, ``candidate`` is returned."""
    declared = getattr(ctx.decl.image, "platform", None)
    if artifact.platforms:
        listed = ", ".join(sorted(artifact.platforms))
        candidate = candidate.model_copy(
            update={
                "evidence": [
                    *candidate.evidence,
                    make_evidence(
                        "summary", "platforms", f"image index of {len(artifact.platforms)}: {listed}"
                    ),
                ]
            }
        )
    if not declared or candidate.status != "pass":
        return candidate
    if artifact.error is not None:
        return make_check(
            candidate.name,
            False,
            f"cannot check the declared platform {declared}: {artifact.error}",
            failure=FailureKind.TECHNICAL,
            evidence=list(candidate.evidence),
        )
    if artifact.platforms:
        if declared in artifact.platforms:
            return make_check(
                candidate.name,
                True,
                f"{candidate.reason}; the image index has the declared platform {declared}",
                evidence=list(candidate.evidence),
            )
        return make_check(
            candidate.name,
            False,
            f"the image index has no {declared} manifest (it has {', '.join(sorted(artifact.platforms))})",
            evidence=list(candidate.evidence),
        )
    if artifact.platform == declared or artifact.platform.startswith(declared + "/"):
        return make_check(
            candidate.name,
            True,
            f"{candidate.reason}; a single-platform image for the declared {declared}",
            evidence=list(candidate.evidence),
        )
    return make_check(
        candidate.name,
        False,
        f"the image is for {artifact.platform or 'an unknown platform'}, not the declared {declared}",
        evidence=list(candidate.evidence),
    )


def check_artifact_traceable(ctx: Stage1Context, artifact: ArtifactFacts) -> Check:
    """``artifact_traceable``: the image's revision label names the work tree's commit (required under
    ``revision_policy = "image-label"``; under ``git-commit`` only a contradicting label fails)."""
    from railiance_ledger.lifecycle.registry_poll import REVISION_LABEL

    name = "artifact_traceable"
    policy = getattr(getattr(ctx.decl, "source", None), "revision_policy", "git-commit")
    required = policy == "image-label"
    if ctx.run.digest is None:
        artifact = ArtifactFacts(error="no candidate digest")
    if artifact.error is not None:
        if not required:
            return make_check(
                name,
                True,
                f"revision_policy = git-commit: traced by the work tree's commit "
                f"(image labels not read: {artifact.error})",
            )
        return make_check(
            name,
            False,
            f"cannot read the image's {REVISION_LABEL} label ({artifact.error}): "
            "the artifact cannot be traced to source",
            failure=FailureKind.TECHNICAL,
        )
    label = artifact.revision
    source_url = artifact.source_url
    evidence = [make_evidence("commit", label or "(none)", f"{REVISION_LABEL} of {ctx.run.digest}")]
    if source_url:
        evidence.append(make_evidence("summary", source_url, "org.opencontainers.image.source"))
    if label is None:
        if not required:
            return make_check(
                name,
                True,
                "revision_policy = git-commit: traced by the work tree's commit "
                "(the image has no revision label)",
                evidence=evidence,
            )
        return make_check(
            name,
            False,
            f"the image has no {REVISION_LABEL} label: the artifact cannot be traced to source "
            "(revision_policy = image-label); build it with the label, or waive this gate",
            evidence=evidence,
        )
    if ctx.run.revision is not None and label.strip().lower() != ctx.run.revision.lower():
        return make_check(
            name,
            False,
            f"the image was built from revision {label[:40]}, but the work tree is at {ctx.run.revision}",
            evidence=[*evidence, make_evidence("commit", ctx.run.revision, "work tree")],
        )
    if ctx.run.revision is None:
        return make_check(
            name,
            False,
            f"the image names revision {label[:40]}, but the work tree's revision is unknown",
            failure=FailureKind.TECHNICAL,
            evidence=evidence,
        )
    return make_check(
        name,
        True,
        f"the image's {REVISION_LABEL} label is the work tree's commit {ctx.run.revision[:12]}",
        evidence=evidence,
    )


def check_source_revision(ctx: Stage1Context, *, waiver_note: str = "") -> Check:
    """``source_revision_identified``: the work tree is at a commit and exactly that commit."""
    name = "source_revision_identified"
    source_path = getattr(getattr(ctx.decl, "source", None), "path", None) or ".."
    tree = ctx.decl.resolve(source_path)
    repo = GitRepo(tree)
    try:
        ctx.run.revision = repo.head()
        changed = repo.changed()
        untracked = repo.untracked()
    except AdapterError as exc:
        return make_check(
            name,
            False,
            f"cannot identify the source revision: {exc.reason}",
            failure=FailureKind.TECHNICAL,
            evidence=[make_evidence("summary", str(source_path), exc.reason)],
        )
    evidence = [make_evidence("commit", ctx.run.revision, f"HEAD of {source_path}")]
    if changed or untracked:
        files = (changed + untracked)[:10]
        evidence.append(
            make_evidence(
                "summary",
                "work-tree",
                f"{len(changed)} modified, {len(untracked)} untracked: " + ", ".join(files),
            )
        )
        return make_check(
            name,
            False,
            f"work tree differs from commit {ctx.run.revision[:12]}: {len(changed)} modified and "
            f"{len(untracked)} untracked file(s); commit them (or waive this gate)",
            evidence=evidence,
        )
    return make_check(name, True, f"clean work tree at commit {ctx.run.revision}", evidence=evidence)


def check_candidate_immutable(ctx: Stage1Context, *, image: str | None) -> tuple[Check, list[RecordedEvent]]:
    """``candidate_immutable``: name the candidate by digest; register a given image if needed.

    Names it on ``ctx.run`` (digest, image, registration). Returns the check and any event
    appended (a new ``candidate.registered``).
    """
    name = "candidate_immutable"
    run = ctx.run
    workload = run.workload
    appended: list[RecordedEvent] = []
    if image:
        try:
            ref = parse_image_ref(image)
        except DigestFormatError as exc:
            run.image = image
            return make_check(
                name,
                False,
                f"refused: {exc}",
                evidence=[make_evidence("summary", "image", "not pinned by digest")],
            ), []
        run.digest, run.image = ref.digest, ref.pinned
        reg = next(
            (
                ev
                for ev in run.history
                if ev.kind == EventKind.CANDIDATE_REGISTERED and ev.candidate == ref.digest
            ),
            None,
        )
        if reg is None:
            try:
                reg, created = register_candidate(
                    store=run.store, decl=run.decl, image=image, operator=run.operator, revision=run.revision
                )
            except InvalidInput as exc:
                run.digest = None
                return make_check(name, False, f"cannot register {ref.pinned}: {exc.message}"), []
            if created:
                appended.append(reg)
        run.registration = reg
    else:
        newest = select_candidate(run.history, workload, repository=run.decl.image.repository)
        if newest is None:
            return make_check(
                name,
                False,
                f"no candidate is registered for {workload} and no --image was given: "
                "a Stage 2 candidate must be "
                "named by immutable digest (`railiance candidate add APP_DIR --image REF@sha256:...`)",
            ), []
        run.registration, run.digest, run.image = newest.registration, newest.digest, newest.image
        try:
            parse_image_ref(run.image)
        except DigestFormatError as exc:
            run.digest = None
            return make_check(name, False, f"registered candidate is not pinned by digest: {exc}"), []
    assert run.registration is not None
    return make_check(
        name,
        True,
        f"candidate named by immutable digest {run.digest}",
        evidence=[
            make_evidence("digest", run.image or "", f"registered at ledger seq {run.registration.seq}")
        ],
    ), appended


def check_artifact_deterministic(
    ctx: Stage1Context, history: Sequence[RecordedEvent], artifact: ArtifactFacts | None = None
) -> Check:
    """``artifact_deterministic``: this digest is the only digest ever recorded for this revision
    (``artifact``, when given, adds the image's revision label to the evidence)."""
    name = "artifact_deterministic"
    if ctx.run.revision is None:
        return make_check(
            name,
            False,
            "no source revision: the artifact cannot be traced to source",
            failure=FailureKind.TECHNICAL,
        )
    if ctx.run.digest is None or ctx.run.registration is None:
        return make_check(name, False, "no candidate digest to trace to the source revision")
    reg_rev = ctx.run.registration.payload.get("revision")
    if reg_rev and reg_rev != ctx.run.revision:
        return make_check(
            name,
            False,
            f"candidate {ctx.run.digest} was registered for revision {reg_rev}, "
            f"but the work tree is at {ctx.run.revision}: "
            "validate the revision the artifact was built from",
            evidence=[
                make_evidence("commit", str(reg_rev), "registered revision"),
                make_evidence("commit", ctx.run.revision, "work tree"),
            ],
        )
    others: dict[str, int] = {}
    for ev in history:
        if ev.candidate in (None, ctx.run.digest):
            continue
        if (
            ev.kind == EventKind.CANDIDATE_REGISTERED
            and ev.payload.get("revision") == ctx.run.revision
            or (
                ev.kind == EventKind.STAGE_COMPLETED
                and ev.stage == STAGE
                and (ev.payload.get("candidate") or {}).get("revision") == ctx.run.revision
            )
        ):
            others.setdefault(str(ev.candidate), ev.seq)
    if others:
        listed = ", ".join(f"{d} (seq {s})" for d, s in others.items())
        return make_check(
            name,
            False,
            f"revision {ctx.run.revision[:12]} already produced a different digest: {listed}; "
            "the same source must always yield the same artifact",
            evidence=[
                make_evidence("digest", d, f"recorded for the same revision at seq {s}")
                for d, s in others.items()
            ],
        )
    traced = (
        "registration and this result" if reg_rev else "this result (the registration carried no revision)"
    )
    if artifact is not None and artifact.revision:
        traced += " and the image's revision label"
    return make_check(
        name,
        True,
        f"{ctx.run.digest} is the only digest recorded for revision {ctx.run.revision[:12]}",
        evidence=[make_evidence("commit", ctx.run.revision, f"bound to {ctx.run.digest} by {traced}")],
    )
