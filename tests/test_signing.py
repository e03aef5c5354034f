"""SSH-signed human records (issue 14): keys made here with ``ssh-keygen``, verified with ``sshsig``.

Only a signature by a listed key, for the record's own operator, over this very record, counts:
an unlisted key, the deployer's own key, a key removed from the allowed signers, a signature over a
different record and a signature replayed from another candidate are refused at append with the
reason. ``ledger verify`` re-verifies every signature, so a chain rewritten with valid hashes but a
forged approval exits 3 naming it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from railiance_ledger.adapters.sshsig import sign_bytes
from railiance_ledger.domain.events import EventKind, NewEvent, RecordedEvent
from railiance_ledger.domain.signing import NAMESPACE, AllowedSigners, SignatureInvalid, armor, verify_record
from railiance_ledger.errors import GateFailed, InvalidInput
from railiance_ledger.lifecycle import approvals, waivers
from tests.test_approvals import DEPLOYER, REGISTRAR, deploy_canary, digest_of, image_of, register, write_app

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing"
)

APPROVER, OUTSIDER, LEAVER = "alice", "mallory", "olga"
SIGNED_TOML = '\n[approval]\nallowed_signers = "allowed_signers"\n'


def make_key(dir_: Path, name: str) -> Path:
    key = dir_ / f"id_{name}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def public(key: Path) -> str:
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    kdir = tmp_path / "keys"
    kdir.mkdir()
    return {name: make_key(kdir, name) for name in (APPROVER, OUTSIDER, DEPLOYER, LEAVER)}


def write_signers(decl: Any, keys: dict[str, Path], names: tuple[str, ...]) -> Path:
    path = decl.railiance_dir / "allowed_signers"
    path.write_text(
        "# railiance approvers\n"
        + "".join(f'{n} namespaces="{NAMESPACE}" {public(keys[n])}\n' for n in names),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from railiance_ledger.ledger.store import EventStore

    s = EventStore.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


@pytest.fixture
def decl(tmp_path: Path, keys: dict[str, Path]) -> Any:
    d = write_app(tmp_path, extra=SIGNED_TOML)
    write_signers(d, keys, (APPROVER, DEPLOYER, LEAVER))
    return d


def approval_args(decl: Any, operator: str, ch: str = "a") -> dict[str, Any]:
    return {
        "decl": decl,
        "operator": operator,
        "stage": 2,
        "image": image_of(ch),
        "window": "1h",
        "rollback_target": image_of("f"),
    }


def signed_approval(store: Any, decl: Any, key: Path, operator: str, ch: str = "a") -> RecordedEvent:
    args = approval_args(decl, operator, ch)
    record = approvals.approval_to_sign(store=store, **args)
    return approvals.approve(store=store, signature=sign_bytes(record, key), **args)


def ready(store: Any, decl: Any, ch: str = "a") -> str:
    digest = register(store, decl, ch)
    deploy_canary(store, decl, digest)
    return digest


def count(store: Any, kind: str) -> int:
    return sum(1 for ev in store.read_all() if ev.kind == kind)


# ---------------------------------------------------------------------------- who counts


def test_listed_key_counts_and_the_record_carries_the_verified_principal(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    ready(store, decl)
    event = signed_approval(store, decl, keys[APPROVER], APPROVER)
    block = event.payload["signature"]
    assert block["principal"] == APPROVER and block["namespace"] == NAMESPACE
    assert len(block["key_sha256"]) == 64
    content = bytes.fromhex(block["allowed_signers_hex"]).decode()
    assert event.payload["signers"]["sha256"] == AllowedSigners(content).sha256
    assert approvals.approval_state(store, decl.workload.name, digest_of("a"), 2).granted


def test_unsigned_approval_of_a_production_critical_workload_is_refused_at_append(
    store: Any, decl: Any
) -> None:
    ready(store, decl)
    with pytest.raises(InvalidInput, match="must be signed"):
        approvals.approve(store=store, **approval_args(decl, APPROVER))
    assert count(store, EventKind.APPROVAL_GRANTED) == 0


def test_unlisted_key_is_refused(store: Any, decl: Any, keys: dict[str, Path]) -> None:
    ready(store, decl)
    with pytest.raises(GateFailed, match="not in the allowed signers"):
        signed_approval(store, decl, keys[OUTSIDER], APPROVER)
    assert count(store, EventKind.APPROVAL_GRANTED) == 0


def test_a_listed_key_signing_for_another_principal_is_refused(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    ready(store, decl)
    with pytest.raises(GateFailed, match=f"allowed for {LEAVER}, not for {APPROVER}"):
        signed_approval(store, decl, keys[LEAVER], APPROVER)


def test_the_deployers_own_key_is_refused(store: Any, decl: Any, keys: dict[str, Path]) -> None:
    ready(store, decl)
    with pytest.raises(GateFailed, match="separation of duties"):
        signed_approval(store, decl, keys[DEPLOYER], DEPLOYER)
    assert count(store, EventKind.APPROVAL_GRANTED) == 0


def test_a_key_removed_from_the_allowed_signers_is_refused(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    ready(store, decl)
    args = approval_args(decl, LEAVER)
    record = approvals.approval_to_sign(store=store, **args)
    signature = sign_bytes(record, keys[LEAVER])
    write_signers(decl, keys, (APPROVER, DEPLOYER))  # olga leaves
    # the record names the allowed-signers file by hash: the old signature is over another record
    with pytest.raises(GateFailed, match="does not verify over this record"):
        approvals.approve(store=store, signature=signature, **args)
    # signing the current record with the removed key: not an allowed signer any more
    record = approvals.approval_to_sign(store=store, **args)
    with pytest.raises(GateFailed, match="not in the allowed signers"):
        approvals.approve(store=store, signature=sign_bytes(record, keys[LEAVER]), **args)
    assert count(store, EventKind.APPROVAL_GRANTED) == 0


def test_a_signature_over_a_different_record_is_refused(store: Any, decl: Any, keys: dict[str, Path]) -> None:
    ready(store, decl)
    args = approval_args(decl, APPROVER)
    record = approvals.approval_to_sign(store=store, **args)
    signature = sign_bytes(record.replace(b'"1h"', b'"2h"'), keys[APPROVER])
    with pytest.raises(GateFailed, match="does not verify over this record"):
        approvals.approve(store=store, signature=signature, **args)
    # the same window change made after signing: the record differs from what was signed
    signature = sign_bytes(record, keys[APPROVER])
    with pytest.raises(GateFailed, match="does not verify over this record"):
        approvals.approve(store=store, signature=signature, **{**args, "window": "2h"})
    assert count(store, EventKind.APPROVAL_GRANTED) == 0


def test_a_signature_replayed_from_another_candidate_is_refused(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    ready(store, decl, "a")
    first = signed_approval(store, decl, keys[APPROVER], APPROVER, "a")
    ready(store, decl, "b")
    replay = armor(bytes.fromhex(first.payload["signature"]["sshsig_hex"]))
    with pytest.raises(GateFailed, match="does not verify over this record"):
        approvals.approve(store=store, signature=replay, **approval_args(decl, APPROVER, "b"))
    assert count(store, EventKind.APPROVAL_GRANTED) == 1


def test_approving_a_candidate_whose_previous_stage_failed_is_refused_unless_excepted(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    digest = register(store, decl)
    store.append(
        [
            NewEvent(
                stream=decl.workload.name,
                kind=EventKind.STAGE_COMPLETED,
                actor="ci",
                candidate=digest,
                stage=1,
                payload={"stage": 1, "status": "fail", "candidate": {"digest": digest}},
            )
        ]
    )
    with pytest.raises(GateFailed, match="stage 1 of .* failed"):
        signed_approval(store, decl, keys[APPROVER], APPROVER)
    approvals.record_exception(store=store, decl=decl, operator=REGISTRAR, skip_stage=1, reason="outage fix")
    assert signed_approval(store, decl, keys[APPROVER], APPROVER).kind == EventKind.APPROVAL_GRANTED


def test_approving_before_the_previous_stage_has_passed_is_refused_naming_it(
    tmp_path: Path, store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    """Stage 3 while the canary has no result: refused (exit 1) naming stage 2; the CLI says the same."""
    from click.testing import CliRunner

    from railiance_ledger.cli import app

    digest = ready(store, decl)  # Stage 1 passed, Stage 2 started: no Stage 2 result yet
    args = {**approval_args(decl, APPROVER), "stage": 3}
    with pytest.raises(GateFailed, match="stage 2 of .* has not passed") as info:
        approvals.approval_to_sign(store=store, **args)
    assert info.value.exit_code == 1 and "exception" in (info.value.hint or "")
    cli = CliRunner().invoke(
        app,
        ["--ledger", store.url, "approve", str(decl.app_dir), "--stage", "3", "--operator", APPROVER]
        + ["--image", image_of("a"), "--rollback-target", image_of("f"), "--payload"],
    )
    assert cli.exit_code == 1 and "stage 2" in cli.output and "has not passed" in cli.output, cli.output
    # a registered candidate with no Stage 1 result cannot be approved for the canary either
    register(store, decl, "b")
    with pytest.raises(GateFailed, match="stage 1 of .* has not passed"):
        signed_approval(store, decl, keys[APPROVER], APPROVER, "b")
    assert count(store, EventKind.APPROVAL_GRANTED) == 0
    # the canary passes: now the promotion may be approved, signed
    store.append(
        [
            NewEvent(
                stream=decl.workload.name,
                kind=EventKind.STAGE_COMPLETED,
                actor="ci",
                candidate=digest,
                stage=2,
                payload={"stage": 2, "status": "pass", "candidate": {"digest": digest}},
            )
        ]
    )
    record = approvals.approval_to_sign(store=store, **args)
    granted = approvals.approve(store=store, signature=sign_bytes(record, keys[APPROVER]), **args)
    assert (granted.stage, granted.payload["signature"]["principal"]) == (3, APPROVER)


def test_an_emergency_exception_covers_an_unreached_stage(
    store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    """Stage 2 skipped by a recorded emergency exception: the Stage 3 approval is accepted."""
    ready(store, decl)
    args = {**approval_args(decl, APPROVER), "stage": 3}
    with pytest.raises(GateFailed, match="stage 2"):
        approvals.approval_to_sign(store=store, **args)
    approvals.record_exception(store=store, decl=decl, operator=REGISTRAR, skip_stage=2, reason="CVE fix")
    record = approvals.approval_to_sign(store=store, **args)
    assert approvals.approve(store=store, signature=sign_bytes(record, keys[APPROVER]), **args).stage == 3


def test_production_critical_approval_needs_a_signature_even_without_declared_signers(
    tmp_path: Path, store: Any
) -> None:
    """No ``allowed_signers`` declared: an unsigned production-critical approval is refused (exit 2),
    naming the fix; a workload that is not production-critical is not."""
    bare = write_app(tmp_path, signed=False)
    ready(store, bare)
    with pytest.raises(InvalidInput, match="must be signed") as info:
        approvals.approve(store=store, **approval_args(bare, APPROVER))
    assert info.value.exit_code == 2 and "allowed_signers" in (info.value.hint or "")
    with pytest.raises(InvalidInput, match="allowed-signers"):
        approvals.approval_to_sign(store=store, **approval_args(bare, APPROVER))
    assert count(store, EventKind.APPROVAL_GRANTED) == 0
    blog = write_app(tmp_path, name="blog", category="internal-service", signed=False)
    digest = register(store, blog)
    deploy_canary(store, blog, digest)
    unsigned = approvals.approve(store=store, **approval_args(blog, APPROVER))
    assert "signature" not in unsigned.payload


def test_require_signatures_makes_every_workloads_approval_signed(
    tmp_path: Path, store: Any, keys: dict[str, Path]
) -> None:
    decl = write_app(
        tmp_path, name="blog", category="internal-service", extra=SIGNED_TOML + "require_signatures = true\n"
    )
    write_signers(decl, keys, (APPROVER,))
    ready(store, decl)
    with pytest.raises(InvalidInput, match="require_signatures"):
        approvals.approve(store=store, **approval_args(decl, APPROVER))
    assert (
        signed_approval(store, decl, keys[APPROVER], APPROVER).payload["signature"]["principal"] == APPROVER
    )


def test_require_signatures_covers_waivers_and_exceptions(
    tmp_path: Path, store: Any, keys: dict[str, Path]
) -> None:
    decl = write_app(
        tmp_path, name="blog", category="internal-service", extra=SIGNED_TOML + "require_signatures = true\n"
    )
    write_signers(decl, keys, (APPROVER,))
    register(store, decl)
    args = {"decl": decl, "gate": "local_health", "operator": APPROVER, "reason": "probe flaky"}
    with pytest.raises(InvalidInput, match="must be signed"):
        waivers.record_waiver(store=store, **args)
    with pytest.raises(InvalidInput, match="must be signed"):
        approvals.record_exception(store=store, decl=decl, operator=APPROVER, skip_stage=1, reason="outage")
    record = waivers.waiver_to_sign(store=store, **args)
    waiver = waivers.record_waiver(store=store, signature=sign_bytes(record, keys[APPROVER]), **args)
    assert waiver.payload["signature"]["principal"] == APPROVER


def test_verify_record_refuses_another_namespace(tmp_path: Path, keys: dict[str, Path]) -> None:
    signers = AllowedSigners(f"{APPROVER} {public(keys[APPROVER])}\n")
    record = b'{"x":1}'
    assert verify_record(record, sign_bytes(record, keys[APPROVER]), signers, principal=APPROVER).principal
    with pytest.raises(SignatureInvalid, match="Namespace"):
        verify_record(
            record, sign_bytes(record, keys[APPROVER], namespace="git"), signers, principal=APPROVER
        )


# ---------------------------------------------------------------------------- ledger verify


def rewrite_chain(src: Any, dst_url: str, edit: Any) -> None:
    """Copy every event into a fresh ledger, ``edit``-ing payloads and recomputing every hash."""
    from railiance_ledger.domain.events import GENESIS_HASH, canonical_json
    from railiance_ledger.ledger.chain import row_hash
    from railiance_ledger.ledger.schema import events
    from railiance_ledger.ledger.store import EventStore

    dst = EventStore.open(dst_url)
    prev = GENESIS_HASH
    rows = []
    for ev in src.read_all():
        payload = canonical_json(edit(ev))
        digest = row_hash(
            ev.seq, ev.event_id, ev.stream, ev.version, ev.kind, ev.candidate, ev.stage, ev.actor,
            ev.recorded_at, payload, prev,
        )  # fmt: skip
        rows.append(
            {
                "seq": ev.seq, "event_id": ev.event_id, "stream": ev.stream, "version": ev.version,
                "kind": ev.kind, "candidate": ev.candidate, "stage": ev.stage, "actor": ev.actor,
                "recorded_at": ev.recorded_at, "payload": payload, "prev_hash": prev, "hash": digest,
            }
        )  # fmt: skip
        prev = digest
    with dst.engine.begin() as conn:
        conn.execute(sa.insert(events), rows)
    dst.close()


def test_forged_approval_in_a_chain_rewritten_with_valid_hashes_exits_3_naming_it(
    tmp_path: Path, store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    from click.testing import CliRunner

    from railiance_ledger.cli import app

    ready(store, decl)
    granted = signed_approval(store, decl, keys[APPROVER], APPROVER)
    clean = CliRunner().invoke(app, ["--ledger", store.url, "ledger", "verify", "--json"])
    assert clean.exit_code == 0, clean.output

    def forge(ev: RecordedEvent) -> dict[str, Any]:
        if ev.event_id != granted.event_id:
            return ev.payload
        return {**ev.payload, "observation_window": {**ev.payload["observation_window"], "seconds": 60}}

    forged_url = f"sqlite:///{tmp_path / 'forged.db'}"
    rewrite_chain(store, forged_url, forge)
    result = CliRunner().invoke(app, ["--ledger", forged_url, "ledger", "verify", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    assert report["problem"] == "forged" and report["first_bad_seq"] == granted.seq
    assert "approval.granted" in report["detail"] and "does not verify" in report["detail"]


def test_a_swapped_allowed_signers_content_is_forged_too(
    tmp_path: Path, store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    from railiance_ledger.ledger.store import EventStore
    from railiance_ledger.ledger.verify import verify

    ready(store, decl)
    granted = signed_approval(store, decl, keys[APPROVER], APPROVER)

    def swap(ev: RecordedEvent) -> dict[str, Any]:
        if ev.event_id != granted.event_id:
            return ev.payload
        swapped = f"{APPROVER} {public(keys[OUTSIDER])}\n".encode().hex()
        block = {**ev.payload["signature"], "allowed_signers_hex": swapped}
        return {**ev.payload, "signature": block}

    url = f"sqlite:///{tmp_path / 'swapped.db'}"
    rewrite_chain(store, url, swap)
    with EventStore.open(url) as forged:
        report = verify(forged)
    assert not report.ok and report.problem == "forged" and report.first_bad_seq == granted.seq
    assert "signers hash" in report.detail


def test_cli_approve_prints_the_payload_and_records_it_signed(
    tmp_path: Path, store: Any, decl: Any, keys: dict[str, Path]
) -> None:
    from click.testing import CliRunner

    from railiance_ledger.cli import app

    ready(store, decl)
    base = ["--ledger", store.url, "approve", str(decl.app_dir), "--stage", "2", "--operator", APPROVER]
    base += ["--image", image_of("a"), "--window", "1h", "--rollback-target", image_of("f")]
    printed = CliRunner().invoke(app, [*base, "--payload"])
    assert printed.exit_code == 0, printed.output
    assert count(store, EventKind.APPROVAL_GRANTED) == 0
    sig = tmp_path / "record.json.sig"
    sig.write_text(sign_bytes(printed.stdout_bytes, keys[APPROVER]))
    unsigned = CliRunner().invoke(app, base)
    assert unsigned.exit_code == 2 and "must be signed" in unsigned.output
    wrong = tmp_path / "wrong.sig"
    wrong.write_text(sign_bytes(printed.stdout_bytes, keys[OUTSIDER]))
    refused = CliRunner().invoke(app, [*base, "--signature", str(wrong)])
    assert refused.exit_code == 1 and "not in the allowed signers" in refused.output
    done = CliRunner().invoke(app, [*base, "--signature", str(sig), "--json"])
    assert done.exit_code == 0, done.output
    assert count(store, EventKind.APPROVAL_GRANTED) == 1


def test_cli_waive_and_exception_print_their_payload_and_take_a_signature(
    tmp_path: Path, store: Any, keys: dict[str, Path]
) -> None:
    from click.testing import CliRunner

    from railiance_ledger.cli import app

    decl = write_app(
        tmp_path, name="blog", category="internal-service", extra=SIGNED_TOML + "require_signatures = true\n"
    )
    write_signers(decl, keys, (APPROVER,))
    register(store, decl)
    commands = {
        "waive": ["waive", str(decl.app_dir), "--gate", "local_health", "--reason", "probe flaky"],
        "exception": ["exception", str(decl.app_dir), "--skip-stage", "1", "--reason", "outage fix"],
    }
    for name, args in commands.items():
        base = ["--ledger", store.url, *args, "--operator", APPROVER]
        unsigned = CliRunner().invoke(app, base)
        assert unsigned.exit_code == 2 and "must be signed" in unsigned.output, (name, unsigned.output)
        printed = CliRunner().invoke(app, [*base, "--payload"])
        assert printed.exit_code == 0, (name, printed.output)
        sig = tmp_path / f"{name}.sig"
        sig.write_text(sign_bytes(printed.stdout_bytes, keys[APPROVER]))
        done = CliRunner().invoke(app, [*base, "--signature", str(sig)])
        assert done.exit_code == 0, (name, done.output)
    assert count(store, EventKind.WAIVER_GRANTED) == 1
    assert count(store, EventKind.EXCEPTION_EMERGENCY) == 1
