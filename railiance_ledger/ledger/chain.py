"""The hash chain over stored rows, without parsing payloads.

``domain.events.compute_hash`` defines the chain: ``sha256(prev_hash + "\\n" + canonical_json(envelope))``.
The store keeps ``payload`` as the canonical JSON text it hashed, so the canonical envelope of a stored
row can be assembled by concatenation: keys in sorted order, strings escaped exactly as
``json.dumps(..., ensure_ascii=False)`` escapes them, and the payload text inserted verbatim. This is
byte-for-byte what ``compute_hash(prev, RecordedEvent.envelope())`` hashes (a test pins it), at a
fraction of the cost, which is what lets ``verify`` run at hundreds of thousands of events a second.
"""

from __future__ import annotations

import hashlib
import json.encoder

_quote = json.encoder.encode_basestring  # what json.dumps(str, ensure_ascii=False) emits
_sha256 = hashlib.sha256


def envelope_text(
    seq: int,
    event_id: str,
    stream: str,
    version: int,
    kind: str,
    candidate: str | None,
    stage: int | None,
    actor: str,
    recorded_at: str,
    payload_text: str,
    prev_hash: str,
) -> str:
    """The canonical JSON of an envelope without ``hash`` (sorted keys, no whitespace)."""
    return (
        f'{{"actor":{_quote(actor)},"candidate":{"null" if candidate is None else _quote(candidate)}'
        f',"event_id":{_quote(event_id)},"kind":{_quote(kind)},"payload":{payload_text}'
        f',"prev_hash":{_quote(prev_hash)},"recorded_at":{_quote(recorded_at)},"seq":{int(seq)}'
        f',"stage":{"null" if stage is None else int(stage)},"stream":{_quote(stream)}'
        f',"version":{int(version)}}}'
    )


def row_hash(
    seq: int,
    event_id: str,
    stream: str,
    version: int,
    kind: str,
    candidate: str | None,
    stage: int | None,
    actor: str,
    recorded_at: str,
    payload_text: str,
    prev_hash: str,
) -> str:
    """The hash a row with these columns must carry: ``sha256(prev_hash + "\\n" + envelope_text)``."""
    text = envelope_text(
        seq, event_id, stream, version, kind, candidate, stage, actor, recorded_at, payload_text, prev_hash
    )
    return _sha256((prev_hash + "\n" + text).encode("utf-8")).hexdigest()


def export_text(
    seq: int,
    event_id: str,
    stream: str,
    version: int,
    kind: str,
    candidate: str | None,
    stage: int | None,
    actor: str,
    recorded_at: str,
    payload_text: str,
    prev_hash: str,
    hash_: str,
) -> str:
    """The canonical JSON of the full envelope *with* ``hash`` (what ``ledger export`` writes)."""
    return (
        f'{{"actor":{_quote(actor)},"candidate":{"null" if candidate is None else _quote(candidate)}'
        f',"event_id":{_quote(event_id)},"hash":{_quote(hash_)},"kind":{_quote(kind)},"payload":{payload_text}'
        f',"prev_hash":{_quote(prev_hash)},"recorded_at":{_quote(recorded_at)},"seq":{int(seq)}'
        f',"stage":{"null" if stage is None else int(stage)},"stream":{_quote(stream)}'
        f',"version":{int(version)}}}'
    )
