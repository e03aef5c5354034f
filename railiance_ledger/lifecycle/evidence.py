"""The evidence bundle: what the ledger knows about one candidate, signed, checkable offline.

``build_bundle`` writes an in-toto attestation bundle (JSON Lines, one DSSE envelope per line, the
layout of in-toto's ``spec/v1/bundle.md``) with two Statements about the same subject, the image
name and its sha256 digest:

1. ``https://slsa.dev/verification_summary/v1``: the SLSA Verification Summary. The verifier is
   this ledger, ``policy`` is the declaration (``railiance/app.toml``) by sha256,
   ``verificationResult`` is ``PASSED`` only when every recorded stage result passed and no
   rollback blocked or abandoned the candidate, and ``verifiedLevels`` names the stages passed.
2. ``https://railiance.dev/ledger-evidence/v1``: the Railiance predicate. It holds every stage
   result (status, checks, ledger event), every approval with its signature block, the
   revocations, waivers and emergency exceptions, the rollback target, and the ledger anchor
   (head seq and hash when the bundle was made).

Each envelope (payload type ``application/vnd.in-toto+json``) is signed with the project's key,
a PEM private key (Ed25519, ECDSA or RSA) that ``--key`` or ``RAILIANCE_EVIDENCE_KEY`` names.
``securesystemslib`` signs it (``CryptoSigner``) and verifies it (``Envelope.verify``), so
``in-toto``/``securesystemslib`` tooling checks the bundle without us. No cryptography is
hand-written here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from railiance_ledger.domain.candidate_state import CandidateState
from railiance_ledger.domain.events import EventKind
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle.approvals.target import current_stable_target
from railiance_ledger.lifecycle.candidates import resolve_candidate

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration
    from railiance_ledger.ledger.store import EventStore

__all__ = [
    "EVIDENCE_KEY_ENV",
    "PAYLOAD_TYPE",
    "RAILIANCE_PREDICATE",
    "STATEMENT_TYPE",
    "VSA_PREDICATE",
    "VerifiedBundle",
    "build_bundle",
    "build_statements",
    "fetch_bundle",
    "push_bundle",
    "verify_bundle",
]

EVIDENCE_KEY_ENV = "RAILIANCE_EVIDENCE_KEY"
"""Environment variable naming the PEM private key that signs evidence bundles."""

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
RAILIANCE_PREDICATE = "https://railiance.dev/ledger-evidence/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
VERIFIER_ID = "https://railiance.dev/ledger"

_HUMAN_KINDS = {
    EventKind.APPROVAL_GRANTED: "approvals",
    EventKind.APPROVAL_REVOKED: "revocations",
    EventKind.WAIVER_GRANTED: "waivers",
    EventKind.EXCEPTION_EMERGENCY: "exceptions",
}


def build_statements(
    *, store: EventStore, decl: Declaration, candidate: str, now: str
) -> list[dict[str, Any]]:
    """The two in-toto Statements (VSA, Railiance) about ``candidate`` (an image ref or a digest)."""
    workload = decl.workload.name
    history = store.read_stream(workload)
    cand = resolve_candidate(history, workload, candidate)
    state = CandidateState.from_events(history, cand.digest)
    head_seq, head_hash = store.head()
    name = cand.image.split("@", 1)[0]
    subject = [{"name": name, "digest": {"sha256": cand.digest.removeprefix("sha256:")}}]
    try:
        declaration = decl.declaration_path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the declaration {decl.declaration_path}: {exc}") from exc

    stages: list[dict[str, Any]] = []
    human: dict[str, list[dict[str, Any]]] = {key: [] for key in _HUMAN_KINDS.values()}
    for ev in history:
        if ev.candidate != cand.digest:
            continue
        if ev.kind == EventKind.STAGE_COMPLETED:
            checks = ev.payload.get("checks") or []
            stages.append(
                {
                    "stage": ev.stage,
                    "status": ev.payload.get("status"),
                    "checks": [
                        {"name": c.get("name"), "status": c.get("status")}
                        for c in checks
                        if isinstance(c, Mapping)
                    ],
                    "event_id": ev.event_id,
                    "seq": ev.seq,
                    "hash": ev.hash,
                    "recorded_at": ev.recorded_at,
                }
            )
        elif ev.kind in _HUMAN_KINDS:
            human[_HUMAN_KINDS[EventKind(ev.kind)]].append(
                {
                    "kind": ev.kind,
                    "stage": ev.stage,
                    "actor": ev.actor,
                    "event_id": ev.event_id,
                    "seq": ev.seq,
                    "hash": ev.hash,
                    "recorded_at": ev.recorded_at,
                    "payload": ev.payload,
                }
            )
    passed = sorted(k for k in state.results if state.passed(k))
    failed = sorted(k for k in state.results if not state.passed(k))
    result = "PASSED" if passed and not failed and not state.terminal else "FAILED"
    declaration_sha = hashlib.sha256(declaration).hexdigest()
    vsa = {
        "verifier": {"id": VERIFIER_ID},
        "timeVerified": now,
        "resourceUri": cand.image,
        "policy": {"uri": "railiance/app.toml", "digest": {"sha256": declaration_sha}},
        "inputAttestations": [],
        "verificationResult": result,
        "verifiedLevels": [f"RAILIANCE_STAGE_{k}" for k in passed],
    }
    railiance = {
        "workload": {"name": workload, "repo": decl.workload.repo},
        "candidate": {"image": cand.image, "digest": cand.digest, "revision": cand.revision},
        "declaration": {"path": "railiance/app.toml", "sha256": declaration_sha},
        "stages": stages,
        **human,
        "skipped_stages": sorted(state.skipped_ever),
        "promoted": state.promoted,
        "fate": state.fate,
        "rollback_target": current_stable_target(store, workload),
        "ledger": {"seq": head_seq, "hash": head_hash},
    }
    return [
        {"_type": STATEMENT_TYPE, "subject": subject, "predicateType": VSA_PREDICATE, "predicate": vsa},
        {
            "_type": STATEMENT_TYPE,
            "subject": subject,
            "predicateType": RAILIANCE_PREDICATE,
            "predicate": railiance,
        },
    ]


def _signer(key_file: Path) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # re-exported, not in __all__

    try:
        private = load_pem_private_key(key_file.read_bytes(), password=None)
        return CryptoSigner(private)
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"evidence key {key_file}: cannot load a PEM private key: {exc}",
            hint="e.g. openssl genpkey -algorithm ed25519 -out evidence.pem",
        ) from exc


def build_bundle(*, store: EventStore, decl: Declaration, candidate: str, key_file: Path, now: str) -> str:
    """The signed bundle (JSON Lines of DSSE envelopes) for ``candidate``; one line per Statement."""
    from securesystemslib.dsse import Envelope

    signer = _signer(key_file)
    lines = []
    for statement in build_statements(store=store, decl=decl, candidate=candidate, now=now):
        payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
        envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
        envelope.sign(signer)
        lines.append(json.dumps(envelope.to_dict(), sort_keys=True))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every envelope verified: its subject, VSA result and ledger anchor."""

    subject: list[dict[str, Any]]
    result: str
    ledger: Mapping[str, Any]
    keyid: str
    statements: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "ok": True,
            "subject": self.subject,
            "verification_result": self.result,
            "ledger": dict(self.ledger),
            "keyid": self.keyid,
            "predicate_types": [s.get("predicateType") for s in self.statements],
        }


def _public_key(key_file: Path) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]  # re-exported, not in __all__

    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"evidence key {key_file}: {exc}") from exc
    try:
        public = load_pem_public_key(data)
    except ValueError:
        try:
            public = load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"evidence key {key_file}: not a PEM public or private key: {exc}") from exc
    return SSlibKey.from_crypto(public)


def verify_bundle(text: str, key_file: Path, *, expect_digest: str | None = None) -> VerifiedBundle:
    """Verify every envelope of a bundle with the project's public key; ``GateFailed`` when one does not.

    Checks each DSSE signature (``securesystemslib``), the payload type, that every Statement is an
    in-toto v1 Statement about the same subject, and that both predicates are present; with
    ``expect_digest`` (a bundle read from the registry), that the subject is that very image.
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    key = _public_key(key_file)
    statements: list[dict[str, Any]] = []
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise GateFailed("evidence bundle is empty")
    for number, line in enumerate(lines, start=1):
        try:
            envelope = Envelope.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise GateFailed(f"evidence bundle line {number} is not a DSSE envelope: {exc}") from exc
        if envelope.payload_type != PAYLOAD_TYPE:
            raise GateFailed(f"evidence bundle line {number}: payload type {envelope.payload_type!r}")
        try:
            envelope.verify([key], 1)
        except VerificationError as exc:
            raise GateFailed(f"evidence bundle line {number}: the signature does not verify: {exc}") from exc
        try:
            statement = json.loads(envelope.payload)
        except ValueError as exc:
            raise GateFailed(f"evidence bundle line {number}: the payload is not JSON: {exc}") from exc
        if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
            raise GateFailed(f"evidence bundle line {number}: not an in-toto v1 Statement")
        statements.append(statement)
    subjects = {json.dumps(s.get("subject"), sort_keys=True) for s in statements}
    if len(subjects) != 1:
        raise GateFailed("evidence bundle: the statements name different subjects")
    by_type = {s.get("predicateType"): s for s in statements}
    if VSA_PREDICATE not in by_type or RAILIANCE_PREDICATE not in by_type:
        raise GateFailed(
            "evidence bundle: the SLSA verification summary or the Railiance predicate is missing"
        )
    if expect_digest is not None:
        named = {
            f"sha256:{(s.get('digest') or {}).get('sha256')}" for s in statements[0].get("subject") or []
        }
        if expect_digest not in named:
            raise GateFailed(
                f"evidence bundle: it is about {', '.join(sorted(named))}, not {expect_digest} "
                "(attached to the wrong image)"
            )
    return VerifiedBundle(
        subject=list(statements[0]["subject"]),
        result=str(by_type[VSA_PREDICATE]["predicate"].get("verificationResult")),
        ledger=by_type[RAILIANCE_PREDICATE]["predicate"].get("ledger") or {},
        keyid=str(key.keyid),
        statements=statements,
    )


# ---------------------------------------------------------------------------- next to the image


class AttestationStore(Protocol):
    """Where attestations live next to the image (``adapters.attestations.OciAttestations``)."""

    def push(self, *, repository: str, digest: str, envelopes: list[tuple[bytes, str]]) -> Any: ...

    def fetch(self, *, repository: str, digest: str) -> list[tuple[bytes, str]]: ...


def _statements(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Each envelope line of a bundle with its decoded Statement (not verified: that is ``verify_bundle``)."""
    import base64

    out: list[tuple[str, dict[str, Any]]] = []
    for line in (line.strip() for line in text.splitlines() if line.strip()):
        try:
            statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not an evidence bundle (a line is not a DSSE envelope): {exc}") from exc
        if not isinstance(statement, dict):
            raise InvalidInput("not an evidence bundle: an envelope's payload is not a Statement")
        out.append((line, statement))
    if not out:
        raise InvalidInput("the evidence bundle is empty")
    return out


def _subject(statement: Mapping[str, Any]) -> tuple[str, str]:
    """The Statement's subject as ``(image name, sha256 digest)``."""
    subjects = statement.get("subject") or [{}]
    subject = subjects[0] if isinstance(subjects, list) and subjects else {}
    name, sha = str(subject.get("name", "")), str((subject.get("digest") or {}).get("sha256", ""))
    if not name or len(sha) != 64:
        raise InvalidInput("the evidence bundle names no image subject (name and sha256 digest)")
    return name, f"sha256:{sha}"


def repository_path(image_name: str) -> str:
    """``registry.example/team/app`` -> ``team/app``: the repository part the registry API names."""
    first, _, rest = image_name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return image_name


def push_bundle(text: str, store: AttestationStore) -> Any:
    """Push every envelope of the bundle ``text`` to the ``sha256-<hex>.att`` tag of its subject image.

    Returns what the store reports (``PushedAttestation``: tag, manifest digest, layers).
    """
    statements = _statements(text)
    name, digest = _subject(statements[0][1])
    envelopes = [(line.encode("utf-8"), str(st.get("predicateType", ""))) for line, st in statements]
    return store.push(repository=repository_path(name), digest=digest, envelopes=envelopes)


def fetch_bundle(store: AttestationStore, *, repository: str, digest: str) -> str:
    """The bundle (JSON Lines) read back from the ``.att`` tag of ``repository@digest``; ``GateFailed`` when
    there is none. Verify it with ``verify_bundle(..., expect_digest=digest)``."""
    envelopes = store.fetch(repository=repository, digest=digest)
    ours = [
        data.decode("utf-8") for data, ptype in envelopes if ptype in (VSA_PREDICATE, RAILIANCE_PREDICATE)
    ]
    if not ours:
        raise GateFailed(
            f"no Railiance evidence is attached to {repository}@{digest}",
            hint="railiance evidence APP_DIR --candidate DIGEST --push",
        )
    return "\n".join(line.strip() for line in ours) + "\n"
