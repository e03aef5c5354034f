"""The plaintext-secret scan of rendered manifests and Helm values files (pure; no I/O).

Stage 1's ``secrets_by_reference`` gate fails when any of these finds a plaintext secret. A finding
names where (object or file), the field path and the kind of secret, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from railiance_ledger.domain.redaction import find_secrets, is_secret_key, looks_like_secret_value

_NAME_LIKE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._/]{0,252}$")

_REFERENCE_KEY = re.compile(r"(?i)^existing.*secret|secret.*(name|ref)$|^existingsecretkey$")
"""Values-file keys whose value is the *name* of a secret (a reference), not a secret."""


@dataclass(frozen=True)
class SecretFinding:
    """A plaintext secret found: where (object or file), the field path, and what kind it looks like.

    Never carries the value itself.
    """

    where: str
    field: str
    kind: str
    source: str  # "manifest" | "values"


def _secret_kind(key: str, value: str) -> str | None:
    """The kind of secret ``value`` (stored under ``key``) looks like, or ``None``."""
    found = find_secrets(value)
    if found:
        return found[0].kind
    if looks_like_secret_value(value):
        return "secret-like-value"
    if is_secret_key(key) and value.strip():
        return "secret-named-key"
    return None


def _walk(node: Any, path: str) -> Iterable[tuple[str, str, Any]]:
    """Yield ``(path, key, value)`` for every scalar leaf."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(v, (dict, list)):
                yield from _walk(v, p)
            else:
                yield p, str(k), v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            p = f"{path}[{i}]"
            if isinstance(v, (dict, list)):
                yield from _walk(v, p)
            else:
                yield p, path.rsplit(".", 1)[-1], v


def object_ref(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of a Kubernetes object (``?`` for what is missing)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{(meta or {}).get('name', '?')}"


_REF_SUBTREES = {"secretKeyRef", "secretRef", "configMapKeyRef", "configMapRef"}

_ENV_ITEM = re.compile(r"\.env\[\d+\]$")


def scan_manifest(obj: Mapping[str, Any]) -> tuple[list[SecretFinding], list[str]]:
    """Plaintext secrets in one rendered object, and the secret names it references.

    Secret ``data``/``stringData`` literals always count; ConfigMap data and container env
    ``value`` literals count when the key or value looks like a secret; any other string that
    contains recognisable secret material (keys, tokens, credentialed URLs) counts too.
    ``secretKeyRef``, ``envFrom.secretRef``, secret volumes and TLS ``secretName`` are references.
    """
    ref = object_ref(obj)
    kind = obj.get("kind")
    findings: list[SecretFinding] = []
    references: list[str] = []
    if kind == "Secret":
        for fld in ("data", "stringData"):
            for key, val in (obj.get(fld) or {}).items():
                if val not in (None, ""):
                    sk = _secret_kind(str(key), str(val)) or "secret-data"
                    findings.append(
                        SecretFinding(ref, f"{fld}.{key}", f"literal Secret data ({sk})", "manifest")
                    )
        body = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
    else:
        body = dict(obj)
    if kind == "ConfigMap":
        for fld in ("data", "binaryData"):
            for key, val in (body.get(fld) or {}).items():
                cm_kind = _secret_kind(str(key), str(val)) if val is not None else None
                if cm_kind:
                    findings.append(SecretFinding(ref, f"{fld}.{key}", cm_kind, "manifest"))
        body = {k: v for k, v in body.items() if k not in ("data", "binaryData")}

    def visit(node: Any, path: str, parent_key: str) -> None:
        if isinstance(node, dict):
            if parent_key in _REF_SUBTREES:
                if parent_key.startswith("secret") and "name" in node:
                    references.append(f"{node['name']} ({parent_key})")
                return
            if parent_key == "secret" and "secretName" in node:  # a secret volume
                references.append(f"{node['secretName']} (volume)")
                return
            is_env_var = bool(_ENV_ITEM.search(path)) and "name" in node
            for k, v in node.items():
                child = f"{path}.{k}" if path else str(k)
                if is_env_var and k == "value" and isinstance(v, str) and v:
                    sk = _secret_kind(str(node["name"]), v)
                    if sk:
                        findings.append(SecretFinding(ref, f"{child} ({node['name']})", sk, "manifest"))
                    continue
                if k == "secretName" and isinstance(v, str) and not find_secrets(v):
                    references.append(f"{v} (secretName)")
                    continue
                visit(v, child, str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]", parent_key)
        elif isinstance(node, str):
            found = find_secrets(node)
            if found:
                findings.append(SecretFinding(ref, path, found[0].kind, "manifest"))

    visit(body, "", "")
    return findings, references


def scan_values(data: Any, where: str) -> list[SecretFinding]:
    """Plaintext secrets in a Helm values file: secret-named keys with literal values, and any
    value that looks like a secret. Keys naming a secret by reference (``existingSecret``,
    ``...SecretName``) are fine when their value looks like a name."""
    out: list[SecretFinding] = []
    for path, key, val in _walk(data, ""):
        if val is None or isinstance(val, bool) or val == "":
            continue
        text = str(val)
        if (
            _REFERENCE_KEY.search(key)
            and _NAME_LIKE.match(text)
            and not looks_like_secret_value(text)
            and not find_secrets(text)
        ):
            continue
        sk = _secret_kind(key, text)
        if sk:
            out.append(SecretFinding(where, path, sk, "values"))
    return out
