"""Issue 12 item 6 (provenance) and issue 16 item 4 (platforms) in Stage 1, against the real registry.

``artifact_traceable`` reads the candidate's image configuration from the registry its
reference names: with ``revision_policy = "image-label"`` it fails when the
``org.opencontainers.image.revision`` label is missing, names another commit, or cannot be read
(registry unreachable or none given), and passes only with a label matching the work tree; a
waiver lets a label-less image through. ``candidate_immutable`` checks the declared
``image.platform`` is in an image index (or is the single image's platform).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from railiance_ledger.adapters.docker_credentials import DockerCredentialStore
from railiance_ledger.adapters.registries import RegistryPool, RegistrySettings
from tests.fixtures.dagster import closed_port_url
from tests.fixtures.stage1 import OPERATOR, Stage1Env

LABEL = "org.opencontainers.image.revision"


@pytest.fixture
def prov_env(stage1_env: Stage1Env, registry_server: Any, registry_repository: str) -> Stage1Env:
    """hello-web declared at the session registry's loopback host, revision_policy = image-label."""
    stage1_env.sub(
        "railiance/app.toml",
        r'^repository = "[^"]*"',
        f'repository = "{registry_server.host}/{registry_repository}"',
        commit=False,
    )
    stage1_env.sub("railiance/app.toml", r'^revision_policy = "[^"]*"', 'revision_policy = "image-label"')
    return stage1_env


def _pool(registry_server: Any, tmp_path: Path, *, override: str | None = None) -> RegistryPool:
    return RegistryPool(
        credentials=DockerCredentialStore({}, home=tmp_path),
        settings={registry_server.host: RegistrySettings(plain_http=True)},
        override_url=override,
        timeout=2.0,
        env={},
    )


def _run(env: Stage1Env, image: str, registries: Any) -> dict[str, Any]:
    from railiance_ledger.lifecycle.stage1 import run_stage1

    outcome = run_stage1(
        store=env.store,
        app_dir=env.app,
        operator=OPERATOR,
        image=image,
        helm=env.helm,
        http=env.http,
        registries=registries,
    )
    return {c.name: c for c in outcome.result.checks}


def _push(helper: Any, repository: str, **kwargs: Any) -> str:
    return helper.push_image(repository, **kwargs)


def test_matching_label_passes(
    prov_env: Stage1Env, registry_server: Any, registry_helper: Any, registry_repository: str, tmp_path: Path
) -> None:
    digest = _push(registry_helper, registry_repository, labels={LABEL: prov_env.head()})
    with _pool(registry_server, tmp_path) as pool:
        checks = _run(prov_env, f"{registry_server.host}/{registry_repository}@{digest}", pool)
    assert checks["artifact_traceable"].status == "pass", checks["artifact_traceable"].reason
    det = checks["artifact_deterministic"]
    assert det.status == "pass", det.reason
    assert "revision label" in det.evidence[0].detail


@pytest.mark.parametrize("case", ["missing", "wrong", "unreachable", "no-registry"])
def test_untraceable_artifact_fails(
    case: str,
    prov_env: Stage1Env,
    registry_server: Any,
    registry_helper: Any,
    registry_repository: str,
    tmp_path: Path,
) -> None:
    labels = {"wrong": {LABEL: "0" * 40}}.get(case)
    digest = _push(registry_helper, registry_repository, labels=labels)
    image = f"{registry_server.host}/{registry_repository}@{digest}"
    override = closed_port_url() if case == "unreachable" else None
    with _pool(registry_server, tmp_path, override=override) as pool:
        checks = _run(prov_env, image, None if case == "no-registry" else pool)
    det = checks["artifact_traceable"]
    assert det.status == "fail"
    expected = {
        "missing": "has no org.opencontainers.image.revision label",
        "wrong": "built from revision 0000",
        "unreachable": "cannot read the image's",
        "no-registry": "no registry was consulted",
    }[case]
    assert expected in det.reason
    if case in ("unreachable", "no-registry"):
        assert det.failure == "technical"


def test_git_commit_policy_refuses_a_contradicting_label_only(
    stage1_env: Stage1Env,
    registry_server: Any,
    registry_helper: Any,
    registry_repository: str,
    tmp_path: Path,
) -> None:
    stage1_env.sub(
        "railiance/app.toml",
        r'^repository = "[^"]*"',
        f'repository = "{registry_server.host}/{registry_repository}"',
    )
    unlabeled = _push(registry_helper, registry_repository)
    contradicting = _push(registry_helper, registry_repository, labels={LABEL: "f" * 40})
    with _pool(registry_server, tmp_path) as pool:
        ok = _run(stage1_env, f"{registry_server.host}/{registry_repository}@{unlabeled}", pool)
        bad = _run(stage1_env, f"{registry_server.host}/{registry_repository}@{contradicting}", pool)
    assert ok["artifact_traceable"].status == "pass" and ok["artifact_deterministic"].status == "pass"
    assert bad["artifact_traceable"].status == "fail" and "ffff" in bad["artifact_traceable"].reason


def test_a_waiver_lets_a_label_less_image_through(
    prov_env: Stage1Env, registry_server: Any, registry_helper: Any, registry_repository: str, tmp_path: Path
) -> None:
    from railiance_ledger.lifecycle.candidates import register_candidate
    from railiance_ledger.lifecycle.waivers import record_waiver

    digest = _push(registry_helper, registry_repository)
    image = f"{registry_server.host}/{registry_repository}@{digest}"
    register_candidate(store=prov_env.store, decl=prov_env.decl(), image=image, operator=OPERATOR)
    record_waiver(
        store=prov_env.store,
        decl=prov_env.decl(),
        gate="artifact_traceable",
        operator=OPERATOR,
        reason="legacy image built before the label; traced by hand to the release tag",
        candidate=digest,
    )
    with _pool(registry_server, tmp_path) as pool:
        checks = _run(prov_env, image, pool)
    assert checks["artifact_traceable"].status == "waived"


@pytest.mark.parametrize(("declared", "status"), [("linux/arm64/v8", "pass"), ("linux/s390x", "fail")])
def test_declared_platform_in_the_image_index(
    declared: str,
    status: str,
    prov_env: Stage1Env,
    registry_server: Any,
    registry_helper: Any,
    registry_repository: str,
    tmp_path: Path,
) -> None:
    prov_env.sub("railiance/app.toml", r"^(repository = .*)$", f'\\1\nplatform = "{declared}"')
    head = prov_env.head()
    amd = _push(registry_helper, registry_repository, labels={LABEL: head}, platform="linux/amd64")
    arm = _push(registry_helper, registry_repository, labels={LABEL: head}, platform="linux/arm64/v8")
    index = registry_helper.push_index(
        registry_repository, "v3.0.0", [amd, arm], platforms=["linux/amd64", "linux/arm64/v8"]
    )
    with _pool(registry_server, tmp_path) as pool:
        checks = _run(prov_env, f"{registry_server.host}/{registry_repository}@{index}", pool)
    cand = checks["candidate_immutable"]
    assert cand.status == status, cand.reason
    assert any("image index of 2" in e.detail for e in cand.evidence)
    assert (
        checks["artifact_deterministic"].status == "pass"
    )  # the label of the declared (or a linux) manifest
