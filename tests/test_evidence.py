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
