"""SSH signatures (SSHSIG) over human records: the canonical record, allowed signers, verification.

A human record (``approval.granted``, ``approval.revoked``, ``waiver.granted``,
``exception.emergency``) may carry a signature made with ``ssh-keygen -Y sign -n railiance-ledger@v1``
over its *canonical record*: the canonical JSON (``domain.events.canonical_json``) of the stream,
kind, candidate, stage and payload, without the payload's ``signature`` block. The payload names the
allowed-signers file it was checked against by hash (``signers.sha256``), inside what is signed; the
``signature`` block keeps the signature, the verified principal, the key fingerprint and the
allowed-signers content, so ``ledger verify`` re-verifies every signature without the workload's
directory. The block stores the signature, the fingerprint and the allowed-signers content as hex
(``sshsig_hex``, ``key_sha256``, ``allowed_signers_hex``): base64 key material looks like a secret to
the redaction every payload passes, and hex is what it recognises as evidence (digests).

Trust is an allowed-signers file in git's ``allowedSignersFile`` format (``ssh-keygen(1)`` "ALLOWED
SIGNERS"): ``principals [options] keytype base64-key [comment]``. A line's ``namespaces="..."`` option,
when present, must list ours; ``cert-authority`` lines are not supported and are ignored.

Verification is the ``sshsig`` library's (Ed25519 and RSA keys, on ``cryptography``); nothing here is
hand-written cryptography. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sshsig
from sshsig.allowed_signers import AllowedSigner, load_allowed_signers_file

from railiance_ledger.domain.events import EventKind, canonical_json

__all__ = [
    "NAMESPACE",
    "SIGNATURE_KEY",
    "SIGNED_KINDS",
    "SIGNERS_KEY",
    "AllowedSigners",
    "SignatureInvalid",
    "VerifiedSignature",
    "armor",
    "canonical_record",
    "dearmor",
    "fingerprint_hex",
    "signers_hash",
    "verify_record",
    "verify_signed_payload",
]

NAMESPACE = "railiance-ledger@v1"
"""The SSHSIG namespace of our signatures (``ssh-keygen -Y sign -n railiance-ledger@v1``)."""

SIGNED_KINDS = frozenset(
    {
        EventKind.APPROVAL_GRANTED,
        EventKind.APPROVAL_REVOKED,
        EventKind.WAIVER_GRANTED,
        EventKind.EXCEPTION_EMERGENCY,
    }
)
"""The human records that are signed."""

SIGNATURE_KEY = "signature"
"""Payload key of the signature block (left out of the canonical record)."""

SIGNERS_KEY = "signers"
"""Payload key naming the allowed-signers file by path and sha256 (inside the canonical record)."""


class SignatureInvalid(ValueError):
    """A signature does not verify, or its signer is not allowed; the message says which and why."""


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: the principal it was checked for and the key's fingerprint."""

    principal: str
    fingerprint: str


def dearmor(armored: str) -> bytes:
    """The binary SSHSIG blob of an armored signature (``SignatureInvalid`` when it is not one)."""
    try:
        return bytes(sshsig.sshsig.SshsigSignature.from_armored(armored))
    except (ValueError, NotImplementedError, UnicodeError) as exc:
        raise SignatureInvalid(f"not an armored SSH signature: {exc}") from exc


def armor(blob: bytes) -> str:
    """The armored text of a binary SSHSIG blob (what ``ssh-keygen -Y sign`` writes)."""
    return sshsig.sshsig.ssh_enarmor_sshsig(blob)


def fingerprint_hex(fingerprint: str) -> str:
    """``SHA256:<base64>`` (``ssh-keygen -l``) as lowercase hex of the same 32 bytes."""
    b64 = fingerprint.split(":", 1)[-1]
    return base64.b64decode(b64 + "=" * (-len(b64) % 4)).hex()


def signers_hash(content: str) -> str:
    """``sha256:<hex>`` of an allowed-signers file's content (UTF-8)."""
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def canonical_record(
    *, stream: str, kind: str, candidate: str | None, stage: int | None, payload: Mapping[str, Any]
) -> bytes:
    """The bytes a human record's signature covers: the record without its ``signature`` block."""
    body = {k: v for k, v in payload.items() if k != SIGNATURE_KEY}
    record = {
        "namespace": NAMESPACE,
        "stream": stream,
        "kind": str(kind),
        "candidate": candidate,
        "stage": stage,
        "payload": body,
    }
    return canonical_json(record).encode("utf-8")


class AllowedSigners:
    """A parsed allowed-signers file: which keys may sign, for which principals."""

    def __init__(self, content: str) -> None:
        self.content = content
        self.sha256 = signers_hash(content)
        entries: list[tuple[tuple[str, ...], sshsig.PublicKey]] = []
        try:
            parsed = list(load_allowed_signers_file(io.StringIO(content)))
        except (ValueError, NotImplementedError) as exc:
            raise SignatureInvalid(f"allowed-signers file does not parse: {exc}") from exc
        for line in parsed:
            if not _usable(line):
                continue
            try:
                key = sshsig.PublicKey.from_openssh_str(f"{line.key_type} {line.base64_key}")
            except (ValueError, NotImplementedError) as exc:
                raise SignatureInvalid(
                    f"allowed-signers key of {line.principals} does not parse: {exc}"
                ) from exc
            entries.append((tuple(p.strip() for p in line.principals.split(",") if p.strip()), key))
        self.entries = tuple(entries)

    def principals_of(self, key: sshsig.PublicKey) -> tuple[str, ...]:
        """Every principal pattern ``key`` is listed for (empty: the key is not allowed)."""
        return tuple(p for principals, listed in self.entries if listed == key for p in principals)


def _usable(line: AllowedSigner) -> bool:
    options = line.options or {}
    if "cert-authority" in options:
        return False
    namespaces = options.get("namespaces")
    return namespaces is None or any(
        fnmatch.fnmatchcase(NAMESPACE, ns.strip()) for ns in namespaces.split(",")
    )


def verify_record(
    record: bytes, armored: str, signers: AllowedSigners, *, principal: str
) -> VerifiedSignature:
    """Check that ``armored`` signs ``record`` in our namespace with a key listed for ``principal``.

    Raises ``SignatureInvalid`` naming why: not a signature, another namespace, not over this record,
    a key not in the allowed signers, or a key listed for other principals only.
    """
    try:
        key = sshsig.check_signature(record, armored, namespace=NAMESPACE)
    except sshsig.InvalidSignature as exc:
        raise SignatureInvalid(f"the signature does not verify over this record: {exc}") from exc
    except (ValueError, NotImplementedError) as exc:
        raise SignatureInvalid(f"the signature cannot be read: {exc}") from exc
    fingerprint = key.sha256_str()
    patterns = signers.principals_of(key)
    if not patterns:
        raise SignatureInvalid(
            f"the signing key {fingerprint} is not in the allowed signers ({signers.sha256})"
        )
    if not any(fnmatch.fnmatchcase(principal, p) for p in patterns):
        raise SignatureInvalid(
            f"the signing key {fingerprint} is allowed for {', '.join(patterns)}, not for {principal}"
        )
    return VerifiedSignature(principal=principal, fingerprint=fingerprint)


def verify_signed_payload(
    *, stream: str, kind: str, candidate: str | None, stage: int | None, payload: Mapping[str, Any]
) -> VerifiedSignature | None:
    """Re-verify a stored record's signature against the allowed-signers content it recorded.

    ``None`` when the record carries no signature block. Raises ``SignatureInvalid`` when the block
    is malformed, the recorded content does not hash to the signed ``signers.sha256``, or the
    signature does not verify for the recorded principal (the payload's ``operator``).
    """
    block = payload.get(SIGNATURE_KEY)
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise SignatureInvalid("the signature block is not an object")
    sig_hex, signers_hex = block.get("sshsig_hex"), block.get("allowed_signers_hex")
    principal = payload.get("operator")
    signed_signers = payload.get(SIGNERS_KEY)
    if not isinstance(sig_hex, str) or not isinstance(signers_hex, str) or not isinstance(principal, str):
        raise SignatureInvalid("the signature block lacks its signature, allowed signers or operator")
    try:
        armored = armor(bytes.fromhex(sig_hex))
        content = bytes.fromhex(signers_hex).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise SignatureInvalid(f"the signature block does not decode: {exc}") from exc
    if not isinstance(signed_signers, Mapping) or signed_signers.get("sha256") != signers_hash(content):
        raise SignatureInvalid("the recorded allowed-signers content does not match the signed signers hash")
    if block.get("principal") != principal:
        raise SignatureInvalid(
            f"the signature block names principal {block.get('principal')!r}, the record {principal!r}"
        )
    record = canonical_record(stream=stream, kind=kind, candidate=candidate, stage=stage, payload=payload)
    return verify_record(record, armored, _parsed_signers(content), principal=principal)


@functools.lru_cache(maxsize=64)
def _parsed_signers(content: str) -> AllowedSigners:
    """``AllowedSigners(content)``, parsed once per distinct content (a ledger repeats the same file)."""
    return AllowedSigners(content)
