"""Signing human records: what the operator signs, and the policy a record passes before append.

The declaration names the allowed-signers file (``[approval] allowed_signers``, relative to
``railiance/``) and may require signatures on every human record (``require_signatures``). An
approval of a production-critical workload must always be signed (declared signers or not; there is
no opt-out, since the spec's approval gate is what the signature proves): the
gate counts only a valid signature by an allowed signer, and the separation-of-duties rule applies to
the signed principal (the record's ``operator``), so the registrar's or deployer's own key cannot
approve.

``to_sign`` gives the canonical record the operator signs (``railiance approve ... --payload``,
then ``ssh-keygen -Y sign -n railiance-ledger@v1 -f KEY``); ``seal`` verifies the armored signature
against the allowed signers and attaches the signature block, or refuses the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railiance_ledger.domain.events import EventKind, NewEvent
from railiance_ledger.domain.signing import (
    NAMESPACE,
    SIGNATURE_KEY,
    SIGNERS_KEY,
    AllowedSigners,
    SignatureInvalid,
    canonical_record,
    dearmor,
    fingerprint_hex,
    verify_record,
)
from railiance_ledger.errors import GateFailed, InvalidInput

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration

__all__ = [
    "DEGRADED_DEPENDENCY_GATE_PREFIX",
    "UNSIGNED",
    "always_signed",
    "load_signers",
    "seal",
    "signatures_required",
    "signed_principal",
    "signers_path",
    "to_sign",
]

_SIGN_HINT = (
    "print the record with --payload, sign it with "
    f"`ssh-keygen -Y sign -n {NAMESPACE} -f ~/.ssh/id_ed25519 record.json` and pass --signature "
    "record.json.sig"
)


def signers_path(decl: Declaration) -> Path | None:
    """The declared allowed-signers file as a real path, or ``None`` when none is declared."""
    declared = decl.approval.allowed_signers
    return decl.resolve(declared) if declared else None


def load_signers(decl: Declaration) -> AllowedSigners | None:
    """The declared allowed signers, parsed; ``InvalidInput`` when the file is unreadable or malformed."""
    path = signers_path(decl)
    if path is None:
        return None
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"approval.allowed_signers: cannot read {path}: {exc}",
            hint="create the file (git allowedSignersFile format: `principal ssh-ed25519 AAAA...`)",
        ) from exc
    try:
        return AllowedSigners(content)
    except SignatureInvalid as exc:
        raise InvalidInput(f"approval.allowed_signers: {path}: {exc}") from exc


DEGRADED_DEPENDENCY_GATE_PREFIX = "dependency:"
"""A waiver of gate ``dependency:NAME`` is the operator's approval that a platform dependency is degraded
(or unknown): always signed, whatever the workload."""


def always_signed(event: NewEvent) -> bool:
    """True for records that must be signed under every declaration: degraded-dependency approvals."""
    gate = event.payload.get("gate")
    return (
        event.kind == EventKind.WAIVER_GRANTED
        and isinstance(gate, str)
        and gate.startswith(DEGRADED_DEPENDENCY_GATE_PREFIX)
    )


UNSIGNED = (
    "carries no signature by an allowed signer: a production-critical gate counts only a signed approval "
    "(approve again with --payload / --signature, docs/approvals.md)"
)
"""The reason a production-critical gate gives for an approval recorded unsigned (e.g. before the rule)."""


def signed_principal(payload: Mapping[str, Any]) -> str | None:
    """The verified principal of a sealed record's signature block (verified at append and by ``ledger
    verify``), or ``None`` when the record was stored unsigned."""
    block = payload.get(SIGNATURE_KEY)
    principal = block.get("principal") if isinstance(block, Mapping) else None
    return str(principal) if principal else None


def signatures_required(decl: Declaration, kind: str) -> bool:
    """True when a record of ``kind`` must be signed under ``decl``.

    Every human record when ``require_signatures``; approvals of production-critical workloads always
    (without an allowed-signers file declared they cannot be recorded at all: the refusal names the fix).
    """
    if decl.approval.require_signatures:
        return True
    return kind == EventKind.APPROVAL_GRANTED and decl.production_critical


def _with_signers(decl: Declaration, event: NewEvent) -> NewEvent:
    signers = load_signers(decl)
    if signers is None:
        return event
    payload = dict(event.payload)
    payload[SIGNERS_KEY] = {"path": str(decl.approval.allowed_signers), "sha256": signers.sha256}
    return event.model_copy(update={"payload": payload})


def to_sign(decl: Declaration, event: NewEvent) -> bytes:
    """The canonical record of ``event`` (with the declared signers' hash) that its signature covers."""
    if signers_path(decl) is None:
        raise InvalidInput(
            f"{decl.workload.name} declares no allowed-signers file, so there is nothing to sign against",
            hint='set [approval] allowed_signers = "allowed_signers" in railiance/app.toml',
        )
    sealed = _with_signers(decl, event)
    return canonical_record(
        stream=sealed.stream,
        kind=sealed.kind,
        candidate=sealed.candidate,
        stage=sealed.stage,
        payload=sealed.payload,
    )


def seal(decl: Declaration, event: NewEvent, signature: str | None) -> NewEvent:
    """``event`` ready to append: signed and verified, or unsigned where the policy allows it.

    Refuses: a signature when no allowed-signers file is declared, or a required signature that is
    missing (``InvalidInput``, exit 2); a signature that does not verify over this record, by a key
    not in the allowed signers, or by a key not listed for the record's operator (``GateFailed``,
    exit 1, with the reason).
    """
    what = f"{event.kind} for {event.stream}"
    if signature is None or not signature.strip():
        if signatures_required(decl, event.kind) or always_signed(event):
            raise InvalidInput(
                f"{what} must be signed: "
                + (
                    "the declaration sets approval.require_signatures"
                    if decl.approval.require_signatures
                    else "an operator approval of a degraded platform dependency counts only when signed"
                    if always_signed(event)
                    else (
                        "approvals of a production-critical workload count only when signed by an allowed "
                        "signer"
                    )
                ),
                hint=(
                    _SIGN_HINT
                    if decl.approval.allowed_signers
                    else 'add [approval] allowed_signers = "allowed_signers" to railiance/app.toml (git '
                    "allowedSignersFile format: `principal ssh-ed25519 AAAA...`), then " + _SIGN_HINT
                ),
            )
        if decl.approval.allowed_signers:
            return _with_signers(decl, event)
        return event
    signers = load_signers(decl)
    if signers is None:
        raise InvalidInput(
            f"{what}: a signature was given but {decl.workload.name} declares no allowed-signers file",
            hint="set [approval] allowed_signers in railiance/app.toml",
        )
    sealed = _with_signers(decl, event)
    principal = str(sealed.payload.get("operator") or sealed.actor)
    record = canonical_record(
        stream=sealed.stream,
        kind=sealed.kind,
        candidate=sealed.candidate,
        stage=sealed.stage,
        payload=sealed.payload,
    )
    try:
        verified = verify_record(record, signature, signers, principal=principal)
    except SignatureInvalid as exc:
        raise GateFailed(f"{what} refused: {exc}", hint=_SIGN_HINT) from exc
    payload: dict[str, Any] = dict(sealed.payload)
    payload[SIGNATURE_KEY] = {
        "format": "sshsig",
        "namespace": NAMESPACE,
        "sshsig_hex": dearmor(signature).hex(),
        "principal": verified.principal,
        "key_sha256": fingerprint_hex(verified.fingerprint),
        "allowed_signers_hex": signers.content.encode("utf-8").hex(),
    }
    return sealed.model_copy(update={"payload": payload})
