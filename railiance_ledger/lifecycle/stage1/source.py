"""Stage 1 gates about where the candidate comes from: ``source_revision_identified``,
``candidate_immutable`` and ``artifact_deterministic``."""

from __future__ import annotations

from collections.abc import Sequence

from railiance_ledger.adapters.git import GitRepo
from railiance_ledger.domain.digests import DigestFormatError, parse_image_ref
from railiance_ledger.domain.events import EventKind, RecordedEvent
from railiance_ledger.domain.stage_result import Check, FailureKind
from railiance_ledger.errors import AdapterError, InvalidInput
from railiance_ledger.lifecycle.candidates import register_candidate, select_candidate
from railiance_ledger.lifecycle.checks import make_check
from railiance_ledger.lifecycle.kit import make_evidence
from railiance_ledger.lifecycle.stage1.context import STAGE, Stage1Context


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


def check_artifact_deterministic(ctx: Stage1Context, history: Sequence[RecordedEvent]) -> Check:
    """``artifact_deterministic``: this digest is the only digest ever recorded for this revision."""
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
    return make_check(
        name,
        True,
        f"{ctx.run.digest} is the only digest recorded for revision {ctx.run.revision[:12]}",
        evidence=[make_evidence("commit", ctx.run.revision, f"bound to {ctx.run.digest} by {traced}")],
    )
