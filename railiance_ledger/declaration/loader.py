"""Read ``<app_dir>/railiance/app.toml`` and report every problem at its TOML path.

``load_declaration`` raises ``DeclarationError`` listing every issue (missing file, TOML syntax
error with line and column, wrong schema id, each invalid field, each plaintext secret).
``validate_app_dir`` never raises for bad content: it returns a ``ValidationReport`` that the CLI
prints and that ``render_runbook`` turns into the operator runbook.

Issue messages never echo a value that looks like a secret: a path flagged as a plaintext secret
gets the secret issue only.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from railiance_ledger.declaration.models import DURATION_HINT, RULES_ERROR_TYPE, SCHEMA_ID, Declaration
from railiance_ledger.domain.text import DECLARATION_STRING_MAX, NAME_MAX, shown, text_problem
from railiance_ledger.errors import DeclarationError, DeclarationIssue

__all__ = [
    "DECLARATION_FILE",
    "SECRET_HINT",
    "ValidationReport",
    "declaration_file",
    "load_declaration",
    "validate_app_dir",
]

DECLARATION_FILE = Path("railiance") / "app.toml"
SECRET_HINT = (
    "reference the secret by name in [[secrets]] (name or OpenBao path, kind, keys); "
    "never put a secret value in app.toml"
)

# Fields whose values are references to secrets by name, not values: key-name heuristics skip them.
_REFERENCE_FIELDS = (
    re.compile(r"^routing\.tls_secret$"),
    re.compile(r"^secrets\[\d+\]\.(name|kind|keys(\[\d+\])?)$"),
)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one workload directory; never holds a declaration value in text form."""

    app_dir: Path
    """The workload directory (holding ``railiance/``)."""
    path: Path
    """The declaration file that was (or would have been) read."""
    declaration: Declaration | None
    """The loaded declaration, or None when there are issues."""
    issues: tuple[DeclarationIssue, ...] = ()
    """Every error; empty when the declaration is valid."""
    warnings: tuple[DeclarationIssue, ...] = ()
    """Things a later gate will ask about (e.g. a production-critical window that needs a waiver)."""
    found: bool = False
    """False when the file does not exist."""
    parsed: bool = False
    """False when the file is missing or not valid TOML."""
    present_paths: frozenset[str] = field(default_factory=frozenset)
    """Dotted TOML paths present in the file (``stages.canary.namespace``, ``health[0].name``)."""
    workload_name: str | None = None
    """The workload name, when the file states a well-formed one (even if other fields are invalid)."""

    @property
    def ok(self) -> bool:
        """True when the declaration loaded without issues (warnings allowed)."""
        return self.declaration is not None and not self.issues

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for ``railiance validate --json`` (no declaration values)."""
        return {
            "app_dir": str(self.app_dir),
            "path": str(self.path),
            "ok": self.ok,
            "workload": self.workload_name,
            "criticality": self.declaration.criticality.value if self.declaration else None,
            "observation_window_seconds": self.declaration.observation_window_seconds
            if self.declaration
            else None,
            "window_needs_waiver": self.declaration.window_needs_waiver if self.declaration else None,
            "issues": [i.as_dict() for i in self.issues],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def declaration_file(app_dir: Path) -> Path:
    """``<app_dir>/railiance/app.toml``."""
    return Path(app_dir) / DECLARATION_FILE


def load_declaration(app_dir: Path) -> Declaration:
    """The validated declaration of the workload in ``app_dir`` (the directory holding ``railiance/``).

    Raises ``DeclarationError`` whose ``issues`` name every problem, not just the first.
    """
    report = validate_app_dir(app_dir)
    if report.declaration is None or report.issues:
        count = len(report.issues)
        raise DeclarationError(
            f"{report.path}: {count} problem{'s' if count != 1 else ''} in the workload declaration",
            list(report.issues),
            source=str(report.path),
        )
    return report.declaration


def validate_app_dir(app_dir: Path) -> ValidationReport:
    """Validate ``<app_dir>/railiance/app.toml``; report issues and warnings, never raise for bad content."""
    app_dir = Path(app_dir)
    path = declaration_file(app_dir)
    shown = str(DECLARATION_FILE)
    if not path.is_file():
        issue = DeclarationIssue(
            shown,
            f"declaration file not found: {path}",
            "create railiance/app.toml (see docs/app-toml.md), or write an operator runbook with "
            "`railiance validate --runbook FILE` meanwhile",
        )
        return ValidationReport(app_dir, path, None, (issue,))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issue = DeclarationIssue(
            shown, f"cannot read {path}: {exc}", "check the file's permissions and encoding"
        )
        return ValidationReport(app_dir, path, None, (issue,), found=True)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ValidationReport(app_dir, path, None, (_syntax_issue(shown, exc),), found=True)

    present = frozenset(_paths(data))
    text_issues = _text_issues(data)
    if text_issues:
        # Capped before any matching: an over-long or hostile string never reaches a regex.
        return ValidationReport(app_dir, path, None, tuple(text_issues), (), True, True, present, None)
    name = _workload_name(data)
    secret_issues = _scan_secrets(data)
    secret_paths = {i.path for i in secret_issues}
    decl: Declaration | None = None
    issues: list[DeclarationIssue] = []
    try:
        decl = Declaration.model_validate(data).bind(app_dir)
    except ValidationError as exc:
        for error in exc.errors():
            issues.extend(_issues_from_error(error))
    if decl is not None:
        issues.extend(_confinement_issues(decl, data))
    issues = [i for i in issues if not _under_any(i.path, secret_paths)]
    issues = _dedupe(secret_issues + issues)
    warnings = tuple(decl.warnings()) if decl is not None else ()
    if issues:
        decl = None
    return ValidationReport(app_dir, path, decl, tuple(issues), warnings, True, True, present, name)


# --------------------------------------------------------------------------- hostile input


def _text_issues(data: Any, base: str = "") -> list[DeclarationIssue]:
    """Every key or string value that is too long or carries a NUL, control or bidi character."""
    out: list[DeclarationIssue] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            key_text = str(key)
            problem = text_problem(key_text, limit=NAME_MAX)
            if problem:
                out.append(
                    DeclarationIssue(base or "(top level)", f"a key {problem}", "use a plain key name")
                )
                continue
            out.extend(_text_issues(value, _join(base, key_text)))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            out.extend(_text_issues(item, _join(base, index)))
    elif isinstance(data, str):
        problem = text_problem(data, limit=DECLARATION_STRING_MAX, allow_newlines=True)
        if problem:
            out.append(
                DeclarationIssue(
                    base,
                    problem,
                    f"keep strings under {DECLARATION_STRING_MAX} characters, without control characters",
                )
            )
    return out


def _declared_paths(decl: Declaration, data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(TOML path, declared value) of every file or directory the declaration names."""
    yield "source.path", decl.source.path
    yield "chart.path", decl.chart.path
    if decl.chart.values:
        yield "chart.values", decl.chart.values
    for stage_name in ("local", "canary", "production"):
        stage = getattr(decl.stages, stage_name, None)
        if stage is not None and stage.values:
            yield f"stages.{stage_name}.values", stage.values
    runbook = decl.rollback.runbook
    if runbook and "://" not in runbook:
        yield "rollback.runbook", runbook
    if decl.approval.allowed_signers:
        yield "approval.allowed_signers", decl.approval.allowed_signers


def _confinement_issues(decl: Declaration, data: Mapping[str, Any]) -> list[DeclarationIssue]:
    """Declared paths must stay inside the workload directory: resolved (symlinks followed), no NUL."""
    out: list[DeclarationIssue] = []
    root = decl.app_dir.resolve()
    hint = "use a path relative to railiance/ that stays inside the workload directory"
    for field_path, value in _declared_paths(decl, data):
        if "\x00" in value:
            out.append(DeclarationIssue(field_path, "contains a NUL character", hint))
            continue
        try:
            real = decl.resolve(value).resolve()
        except (OSError, RuntimeError, ValueError):
            out.append(DeclarationIssue(field_path, f"cannot be resolved: {shown(value)}", hint))
            continue
        if real != root and root not in real.parents:
            out.append(
                DeclarationIssue(field_path, f"{shown(value)} is outside the workload directory", hint)
            )
    return out


# --------------------------------------------------------------------------- TOML helpers


def _syntax_issue(shown: str, exc: tomllib.TOMLDecodeError) -> DeclarationIssue:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
    if match:
        line, col = match.groups()
        return DeclarationIssue(
            f"{shown}:{line}:{col}",
            f"TOML syntax error at line {line}, column {col}: {reason}",
            "fix the TOML syntax at that position (strings need quotes, tables [name])",
        )
    return DeclarationIssue(
        shown,
        f"TOML syntax error at end of document: {reason}",
        "fix the TOML syntax (an unterminated string, array or table?)",
    )


def _join(base: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{base}[{part}]"
    return f"{base}.{part}" if base else part


def _paths(data: Any, base: str = "") -> Iterator[str]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = _join(base, str(key))
            yield here
            yield from _paths(value, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            here = _join(base, index)
            yield here
            yield from _paths(value, here)


def _workload_name(data: Mapping[str, Any]) -> str | None:
    workload = data.get("workload")
    name = workload.get("name") if isinstance(workload, Mapping) else None
    if isinstance(name, str) and re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", name):
        return name
    return None


def _under_any(path: str, roots: set[str]) -> bool:
    return any(path == r or path.startswith((r + ".", r + "[")) for r in roots)


def _dedupe(issues: list[DeclarationIssue]) -> list[DeclarationIssue]:
    seen: set[tuple[str, str]] = set()
    out: list[DeclarationIssue] = []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out


# --------------------------------------------------------------------------- plaintext secrets

_SECRET_KEY_RE = re.compile(
    r"(?i)(^|[_\-.])(password|passwd|passphrase|pwd|token|secret|api[_-]?key|apikey|private[_-]?key|"
    r"access[_-]?key|client[_-]?secret|credentials?)($|[_\-.])"
)
_SECRET_VALUE_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PEM block", re.compile(r"-----BEGIN [A-Z0-9 ]+-----")),
    ("credentialed URL", re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}")),
    ("access token", re.compile(r"\b(ghp_|gho_|ghs_|github_pat_|glpat-|xox[abprs]-|sk-)[A-Za-z0-9_\-]{16,}")),
    ("AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.")),
    (
        "inline credential",
        re.compile(r"(?i)\b(password|passwd|token|secret|api[_-]?key)\s*[=:]\s*(?![$%{<])[^\s\"']{3,}"),
    ),
)


def _fallback_value_kind(value: str) -> str | None:
    for kind, pattern in _SECRET_VALUE_RES:
        if pattern.search(value):
            return kind
    return None


def _redaction_function(name: str) -> Callable[[str], bool] | None:
    """The shared redaction module's ``name`` when it exists and is implemented, else None."""
    try:
        from railiance_ledger.domain import redaction
    except ImportError:  # pragma: no cover - the module ships with the package
        return None
    func = getattr(redaction, name, None)
    if not callable(func):
        return None
    try:
        func("railiance-probe")
    except NotImplementedError:
        return None
    except Exception:  # noqa: BLE001 - any other failure: do not trust it, use the local heuristic
        return None
    return typing.cast(Callable[[str], bool], func)


def _value_kind(value: str) -> str | None:
    """Why ``value`` looks like a plaintext secret, or None."""
    kind = _fallback_value_kind(value)
    shared = _redaction_function("looks_like_secret_value")
    if shared is None:
        return kind
    if shared(value):
        return kind or "secret-looking value"
    return None


def _is_secret_key(key: str) -> bool:
    shared = _redaction_function("is_secret_key")
    if shared is None:
        return bool(_SECRET_KEY_RE.search(key))
    return bool(shared(key))


def _scan_secrets(data: Mapping[str, Any]) -> list[DeclarationIssue]:
    """An issue for every string in the document that is (or is keyed like) a plaintext secret."""
    out: list[DeclarationIssue] = []

    def visit(value: Any, path: str, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                visit(v, _join(path, str(k)), str(k))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, _join(path, index), key)
        elif isinstance(value, str) and path != "schema":
            kind = _value_kind(value)
            if kind is not None:
                out.append(
                    DeclarationIssue(path, f"plaintext secret in the declaration ({kind})", SECRET_HINT)
                )
            elif value.strip() and _is_secret_key(key) and not any(p.match(path) for p in _REFERENCE_FIELDS):
                out.append(
                    DeclarationIssue(
                        path, f"`{key}` holds a literal value: plaintext secrets are refused", SECRET_HINT
                    )
                )

    visit(data, "", "")
    return out


# --------------------------------------------------------------------------- pydantic errors

_EXPECTED = {
    "string_type": "a string (in quotes)",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _loc_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, part)
    return path


def _unwrap(annotation: Any) -> Any:
    """The model (or item model) inside Annotated / Optional / tuple annotations, else the annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        elif origin in (tuple, list):
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class for the table at ``loc`` (None when ``loc`` is not a table)."""
    model: type[BaseModel] = Declaration
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        info = fields.get(part)
        if info is None:
            return None
        inner = _unwrap(info.annotation)
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _field_annotation(loc: tuple[str | int, ...]) -> Any:
    parent = _model_at(loc[:-1])
    if parent is None or not loc or isinstance(loc[-1], int):
        return None
    fields = {(f.alias or n): f for n, f in parent.model_fields.items()}
    info = fields.get(str(loc[-1]))
    return info.annotation if info else None


def _table_name(loc: tuple[str | int, ...]) -> str:
    if not loc:
        return "the top level"
    path = _loc_path(loc)
    if isinstance(loc[-1], int):
        return f"the [[{_loc_path(loc[:-1])}]] entry {path}"
    return f"[{path}]"


def _issues_from_error(error: ErrorDetails) -> list[DeclarationIssue]:
    """One or more issues (a ``declaration_rules`` error expands to several) for a pydantic error."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    path = _loc_path(loc)
    if kind == RULES_ERROR_TYPE:
        out = []
        for rel, message, hint in ctx.get("issues", ()):
            full = f"{path}{rel}" if rel.startswith("[") else _join(path, rel) if path else rel
            out.append(DeclarationIssue(full, message, hint))
        return out
    if path == "schema":
        return [
            DeclarationIssue(
                path,
                f"schema id must be {SCHEMA_ID!r}",
                f'set schema = "{SCHEMA_ID}" as the first line of app.toml',
            )
        ]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if len(loc) == 3 and loc[0] == "secrets" and key == "value":
            return [DeclarationIssue(path, "a secret's value is never declared", SECRET_HINT)]
        parent = _model_at(loc[:-1])
        allowed = sorted((f.alias or n) for n, f in parent.model_fields.items()) if parent else []
        where = _table_name(loc[:-1])
        return [
            DeclarationIssue(
                path,
                f"unknown key {shown(key)} in {where}",
                "remove it or check spelling; allowed keys: " + ", ".join(allowed),
            )
        ]
    if kind == "missing":
        key = str(loc[-1])
        inner = _unwrap(_field_annotation(loc))
        where = _table_name(loc[:-1])
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            is_array = typing.get_origin(_strip_annotated(_field_annotation(loc))) is tuple
            hint = f"add at least one [[{path}]] table" if is_array else f"add a [{path}] table"
            return [DeclarationIssue(path, f"required table [{path}] is missing", hint)]
        return [
            DeclarationIssue(
                path,
                f"required key `{key}` is missing from {where}",
                f"add `{key} = ...` to {where}; see docs/app-toml.md",
            )
        ]
    if kind in ("duration", "duration_type"):
        return [DeclarationIssue(path, str(ctx.get("reason", error["msg"])), DURATION_HINT)]
    if "hint" in ctx:
        return [DeclarationIssue(path, str(ctx.get("reason", error["msg"])), str(ctx["hint"]))]
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        hint = f"expected {expected}"
        inner = _unwrap(_field_annotation(loc))
        if isinstance(inner, type) and issubclass(inner, BaseModel) and kind == "tuple_type":
            hint = f"write one [[{path}]] table per entry (an array of tables)"
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            hint = f"write a [{path}] table"
        got = _toml_type(error.get("input"))
        return [DeclarationIssue(path, f"wrong type: expected {expected}, got {got}", hint)]
    if kind in ("literal_error", "enum"):
        return [DeclarationIssue(path, "not an allowed value", f"expected one of {ctx.get('expected', '')}")]
    if kind == "too_short":
        return [DeclarationIssue(path, "must not be empty", "add at least one entry")]
    bounds = {
        "greater_than_equal": ("ge", ">="),
        "greater_than": ("gt", ">"),
        "less_than_equal": ("le", "<="),
        "less_than": ("lt", "<"),
    }
    if kind in bounds:
        key, sign = bounds[kind]
        return [
            DeclarationIssue(
                path, f"out of range: {error['msg'].lower()}", f"expected a value {sign} {ctx.get(key)}"
            )
        ]
    return [DeclarationIssue(path, error["msg"], "see docs/app-toml.md")]


def _toml_type(value: Any) -> str:
    """The TOML type name of a parsed value (never the value itself)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return "a date or time" if value is not None else "nothing"


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_annotated(args[0])
    return annotation
