"""The one redaction path for everything that leaves the process.

Ledger payloads, State Hub notes, Dagster metadata, CLI output and logs all pass through
:func:`redact` (text) or :func:`redact_value` (structured data). Forbidden evidence from the
deployment-lifecycle spec -- plaintext secrets, bearer tokens, API keys, kubeconfigs, private keys,
environment dumps, credentialed URLs -- is replaced by a marker ``[REDACTED:<kind>]`` that says what
kind of thing was removed, so the evidence stays useful ("which credential was in this log line?")
without being sensitive.

Design rules:

- Detection is shape-based (PEM blocks, JWTs, vendor token prefixes, credentialed URLs, ...) plus
  key-based (``PASSWORD=...``, ``token: ...``, ``"api_key": "..."``): the key is kept, the value goes.
- Ordinary evidence must survive untouched: commit ids, ``sha256:`` digests, uuids, Kubernetes object
  names, HTTP status codes, timestamps, URLs without credentials, secret *names* and references
  (``secretKeyRef``, ``secretName``, ``existingSecret``, OpenBao paths such as ``kv/apps/x/api``).
- Redaction is idempotent: markers are never detected as secrets, so ``redact(redact(t)) == redact(t)``.
- Overlapping detections are merged into one span (nothing detected may leak); the merged span's kind
  is the most specific detector that contributed (e.g. ``github-token`` beats ``env-secret``).

Pure Python, no I/O; the manifest gate ("generated manifests contain no plaintext secrets") uses
:func:`is_secret_key` and :func:`looks_like_secret_value` from here, so there is one heuristic.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9][a-z0-9-]*\]")
"""A redaction marker as produced by :func:`marker`."""

SECRET_FIELD = "secret-field"
"""Marker kind used by :func:`redact_value` for values of secret-named keys."""


@dataclass(frozen=True)
class Finding:
    """One secret-looking thing found in text: its kind (e.g. ``pem-private-key``) and span."""

    kind: str
    start: int
    end: int


def marker(kind: str) -> str:
    """The marker that replaces a secret of ``kind``: ``[REDACTED:<kind>]``."""
    return f"[REDACTED:{kind}]"


# Tie-breaking when detections overlap: the highest priority names the merged span.
_PRIORITY: dict[str, int] = {
    "env-dump": 200,
    "kubeconfig": 100,
    "pem-private-key": 95,
    "docker-auth": 90,
    "aws-secret-key": 90,
    "aws-access-key": 80,
    "github-token": 80,
    "gitlab-token": 80,
    "npm-token": 80,
    "pypi-token": 80,
    "slack-token": 80,
    "google-api-key": 80,
    "openbao-token": 80,
    "stripe-key": 80,
    "openai-key": 80,
    "anthropic-key": 80,
    "google-oauth-token": 80,
    "azure-sas": 80,
    "azure-client-secret": 80,
    "provider-token": 78,
    "age-secret-key": 95,
    "jwt": 75,
    "forgejo-token": 70,
    "basic-auth": 65,
    "bearer-token": 60,
    "url-credentials": 50,
    "env-secret": 10,
    "high-entropy": 5,
}

KINDS: tuple[str, ...] = tuple(sorted(_PRIORITY))
"""Every marker kind :func:`redact` can produce (plus ``secret-field`` from :func:`redact_value`)."""


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# --------------------------------------------------------------------------------------------------
# Key-name heuristic
# --------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STRONG_SUBSTRINGS = tuple(
    sorted(
        _wordset(
            "password passwd passphrase secret token apikey privatekey secretkey accesskey credential "
            "authorization cookie"
        )
    )
)
_NOT_SECRET_WORDS = _wordset("tokenizer tokenize tokenized tokenization tokenizers secretary secretariat")
_WEAK_WORDS = _wordset("auth oauth dsn pwd creds cred pat")
_KEY_QUALIFIERS = _wordset(
    "api access private secret signing sign encryption encrypt master ssh client account license "
    "deploy app service admin sas storage session webhook hmac shared root auth jwt aes gpg pgp "
    "rsa ecdsa ed25519 tls"
)
# A key whose last word is one of these names/describes a secret rather than holding it.
_NEUTRAL_LAST = _wordset(
    "ref refs reference references path paths name names file files filename filepath dir "
    "directory mount location url uri urls endpoint type kind method mode provider scheme source "
    "store class version ttl expiry expires expiration lifetime length len count enabled enable "
    "disabled required optional field env var policy policies role format namespace backend "
    "engine label labels selector annotation hint rotation timeout duration size at seconds secs "
    "minutes hours days user username email header audience audiences issuer algorithm alg "
    "exchange status state valid present configured set template generator rules rule check "
    "checks"
)
_REFERENCE_ANYWHERE = frozenset({"ref", "refs", "reference"})
_REFERENCE_FIRST = frozenset({"existing", "external"})
# Always kubeconfig material, wherever they appear (the client certificate identifies the user).
_KUBECONFIG_KEYS = frozenset({"client-key-data", "client-certificate-data"})
# Inside a kubeconfig document only: which cluster it reaches and the CA it trusts are not evidence.
_KUBECONFIG_DOC_KEYS = frozenset({"certificate-authority-data", "server"})


def _key_words(name: str) -> list[str]:
    words: list[str] = []
    for part in re.split(r"[^A-Za-z0-9]+", name):
        words.extend(w.lower() for w in _WORD_RE.findall(part))
    return words


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """True when a key/field/variable name says its value is a secret.

    Case-insensitive; understands camelCase, snake_case, kebab-case, dotted and ENV_STYLE names
    (``DATABASE_PASSWORD``, ``apiKey``, ``X-Api-Key``, ``client-key-data``, ``_authToken``). Names
    that *refer to* a secret rather than hold it are not secret keys: ``secretName``,
    ``secretKeyRef``, ``existingSecret``, ``tokenPath``, ``*_ref``, ``*_path``, ``*_name``,
    ``*_file``, ``*_url``, ``*_type``, ``*_ttl`` and similar.
    """
    if name.strip().lower() in _KUBECONFIG_KEYS:
        return True
    words = _key_words(name)
    if not words:
        return False
    if words == ["pwd"]:  # the shell's current directory, not a password
        return False
    # routing.tls_secret: the NAME of the Ingress TLS Secret (spec.tls[].secretName), a reference
    if words == ["tls", "secret"]:
        return False
    if words[-1] in _NEUTRAL_LAST or words[0] in _REFERENCE_FIRST:
        return False
    if any(w in _REFERENCE_ANYWHERE for w in words):
        return False
    for i, w in enumerate(words):
        if w in _NOT_SECRET_WORDS:
            continue
        if any(s in w for s in _STRONG_SUBSTRINGS):
            return True
        if w in _WEAK_WORDS or (w.endswith("auth") and len(w) > 4):
            return True
        if w == "key" and i > 0 and words[i - 1] in _KEY_QUALIFIERS:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Value heuristics
# --------------------------------------------------------------------------------------------------

_INERT_WORDS = _wordset(
    "ok true false yes no on off none null nil ~ n/a na set unset present absent missing "
    "configured enabled disabled required optional redacted masked hidden success succeeded "
    "successful failed failure denied granted valid invalid expired ready pending unknown default "
    "auto empty omitted undefined"
)
_REFERENCE_PREFIXES = (
    "vault:",
    "openbao:",
    "bao:",
    "ref+",
    "op://",
    "arn:aws:",
    "file:",
    "env:",
    "secretref:",
    "secretkeyref",
    "valuefrom",
)
_TEMPLATE_RE = re.compile(
    r"^(?:\$\{[^}]*\}|\$\([^)]*\)|\{\{.*\}\}|\$[A-Za-z_][A-Za-z0-9_]*|<[^<>]*>|%\([^)]*\)s)$"
)
_MASKED_RE = re.compile(r"^[*xX\u2022#.\-]+$")
_ABS_PATH_RE = re.compile(r"^(?:/|~/|\./|\.\./)[^\s]*$")
_LOWER_PATH_RE = re.compile(r"^[a-z0-9_.@-]+(?:/[a-z0-9_.@{}-]+)+/?$")
_URL_NO_CREDS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s@/?#]+(?:[/#][^\s?]*)?$")


def _only_markers(value: str) -> bool:
    return not MARKER_RE.sub("", value).strip(" \t\r\n\"'`")


def _is_reference_or_inert(value: str) -> bool:
    """True when a secret-keyed value is clearly not a plaintext secret (reference, placeholder...)."""
    v = value.strip().strip("\"'")
    if not v or _only_markers(v):
        return True
    low = v.lower()
    if low in _INERT_WORDS or _MASKED_RE.match(v) or _TEMPLATE_RE.match(v):
        return True
    if low.startswith(_REFERENCE_PREFIXES):
        return True
    if _ABS_PATH_RE.match(v) or _LOWER_PATH_RE.match(v):
        return True
    return bool(_URL_NO_CREDS_RE.match(v))


_SAFE_SUBSTRING_RE = re.compile(
    r"sha(?:256|384|512|1):[0-9a-fA-F]{32,}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![A-Za-z0-9])[0-9a-fA-F]{7,}(?![A-Za-z0-9])"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_IDENT_WORD_RE = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}")
_DNS_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$")


def _shannon(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _char_class(c: str) -> int:
    if c.islower():
        return 0
    if c.isupper():
        return 1
    if c.isdigit():
        return 2
    return 3


def _is_high_entropy_token(value: str) -> bool:
    """A single random-looking token: long, mixed character classes, high entropy, not evidence."""
    if len(value) < 20 or any(c.isspace() for c in value):
        return False
    if "://" in value or _ABS_PATH_RE.match(value) or _LOWER_PATH_RE.match(value):
        return False
    if _DNS_NAME_RE.match(value) and any(c in "-." for c in value):
        return False  # Kubernetes object / DNS names
    rest = _SAFE_SUBSTRING_RE.sub("", value)
    if len(rest) < 20:
        return False  # digests, commit ids, uuids, timestamps
    alnum = [c for c in rest if c.isalnum()]
    if len(alnum) < 0.8 * len(rest):
        return False  # mostly punctuation/separators: structured, not random
    classes = {_char_class(c) for c in alnum}
    if len(classes) < 2 or _shannon(rest) < 3.5:
        return False
    seq = [_char_class(c) for c in alnum]
    transitions = sum(1 for a, b in pairwise(seq) if a != b) / max(1, len(seq) - 1)
    if transitions < 0.2:
        return False  # long same-class runs: not random
    letters = [c.lower() for c in alnum if c.isalpha()]
    vowels = sum(c in "aeiouy" for c in letters) / max(1, len(letters))
    if vowels >= 0.3 and sum(len(w) for w in _IDENT_WORD_RE.findall(rest)) >= 0.7 * len(rest):
        return False  # pronounceable words: CamelCaseIdentifiers, words with a version number
    if classes == {0, 2} or classes == {1, 2}:
        # single-case alphanumerics: only long, separator-free and dense ones
        return len(rest) >= 24 and len(alnum) == len(rest) and _shannon(rest) >= 3.8
    return True


# --------------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------------

Detector = Callable[[str], Iterator[Finding]]


def _b64decode(token: str) -> bytes | None:
    t = token.replace("-", "+").replace("_", "/")
    t = t + "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decodes_to_userpass(token: str) -> bool:
    raw = _b64decode(token)
    if raw is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return ":" in text and len(text) >= 3 and text.isprintable()


def _b64_private_key(token: str) -> bool:
    raw = _b64decode(token[: len(token) - len(token) % 4][:120])
    return raw is not None and b"PRIVATE KEY" in raw


def _b64_docker_config(token: str) -> bool:
    raw = _b64decode(token[: len(token) - len(token) % 4][:60])
    return raw is not None and b'"auths"' in raw


def _mixed_token(token: str) -> bool:
    """At least two of lower/upper/digit and a sensible length: not an English word."""
    classes = {_char_class(c) for c in token if c.isalnum()}
    return len(token) >= 12 and len(classes & {0, 1, 2}) >= 2


def _has_upper_lower_digit(token: str) -> bool:
    body = token.split(".", 1)[-1]
    return {_char_class(c) for c in body} >= {0, 1, 2}


@dataclass(frozen=True)
class _Shape:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None  # validates the secret group


_SHAPES: tuple[_Shape, ...] = (
    _Shape(
        "pem-private-key",
        re.compile(
            r"-----BEGIN (?P<label>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
            r"(?:[\s\S]*?-----END (?P=label)-----|(?:\\[nrt]|[A-Za-z0-9+/=\s])*)"
        ),
    ),
    _Shape(
        "pem-private-key",
        re.compile(r"(?<![A-Za-z0-9+/])LS0tLS1CRUdJTi[A-Za-z0-9+/]+={0,2}"),
        _b64_private_key,
    ),
    _Shape(
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    ),
    _Shape("aws-access-key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")),
    _Shape(
        "aws-secret-key",
        re.compile(
            r"(?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)[\"']?\s*(?:=>|:=|=|:)\s*"
            r"[\"']?(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    _Shape(
        "github-token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255})"),
    ),
    _Shape(
        "gitlab-token",
        re.compile(
            r"(?<![A-Za-z0-9_\-])(?:glpat|gldt|glrt|glptt|glcbt|glsoat|gloas|glft|glimt|glagent)"
            r"-[A-Za-z0-9_\-]{20,}"
        ),
    ),
    _Shape("npm-token", re.compile(r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36,}")),
    _Shape("pypi-token", re.compile(r"(?<![A-Za-z0-9_\-])pypi-Ag[A-Za-z0-9_\-]{50,}")),
    _Shape(
        "slack-token",
        re.compile(r"(?<![A-Za-z0-9_\-])(?:xox[abposrce]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,})"),
    ),
    _Shape("slack-token", re.compile(r"hooks\.slack\.com/services/(?P<s>[A-Za-z0-9_/\-]{10,})")),
    _Shape("google-api-key", re.compile(r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])")),
    _Shape("openbao-token", re.compile(r"(?<![A-Za-z0-9_.\-])hv[sbr]\.[A-Za-z0-9_\-]{24,}")),
    _Shape(
        "openbao-token",
        re.compile(r"(?<![A-Za-z0-9_.\-/])s\.[A-Za-z0-9]{24,}(?![A-Za-z0-9_.\-])"),
        _has_upper_lower_digit,
    ),
    _Shape(
        "bearer-token",
        re.compile(r"(?i:\bbearer)[ \t]+(?P<s>[A-Za-z0-9\-._~+/]+=*)"),
        _mixed_token,
    ),
    _Shape(
        "basic-auth",
        re.compile(r"(?i:\bbasic)[ \t]+(?P<s>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"),
        _decodes_to_userpass,
    ),
    _Shape(
        "basic-auth",
        re.compile(r"(?<!\S)(?:-u|--user)[ =]+(?P<s>[^\s:'\"]+:[^\s'\"]+)"),
        lambda s: not re.fullmatch(r"\d+:\d+", s),
    ),
    _Shape(
        "docker-auth",
        re.compile(r"[\"']?\bauth[\"']?\s*:\s*[\"'](?P<s>[A-Za-z0-9+/]{4,}={0,2})[\"']"),
        _decodes_to_userpass,
    ),
    _Shape(
        "docker-auth",
        re.compile(r"[\"'](?i:identitytoken|registrytoken)[\"']\s*:\s*[\"'](?P<s>[^\"'\s]+)[\"']"),
    ),
    _Shape("docker-auth", re.compile(r"(?<![A-Za-z0-9+/])ey[A-Za-z0-9+/]{20,}={0,2}"), _b64_docker_config),
    # Provider families from the gitleaks rule set (config/gitleaks.toml, v8.30): fixed prefixes,
    # one character class each, so every pattern is linear.
    _Shape("stripe-key", re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}")),
    _Shape("stripe-key", re.compile(r"(?<![A-Za-z0-9_])whsec_[A-Za-z0-9]{24,}")),
    _Shape(
        "openai-key",
        re.compile(
            r"(?<![A-Za-z0-9_\-])sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{16,}T3BlbkFJ[A-Za-z0-9_\-]{16,}"
        ),
    ),
    _Shape("anthropic-key", re.compile(r"(?<![A-Za-z0-9_\-])sk-ant-[a-z]{3,8}\d\d-[A-Za-z0-9_\-]{32,}")),
    _Shape("google-oauth-token", re.compile(r"(?<![A-Za-z0-9_\-])ya29\.[A-Za-z0-9_\-]{20,}")),
    _Shape("azure-sas", re.compile(r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{16,})")),
    _Shape(
        "azure-client-secret",
        re.compile(r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}"),
    ),
    _Shape(
        "provider-token",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:hf_[A-Za-z0-9]{30,}|do[opr]_v1_[a-f0-9]{64}|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
            r"|SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}|SK[0-9a-fA-F]{32}(?![0-9A-Za-z])"
            r"|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|dp\.pt\.[A-Za-z0-9]{43}|lin_api_[A-Za-z0-9]{40}"
            r"|sq0csp-[0-9A-Za-z_\-]{43}|EAA[MC][A-Za-z0-9]{100,}|PMAK-[a-f0-9]{24}-[a-f0-9]{34})"
        ),
    ),
    _Shape("age-secret-key", re.compile(r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}")),
    # ODBC/ADO.NET connection strings: ";Pwd=..." / ";Password=..." (not the shell's PWD=/path)
    _Shape("url-credentials", re.compile(r"(?i:;[ \t]*(?:pwd|password)[ \t]*=)(?P<s>[^;\r\n\"']+)")),
)


def _shape_findings(text: str) -> Iterator[Finding]:
    for shape in _SHAPES:
        for m in shape.pattern.finditer(text):
            group = "s" if "s" in shape.pattern.groupindex else 0
            start, end = m.span(group)
            if shape.check is not None and not shape.check(m.group(group)):
                continue
            yield Finding(shape.kind, start, end)


_URL_CRED_RE = re.compile(
    r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,31}://(?P<s>[^\s/?#\"'<>]{1,512})@(?=[A-Za-z0-9\[])"
)


def _url_findings(text: str) -> Iterator[Finding]:
    for m in _URL_CRED_RE.finditer(text):
        userinfo = m.group("s")
        if _only_markers(userinfo):
            continue
        user, sep, password = userinfo.partition(":")
        if (sep and password) or (not sep and looks_like_secret_value(user)):
            yield Finding("url-credentials", m.start("s"), m.end("s"))


# KEY=VALUE / KEY: VALUE / "key": "value" / --key value
_KV_RE = re.compile(
    r"(?<![A-Za-z0-9_.\-/\\])(?P<q>[\"']?)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P=q)[ \t]*"
    r"(?P<sep>:=|=>|=|:)(?![=:/])"
)
_CLI_RE = re.compile(
    r"(?<![\w\-])--(?P<key>[A-Za-z][A-Za-z0-9_\-]*)(?:=|[ \t]+)"
    r"(?P<val>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'\-][^\s\"']*)"
)
_LINE_PREFIX_RE = re.compile(r"[ \t]*(?:-[ \t]+)?(?:(?:export|declare[ \t]+-x|set)[ \t]+)?")
_BLOCK_INDICATOR_RE = re.compile(r"[|>][0-9+\-]*[ \t]*(?:#.*)?$")
_AUTH_SCHEME_RE = re.compile(r"[ \t]*[\"']?(?i:(bearer|basic|token))[ \t]+(?=\S)")
_KUBECONFIG_DOC_RE = re.compile(
    r"(?m)^[ \t]*kind:[ \t]*[\"']?Config[\"']?[ \t]*$"
    r"|\"kind\"\s*:\s*\"Config\"|\bclient-(?:key|certificate)-data\b"
)
_STOP_MIDLINE = " \t\r\n\"'&;,}])<>"


def _line_bounds(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, (len(text) if end == -1 else end)


def _scan_quoted(text: str, i: int) -> int:
    """Index of the closing quote for the quote at ``text[i]`` (or the end of the line)."""
    quote = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\" and quote == '"':
            j += 2
            continue
        if c == quote:
            if quote == "'" and j + 1 < n and text[j + 1] == "'":
                j += 2
                continue
            return j
        if c == "\n":
            return j
        j += 1
    return n


def _block_scalar_span(text: str, line_start: int, line_end: int) -> tuple[int, int] | None:
    line = text[line_start:line_end]
    indent = len(line) - len(line.lstrip(" \t"))
    pos = line_end + 1
    first: int | None = None
    last_end = line_end
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl == -1 else nl
        body = text[pos:end]
        stripped = body.lstrip(" \t")
        if stripped.strip():
            if len(body) - len(stripped) <= indent:
                break
            if first is None:
                first = pos + len(body) - len(stripped)
            last_end = pos + len(body.rstrip(" \t\r"))
        if nl == -1:
            break
        pos = nl + 1
    return None if first is None else (first, last_end)


def _value_span(text: str, m: re.Match[str], at_line_start: bool) -> tuple[int, int] | None:
    sep = m.group("sep")
    i = m.end()
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n or text[i] in "\r\n":
        return None
    if text[i] in "\"'":
        return i + 1, _scan_quoted(text, i)
    line_start, line_end = _line_bounds(text, i)
    rest = text[i:line_end]
    if sep == ":" and at_line_start and _BLOCK_INDICATOR_RE.match(rest):
        return _block_scalar_span(text, line_start, line_end)
    if text[i] in "{[":
        return None  # a nested structure: its own keys are scanned separately
    if sep == ":" and at_line_start:
        first_word = rest.split(None, 1)[0] if rest.strip() else ""
        if first_word.lower().rstrip(".,;") in _INERT_WORDS:
            return i, i + len(first_word)  # prose ("auth: failed because ..."), not a value
        return i, line_start + len(text[line_start:line_end].rstrip(" \t\r"))
    j = i
    stops = " \t\r\n\"'" if at_line_start else _STOP_MIDLINE
    while j < line_end and text[j] not in stops:
        j += 1
    return i, j


def _kv_findings(text: str) -> Iterator[Finding]:
    kubeconfig_doc = bool(_KUBECONFIG_DOC_RE.search(text))
    for m in _KV_RE.finditer(text):
        key = m.group("key")
        kube_only = kubeconfig_doc and key.lower() in _KUBECONFIG_DOC_KEYS
        if not kube_only and not is_secret_key(key):
            continue
        line_start, _ = _line_bounds(text, m.start())
        at_line_start = bool(_LINE_PREFIX_RE.fullmatch(text[line_start : m.start()]))
        kind = _kv_kind(key, kubeconfig_doc)
        scheme = None
        if "authorization" in "".join(_key_words(key)):
            scheme = _AUTH_SCHEME_RE.match(text, m.end())
        if scheme:
            start = j = scheme.end()
            while j < len(text) and not text[j].isspace() and text[j] not in "\"',;":
                j += 1
            end = j
            kind = {"bearer": "bearer-token", "basic": "basic-auth"}.get(
                scheme.group(1).lower(), "forgejo-token"
            )
        else:
            span = _value_span(text, m, at_line_start)
            if span is None:
                continue
            start, end = span
        value = text[start:end]
        if not kube_only and _is_reference_or_inert(value):
            continue
        yield Finding(kind, start, end)
    for m in _CLI_RE.finditer(text):
        if not is_secret_key(m.group("key")):
            continue
        start, end = m.span("val")
        if text[start] in "\"'":
            start, end = start + 1, end - 1
        if _is_reference_or_inert(text[start:end]):
            continue
        yield Finding(_kv_kind(m.group("key"), kubeconfig_doc), start, end)


def _kv_kind(key: str, kubeconfig_doc: bool) -> str:
    words = _key_words(key)
    if key.lower() in _KUBECONFIG_KEYS or kubeconfig_doc:
        return "kubeconfig"
    if any(w in ("forgejo", "gitea", "codeberg") for w in words) and "token" in "".join(words):
        return "forgejo-token"
    return "env-secret"


_ENV_LINE_RE = re.compile(r"(?:export |declare -x )?(?P<key>[A-Z_][A-Z0-9_]*)=.*")
_ENV_DUMP_KEYS = _wordset(
    "PATH HOME HOSTNAME SHELL USER PWD TERM LANG LOGNAME SHLVL KUBERNETES_SERVICE_HOST "
    "KUBERNETES_SERVICE_PORT KUBERNETES_PORT OLDPWD _"
)
_ENV_DUMP_MIN_LINES = 6


def _env_dump_findings(text: str) -> Iterator[Finding]:
    run: list[tuple[int, int, str]] = []

    def flush() -> Iterator[Finding]:
        if len(run) >= _ENV_DUMP_MIN_LINES and sum(k in _ENV_DUMP_KEYS for _, _, k in run) >= 2:
            yield Finding("env-dump", run[0][0], run[-1][1])

    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _ENV_LINE_RE.fullmatch(body)
        if m:
            run.append((pos, pos + len(body), m.group("key")))
        else:
            yield from flush()
            run = []
        pos += len(line)
    yield from flush()


_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9+/_\-.~])[A-Za-z0-9+/_\-.~]{20,}={0,2}")
_CERT_BLOCK_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s\\]{0,65536}?-----END CERTIFICATE-----"
)
_B64_CERT_PREFIX = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"  # base64 of "-----BEGIN CERTIFICATE-----"


def _entropy_findings(text: str) -> Iterator[Finding]:
    """The fallback: any standalone random-looking token (see :func:`_is_high_entropy_token`)."""
    certs = [c.span() for c in _CERT_BLOCK_RE.finditer(text)] if "CERTIFICATE" in text else []
    for m in _TOKEN_RE.finditer(text):
        token = m.group(0).rstrip(".")
        if token.startswith(_B64_CERT_PREFIX) or any(a <= m.start() < b for a, b in certs):
            continue  # a public certificate (a CA bundle, tls.crt): evidence, not a secret
        if text[max(0, m.start() - 3) : m.start()] == "h1:" and len(token) == 44:
            continue  # a Go module checksum (go.sum): evidence
        if _is_high_entropy_token(token):
            yield Finding("high-entropy", m.start(), m.start() + len(token))


_DETECTORS: tuple[Detector, ...] = (
    _shape_findings,
    _url_findings,
    _kv_findings,
    _env_dump_findings,
    _entropy_findings,
)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _trim(text: str, f: Finding) -> Finding:
    start, end = f.start, f.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Finding(f.kind, start, end)


def find_secrets(text: str) -> list[Finding]:
    """Every secret-looking span in ``text``: non-overlapping, sorted by position.

    Overlapping detections are merged so that no detected character is left out; the merged
    finding is named after its most specific contributor. Existing ``[REDACTED:...]`` markers are
    never reported, which makes :func:`redact` idempotent.
    """
    candidates: list[Finding] = []
    for detector in _DETECTORS:
        for raw in detector(text):
            f = _trim(text, raw)
            if f.end > f.start and not _only_markers(text[f.start : f.end]):
                candidates.append(f)
    candidates.sort(key=lambda f: (f.start, -f.end))
    merged: list[Finding] = []
    for f in candidates:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = max(
                (last, f),
                key=lambda c: (_PRIORITY.get(c.kind, 0), c.end - c.start),
            )
            merged[-1] = Finding(best.kind, last.start, max(last.end, f.end))
        else:
            merged.append(f)
    return merged


_INERT_FULL_RE = re.compile(
    r"sha(?:256|384|512):[0-9a-f]{32,128}"  # a digest
    # an image pinned by digest (no user:password@ can match: ':' only before digits or a tag)
    r"|[a-z0-9][a-z0-9._\-]*(?::[0-9]{1,5})?(?:/[a-z0-9._\-]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?"
    r"@sha256:[0-9a-f]{64}"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"  # a timestamp
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # a uuid
    r"|[0-9a-f]{40}"  # a commit id
    r"|-?\d{1,18}(?:\.\d{1,18})?"  # a number
    r"|[A-Za-z]{0,16}"  # a short word: no detector matches letters alone this short
)
"""Whole strings that cannot hold a secret: evidence shapes the spec allows. A fast path only;
anything else goes through every detector."""


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``; everything else unchanged.

    Idempotent: ``redact(redact(t)) == redact(t)``.
    """
    if _INERT_FULL_RE.fullmatch(text):
        return text
    if len(text) <= 256:
        return _redact_short(text)
    return _redact_uncached(text)


@functools.lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    """Short strings repeat a lot in structured evidence (names, states, reasons): remember them."""
    return _redact_uncached(text)


def _redact_uncached(text: str) -> str:
    findings = find_secrets(text)
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(marker(f.kind))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# Personal data of end users in log excerpts
# --------------------------------------------------------------------------------------------------

PII_KINDS: tuple[str, ...] = ("card", "email", "ip", "phone")
"""Marker kinds of :func:`redact_log` beyond :data:`KINDS`."""

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})"
    r"(?:\.[A-Za-z0-9\-]{1,63}){1,8}"
)
_CARD_RE = re.compile(r"(?<![\d.\-])\d(?:[ \-]?\d){12,18}(?![\d\-])")
_PHONE_RE = re.compile(r"(?<![\w+.\-:/])\+?\(?\d{1,4}\)?(?:[ .\-]?\(?\d{2,4}\)?){2,4}(?![\w.\-:/])")
_IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _end_user_ip(text: str) -> bool:
    """A public (global) address: an end user's, not a pod, node, loopback or documentation one."""
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def find_pii(text: str) -> list[Finding]:
    """E-mail addresses, phone numbers, payment card numbers (Luhn-valid) and public IP addresses.

    Private, loopback and cluster addresses stay (they are evidence of where a pod ran); card numbers
    must pass the Luhn check; phone numbers need a leading ``+`` or separators and 9-15 digits, so
    timestamps, durations and counters stay readable.
    """
    out: list[Finding] = []
    for m in _EMAIL_RE.finditer(text):
        out.append(Finding("email", m.start(), m.end()))
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            out.append(Finding("card", m.start(), m.end()))
    for m in _PHONE_RE.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        separated = raw.startswith("+") or any(c in raw for c in " .-(")
        if separated and 9 <= len(digits) <= 15 and not _luhn_card_like(raw):
            out.append(Finding("phone", m.start(), m.end()))
    for pattern in (_IPV4_RE, _IPV6_RE):
        for m in pattern.finditer(text):
            if _end_user_ip(m.group(0)):
                out.append(Finding("ip", m.start(), m.end()))
    return out


def _luhn_card_like(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def redact_log(text: str) -> str:
    """A log excerpt (workload output, health bodies, canary logs) for evidence: :func:`redact` first,
    then the personal data of end users (:func:`find_pii`) replaced by ``[REDACTED:email|phone|card|ip]``.

    The same one path: secrets are removed exactly as everywhere else; PII is removed only from log
    excerpts, because operator identities (e-mail-like names) and cluster addresses are evidence.
    """
    text = redact(text)
    findings = sorted(
        (f for f in find_pii(text) if not MARKER_RE.search(text[f.start : f.end])),
        key=lambda f: (f.start, -f.end),
    )
    parts: list[str] = []
    pos = 0
    for f in findings:
        if f.start < pos:
            continue
        parts.append(text[pos : f.start])
        parts.append(marker(f.kind))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def contains_secret(text: str) -> bool:
    """True when :func:`find_secrets` finds anything in ``text``."""
    return bool(find_secrets(text))


def looks_like_secret_value(value: str) -> bool:
    """True when ``value`` itself looks like a secret.

    Either it matches a secret shape (any :func:`find_secrets` detector), or it is a single
    high-entropy token (at least 20 characters, mixed character classes, Shannon entropy of at least
    3.5 bits per character, frequent class changes). Digests, commit ids, uuids, timestamps, plain
    words and identifiers, Kubernetes names, paths and URLs without credentials are not flagged.
    Used by the Stage 1 manifest gate for env values and config.
    """
    v = value.strip()
    if not v or _only_markers(v):
        return False
    if find_secrets(v):
        return True
    return _is_high_entropy_token(v.strip("\"'"))


def _redact_field(key: Any, value: Any) -> Any:
    if isinstance(key, str) and is_secret_key(key):
        if isinstance(value, str) and value.strip():
            if value.lstrip()[:1] in ("{", "["):
                return redact(value)  # an embedded document: redact what is inside
            if _is_reference_or_inert(value):
                return value
            return marker(SECRET_FIELD)
        if isinstance(value, (bytes, bytearray)) and value:
            return marker(SECRET_FIELD)
    return redact_value(value)


def redact_value(value: Any) -> Any:
    """Redact recursively through dicts, lists, tuples, sets and strings; returns new objects.

    Strings go through :func:`redact`. In mappings, a non-empty string value under a secret-like key
    (:func:`is_secret_key`) becomes ``[REDACTED:secret-field]`` unless it is clearly a reference
    (OpenBao path, ``${VAR}``, existing marker, ...). Keys that name a reference (``secretName``,
    ``secretKeyRef``, ``tokenPath``, ``*_ref``...) keep their values. Other types are returned as is.
    The input is never mutated.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {(redact(k) if isinstance(k, str) else k): _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        items = [redact_value(v) for v in value]
        if hasattr(value, "_fields"):  # namedtuple
            return type(value)(*items)
        return tuple(items)
    if isinstance(value, (set, frozenset)):
        return type(value)(redact_value(v) for v in value)
    return value
