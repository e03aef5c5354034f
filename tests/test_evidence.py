"""The evidence bundle (issue 14, item 5): in-toto Statements in DSSE envelopes, checked offline.

The bundle verifies with the in-toto library itself (``in_toto.models.metadata``) and with
``securesystemslib``; one byte changed anywhere in a signed payload and it does not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from railiance_ledger.cli import app
from railiance_ledger.errors import GateFailed
from railiance_ledger.lifecycle import evidence
from tests.test_approvals import deploy_canary, digest_of, image_of, pass_stage, register, write_app

in_toto_metadata = pytest.importorskip("in_toto.models.metadata")
SignatureVerificationError = pytest.importorskip("in_toto.exceptions").SignatureVerificationError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from railiance_ledger.ledger.store import EventStore

    s = EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "evidence.pem", tmp_path / "evidence.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def bundle(tmp_path: Path, store: Any, keypair: tuple[Path, Path]) -> tuple[Any, Path]:
    decl = write_app(tmp_path, name="blog", category="internal-service")
    digest = register(store, decl)
    deploy_canary(store, decl, digest)  # stage 1 passed, stage 2 started
    pass_stage(store, decl, digest, 2)
    from railiance_ledger.lifecycle import waivers

    waivers.record_waiver(store=store, decl=decl, gate="local_health", operator="alice", reason="probe flaky")
    out = tmp_path / "bundle.intoto.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "--ledger",
            store.url,
            "evidence",
            str(decl.app_dir),
            "--candidate",
            digest,
            "--key",
            str(keypair[0]),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return decl, out


def test_bundle_verifies_with_the_in_toto_library(
    bundle: tuple[Any, Path], keypair: tuple[Path, Path]
) -> None:
    from securesystemslib.signer import SSlibKey

    _, path = bundle
    public = serialization.load_pem_public_key(keypair[1].read_bytes())
    key = SSlibKey.from_crypto(public)  # type: ignore[arg-type]
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    types = []
    for line in lines:
        envelope = in_toto_metadata.Metadata.from_dict(json.loads(line))
        assert isinstance(envelope, in_toto_metadata.Envelope)
        envelope.verify_signature(key.to_dict() | {"keyid": key.keyid})
        statement = json.loads(envelope.payload)
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["subject"] == [
            {
                "name": image_of("a").split("@")[0],
                "digest": {"sha256": digest_of("a").removeprefix("sha256:")},
            }
        ]
        types.append(statement["predicateType"])
        if statement["predicateType"] == evidence.VSA_PREDICATE:
            vsa = statement["predicate"]
            assert vsa["verificationResult"] == "PASSED"
            assert vsa["verifiedLevels"] == ["RAILIANCE_STAGE_1", "RAILIANCE_STAGE_2"]
            assert len(vsa["policy"]["digest"]["sha256"]) == 64
        else:
            pred = statement["predicate"]
            assert [s["stage"] for s in pred["stages"]] == [1, 2]
            assert pred["waivers"][0]["payload"]["gate"] == "local_health"
            assert pred["ledger"]["seq"] >= 5 and len(pred["ledger"]["hash"]) == 64
    assert types == [evidence.VSA_PREDICATE, evidence.RAILIANCE_PREDICATE]


def flip_one_byte(path: Path) -> None:
    """Change one byte of the first envelope's signed payload (decoded, so it stays valid base64)."""
    lines = path.read_text().splitlines()
    env = json.loads(lines[0])
    payload = bytearray(base64.b64decode(env["payload"]))
    at = payload.index(b"PASSED")
    payload[at] = ord("Q")
    env["payload"] = base64.b64encode(bytes(payload)).decode()
    lines[0] = json.dumps(env)
    path.write_text("\n".join(lines) + "\n")


def test_one_byte_changed_fails_in_toto_and_railiance_verify(
    bundle: tuple[Any, Path], keypair: tuple[Path, Path]
) -> None:
    from securesystemslib.signer import SSlibKey

    _, path = bundle
    ok = CliRunner().invoke(app, ["evidence", "verify", str(path), "--key", str(keypair[1]), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["verification_result"] == "PASSED"
    flip_one_byte(path)
    key = SSlibKey.from_crypto(serialization.load_pem_public_key(keypair[1].read_bytes()))  # type: ignore[arg-type]
    envelope = in_toto_metadata.Metadata.from_dict(json.loads(path.read_text().splitlines()[0]))
    with pytest.raises(SignatureVerificationError):
        envelope.verify_signature(key.to_dict() | {"keyid": key.keyid})
    with pytest.raises(GateFailed, match="does not verify"):
        evidence.verify_bundle(path.read_text(), keypair[1])
    bad = CliRunner().invoke(app, ["evidence", "verify", str(path), "--key", str(keypair[1])])
    assert bad.exit_code == 1 and "does not verify" in bad.output


def test_a_raw_byte_flip_in_the_file_fails(bundle: tuple[Any, Path], keypair: tuple[Path, Path]) -> None:
    _, path = bundle
    raw = bytearray(path.read_bytes())
    start = raw.index(b'"payload": "') + len(b'"payload": "') + 40
    raw[start] = ord("A") if raw[start] != ord("A") else ord("B")
    path.write_bytes(bytes(raw))
    with pytest.raises(GateFailed):
        evidence.verify_bundle(path.read_text(), keypair[1])


def test_another_key_does_not_verify(bundle: tuple[Any, Path], tmp_path: Path) -> None:
    _, path = bundle
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(GateFailed, match="does not verify"):
        evidence.verify_bundle(path.read_text(), other)


# ---------------------------------------------------------------------------- next to the image


def _registry_app(tmp_path: Path, store: Any, repository: str, digest: str) -> Any:
    """An internal-service app whose image lives in the real test registry; ``digest`` registered, Stages 1
    and 2 passed."""
    from railiance_ledger.declaration.loader import load_declaration
    from railiance_ledger.lifecycle.candidates import register_candidate

    decl = write_app(tmp_path, name="blog", category="internal-service")
    toml = decl.railiance_dir / "app.toml"
    toml.write_text(
        toml.read_text().replace(
            'repository = "registry.local/railiance/hello-web"', f'repository = "{repository}"'
        )
    )
    decl = load_declaration(decl.app_dir)
    register_candidate(
        store=store,
        decl=decl,
        image=f"{repository}@{digest}",
        operator="rita",
        revision="c0ffee" * 6 + "abcd",
    )
    pass_stage(store, decl, digest, 1)
    pass_stage(store, decl, digest, 2)
    return decl


def test_push_attaches_the_bundle_at_the_cosign_tag_and_a_consumer_verifies_it(
    tmp_path: Path,
    store: Any,
    keypair: tuple[Path, Path],
    registry_server: Any,
    registry_helper: Any,
    registry_repository: str,
) -> None:
    """``evidence --push`` against the real docker-registry: the envelopes are DSSE layers of the manifest at
    ``sha256-<hex>.att``; ``evidence verify --image`` reads them back by that tag and verifies them; an image
    with nothing attached, evidence attached to the wrong image, a changed layer and an unreachable registry
    all fail."""
    import httpx

    from railiance_ledger.adapters.attestations import DSSE_MEDIA_TYPE, OciAttestations, attestation_tag

    digest = registry_helper.push_image(registry_repository, "v1")
    other = registry_helper.push_image(registry_repository, "v2")
    repository = f"{registry_server.host}/{registry_repository}"
    decl = _registry_app(tmp_path, store, repository, digest)
    env = {"RAILIANCE_REGISTRY_URL": registry_server.url}
    base = ["--ledger", store.url]
    out = tmp_path / "bundle.jsonl"
    pushed = CliRunner().invoke(
        app,
        [
            *base,
            "evidence",
            str(decl.app_dir),
            "--candidate",
            digest,
            "--key",
            str(keypair[0]),
            "-o",
            str(out),
            "--push",
        ],
        env=env,
    )
    assert pushed.exit_code == 0, pushed.output
    tag = attestation_tag(digest)
    assert tag == "sha256-" + digest.removeprefix("sha256:") + ".att" and tag in pushed.output

    # what cosign's tooling reads: an OCI manifest at the tag whose layers are the DSSE envelopes
    with httpx.Client(trust_env=False) as client:
        manifest = client.get(
            f"{registry_server.url}/v2/{registry_repository}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
        layers = manifest["layers"]
        assert [layer["mediaType"] for layer in layers] == [DSSE_MEDIA_TYPE, DSSE_MEDIA_TYPE]
        assert [layer["annotations"]["predicateType"] for layer in layers] == [
            evidence.VSA_PREDICATE,
            evidence.RAILIANCE_PREDICATE,
        ]
        blobs = [
            client.get(f"{registry_server.url}/v2/{registry_repository}/blobs/{layer['digest']}").content
            for layer in layers
        ]
    assert [b.decode() for b in blobs] == out.read_text().splitlines()

    # the consumer: read back by the tag, verify offline with the public key
    verify = ["evidence", "verify", "--image", f"{repository}@{digest}", "--key", str(keypair[1]), "--json"]
    ok = CliRunner().invoke(app, verify, env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["verification_result"] == "PASSED"
    # pushing again adds nothing (same layers), the tag still verifies
    again = CliRunner().invoke(
        app,
        [
            *base,
            "evidence",
            str(decl.app_dir),
            "--candidate",
            digest,
            "--key",
            str(keypair[0]),
            "-o",
            str(tmp_path / "b2"),
            "--push",
        ],
        env=env,
    )
    assert again.exit_code == 0, again.output

    # nothing attached to the other image
    none = CliRunner().invoke(app, [*verify[:3], f"{repository}@{other}", *verify[4:]], env=env)
    assert none.exit_code == 1 and "no Railiance evidence" in none.output, none.output
    # this bundle attached to the other image: the subject does not match
    with httpx.Client(trust_env=False) as client:
        store_ = OciAttestations(client, registry_server.url)
        store_.push(
            repository=registry_repository,
            digest=other,
            envelopes=[
                (b, t)
                for b, t in zip(blobs, [evidence.VSA_PREDICATE, evidence.RAILIANCE_PREDICATE], strict=True)
            ],
        )
    wrong = CliRunner().invoke(app, [*verify[:3], f"{repository}@{other}", *verify[4:]], env=env)
    assert wrong.exit_code == 1 and "wrong image" in wrong.output, wrong.output

    # a changed envelope (one byte of the signed payload) pushed under a third image: the signature fails
    third = registry_helper.push_image(registry_repository, "v3")
    envelope = json.loads(blobs[0])
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[payload.index(b"PASSED")] = ord("Q")
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()
    forged = [json.dumps(envelope, sort_keys=True).encode(), blobs[1]]
    with httpx.Client(trust_env=False) as client:
        OciAttestations(client, registry_server.url).push(
            repository=registry_repository,
            digest=third,
            envelopes=list(zip(forged, [evidence.VSA_PREDICATE, evidence.RAILIANCE_PREDICATE], strict=True)),
        )
    bad = CliRunner().invoke(app, [*verify[:3], f"{repository}@{third}", *verify[4:]], env=env)
    assert bad.exit_code == 1 and "does not verify" in bad.output, bad.output

    # the registry unreachable: not a pass
    from tests.harness import free_port

    down = CliRunner().invoke(app, verify, env={"RAILIANCE_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code != 0 and "registry" in down.output, down.output
