"""Chain verification and export.

:func:`verify` walks the ledger in ``seq`` order, in batches, recomputing every hash from the stored
columns (the payload is the canonical JSON text that was hashed, so nothing is parsed) and checking
every ``prev_hash`` link. The first problem found is classified:

- ``missing``: a gap in ``seq``, or a ``prev_hash`` that links to the event two back (the event in
  between is gone and something else stands in its place);
- ``reordered``: a ``prev_hash`` that does not link to the previous row but to some other stored
  event (rows were swapped or moved);
- ``edited``: a hash that does not match the row's contents while the link is right, or a link to
  no stored event at all (a row was rewritten, possibly with a recomputed hash);
- ``forged``: a signed human record (approval, revocation, waiver, emergency exception) whose SSH
  signature does not verify against the allowed-signers content it recorded (``domain.signing``):
  a record changed or invented by someone who rewrote the whole chain with valid hashes.

Truncation of the newest events cannot be seen from the chain alone; compare :attr:`VerifyReport.head_hash`
with a head recorded elsewhere (a State Hub note, an export) to detect it.
"""

from __future__ import annotations

import hashlib
import json.encoder
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import IO, Any, Literal

import sqlalchemy as sa

from railiance_ledger.domain.events import GENESIS_HASH
from railiance_ledger.domain.signing import SIGNED_KINDS, SignatureInvalid, verify_signed_payload
from railiance_ledger.ledger.chain import export_text, row_hash
from railiance_ledger.ledger.schema import EVENT_COLUMNS, events
from railiance_ledger.ledger.store import EventStore

Problem = Literal["edited", "missing", "reordered", "forged"]

_SIGNED = frozenset(str(kind) for kind in SIGNED_KINDS)

VERIFY_BATCH = 20_000
"""Rows fetched per query while verifying."""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: ``ok``, or the first bad ``seq`` and what is wrong with it."""

    ok: bool
    events_checked: int
    first_bad_seq: int | None
    problem: Problem | None
    detail: str
    head_seq: int = 0
    head_hash: str = GENESIS_HASH

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def verify(store: EventStore, *, batch: int = VERIFY_BATCH) -> VerifyReport:
    """Recompute the whole chain and report the first edited, missing or reordered event."""
    state = _State()
    fetch = _batch_fetcher(store, batch)
    # Fetch the next batch in a helper thread while this one hashes: the drivers release the GIL
    # while the database works, so on two cores fetching and hashing overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-verify") as pool:
        pending: Future[list[Any]] | None = pool.submit(fetch, 0)
        while pending is not None:
            rows = pending.result()
            if not rows:
                break
            pending = pool.submit(fetch, rows[-1][0]) if len(rows) == batch else None
            bad = _check_rows(store, rows, state)
            if bad is not None:
                if pending is not None:
                    pending.cancel()
                return bad
    checked, prev, expected_seq = state.checked, state.prev, state.expected_seq
    return VerifyReport(
        ok=True,
        events_checked=checked,
        first_bad_seq=None,
        problem=None,
        detail=f"{checked} events verified; head seq {expected_seq - 1}",
        head_seq=expected_seq - 1,
        head_hash=prev,
    )


@dataclass
class _State:
    prev: str = GENESIS_HASH  # stored hash of the previous row
    prev2: str | None = None  # stored hash of the row before that
    expected_seq: int = 1
    checked: int = 0


def _batch_fetcher(store: EventStore, batch: int) -> Callable[[int], list[Any]]:
    """Rows after a seq, as plain DB-API tuples (SQLAlchemy's result layer would cost a third of the budget)."""
    sql = (
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE seq > {'%s' if store.dialect == 'postgresql' else '?'} "
        f"ORDER BY seq LIMIT {int(batch)}"
    )

    def fetch(after: int) -> list[Any]:
        with store.reading("verify") as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql, (after,))
                return list(cursor.fetchall())
            finally:
                cursor.close()

    return fetch


def _check_rows(store: EventStore, rows: list[Any], state: _State) -> VerifyReport | None:
    """Check one batch against the running state; the first problem as a report, else None."""
    quote = json.encoder.encode_basestring
    sha256 = hashlib.sha256
    prev, prev2, expected_seq, checked = state.prev, state.prev2, state.expected_seq, state.checked
    try:
        for row in rows:
            (
                seq,
                event_id,
                stream,
                version,
                kind,
                candidate,
                stage,
                actor,
                recorded_at,
                payload,
                prev_hash,
                digest,
            ) = row
            if seq != expected_seq:
                return _bad(
                    checked,
                    expected_seq,
                    "missing",
                    f"seq {expected_seq}..{seq - 1} missing: the event after seq {expected_seq - 1} is seq {seq}",
                    prev,
                )
            if prev_hash != prev:
                return _classify_link(store, row, prev, prev2, checked)
            # Inlined chain.row_hash: this loop is the verify budget (>= 150,000 events/s).
            text = (
                f'{prev_hash}\n{{"actor":{quote(actor)},"candidate":{"null" if candidate is None else quote(candidate)}'
                f',"event_id":{quote(event_id)},"kind":{quote(kind)},"payload":{payload}'
                f',"prev_hash":{quote(prev_hash)},"recorded_at":{quote(recorded_at)},"seq":{seq}'
                f',"stage":{"null" if stage is None else stage},"stream":{quote(stream)},"version":{version}}}'
            )
            if sha256(text.encode()).hexdigest() != digest:
                return _bad(
                    checked,
                    seq,
                    "edited",
                    f"seq {seq} ({kind} in {stream!r}): stored hash does not match its contents; "
                    "the event was changed after it was recorded",
                    prev,
                )
            if kind in _SIGNED and '"signature"' in payload:
                forged = _check_signature(seq, stream, kind, candidate, stage, payload)
                if forged is not None:
                    return _bad(checked, seq, "forged", forged, prev)
            prev2 = prev
            prev = digest
            expected_seq = seq + 1
            checked += 1
        return None
    finally:
        state.prev, state.prev2, state.expected_seq, state.checked = prev, prev2, expected_seq, checked


def _check_signature(
    seq: int, stream: str, kind: str, candidate: str | None, stage: int | None, payload: str
) -> str | None:
    """Why the signed record at ``seq`` is forged, or ``None`` when its signature verifies."""
    try:
        verify_signed_payload(
            stream=stream, kind=kind, candidate=candidate, stage=stage, payload=json.loads(payload)
        )
    except SignatureInvalid as exc:
        return f"seq {seq} ({kind} in {stream!r}): the signature does not hold: {exc}; the record is forged"
    return None


def _bad(checked: int, seq: int, problem: Problem, detail: str, head_hash: str) -> VerifyReport:
    return VerifyReport(
        ok=False,
        events_checked=checked,
        first_bad_seq=seq,
        problem=problem,
        detail=detail,
        head_seq=seq - 1,
        head_hash=head_hash,
    )


def _classify_link(store: EventStore, row: Any, prev: str, prev2: str | None, checked: int) -> VerifyReport:
    """Row ``seq`` does not link to the previous row: decide missing, reordered or edited."""
    seq, event_id, stream, version, kind, candidate, stage, actor, recorded_at, payload, prev_hash, digest = (
        row
    )
    if prev2 is not None and prev_hash == prev2:
        return _bad(
            checked,
            seq - 1,
            "missing",
            f"seq {seq} links to seq {seq - 2}: the event originally between them is missing "
            f"(seq {seq - 1} is not it)",
            prev,
        )
    with store.reading("verify") as conn:
        other = conn.execute(
            sa.select(events.c.seq).where(events.c.hash == prev_hash, events.c.seq != seq).limit(1)
        ).scalar_one_or_none()
    if other is not None or prev_hash == GENESIS_HASH:
        where = f"seq {other}" if other is not None else "the genesis hash"
        return _bad(
            checked,
            seq,
            "reordered",
            f"seq {seq} ({kind} in {stream!r}) chains from {where}, not from seq {seq - 1}: "
            "events were moved or swapped",
            prev,
        )
    self_consistent = (
        row_hash(
            seq, event_id, stream, version, kind, candidate, stage, actor, recorded_at, payload, prev_hash
        )
        == digest
    )
    if self_consistent and seq > 1:
        return _bad(
            checked - 1,
            seq - 1,
            "edited",
            f"seq {seq - 1} was rewritten (its hash was recomputed): seq {seq} still links to its "
            "original hash",
            prev,
        )
    return _bad(
        checked,
        seq,
        "edited",
        f"seq {seq} ({kind} in {stream!r}): prev_hash was changed and links to no stored event",
        prev,
    )


def check_anchor(store: EventStore, report: VerifyReport, *, seq: int, hash: str) -> VerifyReport:
    """Compare a verified chain with an anchor ``(seq, hash)`` recorded elsewhere.

    The chain alone cannot show that its newest events were deleted (what remains still links
    up). An anchor taken earlier (``ledger verify`` prints the head; State Hub notes keep it) can:
    the event at ``seq`` must still exist and still carry ``hash``.
    """
    if not report.ok:
        return report
    if seq > report.head_seq:
        return replace(
            report,
            ok=False,
            first_bad_seq=report.head_seq + 1,
            problem="missing",
            detail=(
                f"the anchor names seq {seq} but the ledger ends at seq {report.head_seq}: "
                f"events {report.head_seq + 1}..{seq} were removed"
            ),
        )
    event = next(store.read_all(after_seq=seq - 1, limit=1), None) if seq > 0 else None
    if event is None or event.seq != seq:
        return replace(
            report,
            ok=False,
            first_bad_seq=seq,
            problem="missing",
            detail=f"the anchor names seq {seq}, which the ledger no longer holds",
        )
    if event.hash != hash:
        return replace(
            report,
            ok=False,
            first_bad_seq=seq,
            problem="edited",
            detail=(
                f"seq {seq} carries hash {event.hash[:16]}... but the anchor recorded {hash[:16]}...: "
                "the ledger was rewritten from this point on"
            ),
        )
    return report


def check_witness(store: EventStore, report: VerifyReport, heads: Iterable[tuple[int, str]]) -> VerifyReport:
    """Check a verified chain against every head ``(seq, hash)`` an external witness recorded.

    Each head is an anchor (:func:`check_anchor`): the first one the ledger no longer holds, or
    holds with another hash, fails the report and says so. No heads at all is not a pass for the
    witness: the report fails and says the witness recorded nothing to compare.
    """
    if not report.ok:
        return report
    seen = 0
    for seq, digest in sorted(heads):
        seen += 1
        checked = check_anchor(store, report, seq=seq, hash=digest)
        if not checked.ok:
            return replace(checked, detail=f"witness: {checked.detail}")
    if seen == 0:
        return replace(
            report,
            ok=False,
            problem="missing",
            first_bad_seq=None,
            detail="witness: State Hub recorded no ledger head to compare the chain with",
        )
    return replace(report, detail=f"{report.detail}; {seen} witnessed heads match")


def export_jsonl(store: EventStore, fp: IO[str], *, after_seq: int = 0) -> int:
    """Write every event as one canonical JSON envelope (with ``hash``) per line; return the count."""
    count = 0
    for rows in store.iter_row_batches(after_seq=after_seq, batch=VERIFY_BATCH, operation="export"):
        fp.writelines(export_text(*row) + "\n" for row in rows)
        count += len(rows)
    return count
