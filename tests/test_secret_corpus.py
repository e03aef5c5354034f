"""The measured corpus (tests/secret_corpus.py): every fake secret shape is redacted, every piece of
evidence stays readable, and redaction stays linear on hostile input."""

from __future__ import annotations

import pytest

from railiance_ledger.domain.redaction import MARKER_RE, redact, redact_value
from tests.secret_corpus import EVIDENCE, SHAPES


def test_the_corpus_has_at_least_sixty_shapes() -> None:
    assert len(SHAPES) >= 60
    assert len({s.name for s in SHAPES}) >= 60


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_every_shape_is_redacted(shape: object) -> None:
    text, secret = shape.text, shape.secret  # type: ignore[attr-defined]
    out = redact(text)
    assert secret not in out
    assert MARKER_RE.search(out)
    assert redact(out) == out  # idempotent
    assert secret not in str(redact_value({"excerpt": text, "lines": text.splitlines()}))


@pytest.mark.parametrize("evidence", EVIDENCE)
def test_evidence_stays_readable(evidence: str) -> None:
    assert redact(evidence) == evidence


@pytest.mark.parametrize(
    "hostile", ["a." * 50_000, "a:" * 50_000, "x://" * 25_000, "a;pwd=" * 15_000, "A1b2=" * 20_000]
)
def test_redaction_finishes_on_hostile_repetitions(hostile: str) -> None:
    # 100,000 characters: the quadratic patterns of the old detector took minutes here.
    assert isinstance(redact(hostile), str)
