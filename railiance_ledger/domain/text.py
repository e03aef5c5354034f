"""Free text from operators and declarations: length limits, forbidden characters, safe quoting.

Pure (no I/O). Every name, reason, revision and declaration string is checked here before it is used,
so a 100 KB reason, an operator name with a right-to-left override or a NUL never reaches a record, a
regular expression or a file name; and every error message shows user input through :func:`shown`
(redacted, truncated, control characters made visible), never ``repr()``.
"""

from __future__ import annotations

import re
import unicodedata

from railiance_ledger.domain.redaction import redact

NAME_MAX = 200
"""Operator names and other identifiers of people or things."""
REASON_MAX = 2000
"""Reasons of waivers, exceptions, revocations and rollbacks."""
DECLARATION_STRING_MAX = 4096
"""Any one string of app.toml (commands, hosts, paths, queries...), capped before any matching."""
REVISION_MAX = 128

# Bidirectional embeddings, overrides and isolates (the "Trojan Source" characters).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_COMMIT_RE = re.compile(r"[0-9a-f]{7,64}")


def bad_character(value: str, *, allow_newlines: bool = False) -> str | None:
    """A description of the first forbidden character in ``value`` (control or bidi), else ``None``."""
    for index, char in enumerate(value):
        if char in "\t" or (allow_newlines and char in "\n\r"):
            continue
        if char in _BIDI:
            return f"a bidirectional-override character U+{ord(char):04X} at position {index}"
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            return f"a control character U+{ord(char):04X} at position {index}"
    return None


def text_problem(value: str, *, limit: int, allow_newlines: bool = False) -> str | None:
    """Why ``value`` is not acceptable free text (too long, a control or bidi character), else ``None``."""
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are accepted"
    bad = bad_character(value, allow_newlines=allow_newlines)
    return f"contains {bad}" if bad else None


def revision_problem(value: str) -> str | None:
    """Why ``value`` is not a revision (a git commit id, 7-64 lowercase hex), else ``None``."""
    if len(value) > REVISION_MAX or not _COMMIT_RE.fullmatch(value):
        return "is not a commit id (7 to 64 lowercase hexadecimal characters)"
    return None


def shown(value: object, limit: int = 80) -> str:
    """User input as it may appear in a message: redacted first (on the raw text, so line-based
    detection works), then shortened to ``limit`` characters, control and bidi characters shown as
    ``\\uXXXX``, in double quotes. Never ``repr()``."""
    text = redact(value if isinstance(value, str) else str(value))
    cut = len(text) > limit
    text = text[:limit]
    out = "".join(
        f"\\u{ord(c):04x}" if (c in _BIDI or unicodedata.category(c) in ("Cc", "Cs")) else c for c in text
    )
    return f'"{out}"' + (
        f" (... {len(value) if isinstance(value, str) else len(str(value))} characters)" if cut else ""
    )
