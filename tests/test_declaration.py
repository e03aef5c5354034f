"""The workload declaration railiance/app.toml: models, loader issues, criticality, runbook.

Variants are built from the example: load it with tomllib, mutate the dict, write it back with the
small TOML writer below (tomli_w is not a dependency), and load the copy from tmp_path.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from railiance_ledger.declaration import (
    Category,
    Criticality,
    Declaration,
    load_declaration,
    loader,
    render_runbook,
    validate_app_dir,
)
from railiance_ledger.declaration.loader import SECRET_HINT
from railiance_ledger.declaration.models import DURATION_HINT
from railiance_ledger.errors import DeclarationError, DeclarationIssue

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "hello-web"
EXAMPLE_TOML = EXAMPLE_DIR / "railiance" / "app.toml"
DIGEST = "sha256:" + "ab" * 32
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3Kf\n-----END RSA PRIVATE KEY-----\n"


# --------------------------------------------------------------------------- helpers


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer: scalars and arrays first, then tables, then arrays of tables."""
    lines = [
        f"{k} = {_toml_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict) and not _is_table_array(v)
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{prefix}{key}]", dumps_toml(value, f"{prefix}{key}.")]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{prefix}{key}]]", dumps_toml(item, f"{prefix}{key}.")]
    return "\n".join(lines)


def example_data() -> dict[str, Any]:
    """The example declaration as a fresh dict."""
    return tomllib.loads(EXAMPLE_TOML.read_text(encoding="utf-8"))


def write_app(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    """Write ``data`` as ``<tmp>/app/railiance/app.toml`` and return the app directory."""
    app_dir = tmp_path / "app"
    (app_dir / "railiance").mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else dumps_toml(data)
    (app_dir / "railiance" / "app.toml").write_text(text, encoding="utf-8")
    return app_dir


def variant(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> Path:
    """The example with ``mutate`` applied, written to tmp_path."""
    data = example_data()
    mutate(data)
    return write_app(tmp_path, data)


def issues_of(app_dir: Path) -> list[DeclarationIssue]:
    """The issues ``load_declaration`` raises for ``app_dir`` (fails the test when it loads)."""
    with pytest.raises(DeclarationError) as caught:
        load_declaration(app_dir)
    return caught.value.issues


def issue_at(issues: list[DeclarationIssue], path: str) -> DeclarationIssue:
    """The single issue at ``path``."""
    found = [i for i in issues if i.path == path]
    assert len(found) == 1, f"expected one issue at {path}, got {[str(i) for i in issues]}"
    return found[0]


@pytest.fixture(params=["shared", "fallback"])
def detector(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run secret tests with the shared redaction functions and with the loader's own fallback."""
    if request.param == "fallback":
        monkeypatch.setattr(loader, "_redaction_function", lambda name: None)
    return str(request.param)


# --------------------------------------------------------------------------- the example


def test_example_loads_as_standard_internal_service_with_15m_window() -> None:
    """The contract file loads; its category gives standard criticality and the 15 minute window."""
    decl = load_declaration(EXAMPLE_DIR)

    assert "hello-web" == decl.workload.name
    assert "railiance-apps/hello-web" == decl.workload.repo
    assert Category.INTERNAL_SERVICE == decl.workload.category
    assert Criticality.STANDARD == decl.criticality
    assert decl.production_critical is False
    assert 15 * 60 == decl.observation_window_seconds
    assert decl.window_needs_waiver is False
    assert "hello-web-canary" == decl.stages.canary.release
    assert "hello-web" == decl.stages.production.namespace
    assert 8 == decl.canary.thresholds.min_samples
    assert 30 == decl.canary.sample_interval
    assert 20 == decl.local.ready_timeout if decl.local else False
    assert 2 == decl.health[0].timeout
    assert "healthz" == decl.key_health.name
    assert decl.migrations.classified is True
    assert ("DATABASE_URL",) == decl.secrets[0].keys


def test_example_paths_resolve_relative_to_the_railiance_directory() -> None:
    """chart.path and stage values are relative to railiance/; the loader keeps the app directory."""
    decl = load_declaration(EXAMPLE_DIR)

    assert EXAMPLE_DIR == decl.app_dir
    assert EXAMPLE_DIR / "chart" == decl.resolve(decl.chart.path)
    assert EXAMPLE_DIR / "chart" / "values-canary.yaml" == decl.resolve(decl.stages.canary.values or "")
    assert EXAMPLE_DIR == decl.resolve(decl.source.path)
    assert ["python3", "../app/server.py", "--port", "8123"] == (decl.local.argv(8123) if decl.local else [])


def test_example_validates_without_issues_or_warnings() -> None:
    """validate_app_dir reports the contract file clean."""
    report = validate_app_dir(EXAMPLE_DIR)

    assert report.ok is True
    assert ((), ()) == (report.issues, report.warnings)


def test_example_accepts_every_commented_optional_key(tmp_path: Path) -> None:
    """Uncommenting the optional keys shown in the example still gives a valid declaration."""
    text = EXAMPLE_TOML.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^# ((?:\[|[a-z_]+ = ).*)$", r"\1", text)
    text = text.replace("@sha256:<64 hex>", "@" + DIGEST)
    app_dir = write_app(tmp_path, text)

    report = validate_app_dir(app_dir)

    assert [] == [str(i) for i in report.issues]
    decl = report.declaration
    assert decl is not None
    assert decl.workload.critical is True
    assert Criticality.PRODUCTION_CRITICAL == decl.criticality
    assert 15 * 60 == decl.canary.observation_window
    assert decl.window_needs_waiver is True
    assert ("alice", "bob") == decl.approval.approvers
    assert "web" == decl.acceptance[0].name
    assert decl.readiness.canary_isolation
    assert {"canary.observation_window", "canary.header", "canary.path_prefix"} <= {
        w.path for w in report.warnings
    }


def test_declaration_is_frozen() -> None:
    """Models are immutable value objects."""
    decl = load_declaration(EXAMPLE_DIR)

    with pytest.raises(ValidationError):
        decl.workload.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- criticality


@pytest.mark.parametrize(
    ("category", "criticality", "window"),
    [
        ("internal-service", Criticality.STANDARD, 15 * 60),
        ("user-facing", Criticality.ELEVATED, 30 * 60),
        ("shared-platform", Criticality.ELEVATED, 30 * 60),
        ("source-forge", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("package-registry", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("identity", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("state-hub", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("operator-coordination", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("database", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("object-store", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("backup", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("ingress", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("certificates", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("cluster-policy", Criticality.PRODUCTION_CRITICAL, 60 * 60),
        ("multi-domain", Criticality.PRODUCTION_CRITICAL, 60 * 60),
    ],
)
def test_category_decides_criticality_and_default_window(
    tmp_path: Path, category: str, criticality: Criticality, window: int
) -> None:
    """Each category maps to the spec's criticality and default observation window."""
    app_dir = variant(tmp_path, lambda d: d["workload"].update(category=category))

    decl = load_declaration(app_dir)

    assert (criticality, window) == (decl.criticality, decl.observation_window_seconds)
    assert (criticality is Criticality.PRODUCTION_CRITICAL) == decl.production_critical
    assert decl.window_needs_waiver is False


def test_every_category_is_covered_by_the_parametrization() -> None:
    """The parametrized table above lists every Category member."""
    assert 15 == len(Category)


def test_critical_true_raises_an_internal_service_to_production_critical(tmp_path: Path) -> None:
    """critical = true raises criticality; the default window becomes 60 minutes."""
    app_dir = variant(tmp_path, lambda d: d["workload"].update(critical=True))

    decl = load_declaration(app_dir)

    assert (True, 60 * 60) == (decl.production_critical, decl.observation_window_seconds)


def test_critical_false_on_a_critical_category_is_refused(tmp_path: Path) -> None:
    """critical = false may not lower a production-critical category."""
    app_dir = variant(tmp_path, lambda d: d["workload"].update(category="database", critical=False))

    issue = issue_at(issues_of(app_dir), "workload.critical")

    assert "may raise criticality, never lower it" in issue.message


def test_critical_false_on_a_standard_category_is_allowed(tmp_path: Path) -> None:
    """critical = false is consistent with a non-critical category."""
    app_dir = variant(tmp_path, lambda d: d["workload"].update(critical=False))

    assert Criticality.STANDARD == load_declaration(app_dir).criticality


def test_production_critical_30m_window_needs_waiver_and_warns(tmp_path: Path) -> None:
    """A short window on a production-critical workload loads, but needs a recorded waiver."""

    def mutate(d: dict[str, Any]) -> None:
        d["workload"]["category"] = "source-forge"
        d["canary"]["observation_window"] = "30m"

    report = validate_app_dir(variant(tmp_path, mutate))

    assert report.ok is True
    assert report.declaration is not None
    assert (30 * 60, True) == (
        report.declaration.observation_window_seconds,
        report.declaration.window_needs_waiver,
    )
    assert ["canary.observation_window"] == [w.path for w in report.warnings]


def test_production_critical_90m_window_needs_no_waiver(tmp_path: Path) -> None:
    """A window at or over the 60 minute minimum needs no waiver."""

    def mutate(d: dict[str, Any]) -> None:
        d["workload"]["category"] = "identity"
        d["canary"]["observation_window"] = "1h30m"

    decl = load_declaration(variant(tmp_path, mutate))

    assert (90 * 60, False) == (decl.observation_window_seconds, decl.window_needs_waiver)


# --------------------------------------------------------------------------- issues at TOML paths


def test_unknown_top_level_key_is_an_issue_with_allowed_keys(tmp_path: Path) -> None:
    """An unknown top-level key is named, with the list of allowed keys."""
    app_dir = variant(tmp_path, lambda d: d.update(colour="blue"))

    issue = issue_at(issues_of(app_dir), "colour")

    assert issue.hint.startswith("remove it or check spelling; allowed keys:")
    assert "workload" in issue.hint and "canary" in issue.hint


def test_unknown_nested_key_is_an_issue_at_its_dotted_path(tmp_path: Path) -> None:
    """A misspelt key in a nested table is reported at its full path."""
    app_dir = variant(tmp_path, lambda d: d["canary"]["thresholds"].update(max_eror_rate=0.1))

    issue = issue_at(issues_of(app_dir), "canary.thresholds.max_eror_rate")

    assert "max_error_rate" in issue.hint


def test_wrong_type_names_the_expected_type(tmp_path: Path) -> None:
    """A string where an integer belongs is reported with the expected type."""
    app_dir = variant(tmp_path, lambda d: d["health"][0].update(expect_status="200"))

    issue = issue_at(issues_of(app_dir), "health[0].expect_status")

    assert "expected an integer" == issue.hint


def test_bad_duration_is_an_issue_with_the_duration_hint(tmp_path: Path) -> None:
    """A duration that does not parse is reported at its path with the accepted forms."""
    app_dir = variant(tmp_path, lambda d: d["health"][0].update(timeout="2 secs"))

    issue = issue_at(issues_of(app_dir), "health[0].timeout")

    assert DURATION_HINT == issue.hint


def test_missing_required_key_and_table_are_reported(tmp_path: Path) -> None:
    """A missing required key and a missing required table are both named."""

    def mutate(d: dict[str, Any]) -> None:
        del d["workload"]["repo"]
        del d["routing"]

    issues = issues_of(variant(tmp_path, mutate))

    assert "add `repo = ...`" in issue_at(issues, "workload.repo").hint
    assert "add a [routing] table" == issue_at(issues, "routing").hint


def test_wrong_schema_id_is_an_issue(tmp_path: Path) -> None:
    """Only railiance.app/v1 is accepted."""
    app_dir = variant(tmp_path, lambda d: d.update(schema="railiance.app/v2"))

    assert 'set schema = "railiance.app/v1"' in issue_at(issues_of(app_dir), "schema").hint


def test_plaintext_password_is_refused_without_echoing_it(tmp_path: Path, detector: str) -> None:
    """A literal value under a password-like key is a plaintext secret issue, and the value is not shown."""
    app_dir = variant(tmp_path, lambda d: d["observability"].update(password="hunter2-correct-horse"))

    issues = issues_of(app_dir)

    issue = issue_at(issues, "observability.password")
    assert issue.hint.startswith("reference the secret by name in [[secrets]]")
    assert all("hunter2" not in str(i) for i in issues)


def test_value_key_under_secrets_is_refused(tmp_path: Path, detector: str) -> None:
    """Secret declarations carry a name, never a value."""
    app_dir = variant(tmp_path, lambda d: d["secrets"][1].update(value="s3cr3t"))

    issue = issue_at(issues_of(app_dir), "secrets[1].value")

    assert issue.hint.startswith("reference the secret by name in [[secrets]]")


def test_pem_block_pasted_anywhere_is_refused(tmp_path: Path, detector: str) -> None:
    """A PEM private key in a free-text field is a plaintext secret issue at that field."""
    app_dir = variant(tmp_path, lambda d: d.update(readiness={"data_protection": PEM}))

    issues = issues_of(app_dir)

    assert SECRET_HINT == issue_at(issues, "readiness.data_protection").hint
    assert all("MIIE" not in str(i) for i in issues)


def test_credentialed_url_in_dependency_health_url_is_refused(tmp_path: Path, detector: str) -> None:
    """user:password@ in a URL is a plaintext secret; only that issue is reported at the path."""
    url = "http://admin:hunter2@postgres-main.platform.svc:8008/health"
    app_dir = variant(tmp_path, lambda d: d["dependencies"][0].update(health_url=url))

    issue = issue_at(issues_of(app_dir), "dependencies[0].health_url")

    assert SECRET_HINT == issue.hint


def test_secret_references_are_not_mistaken_for_values(detector: str) -> None:
    """tls_secret and [[secrets]] names are references; the example has no secret issue."""
    assert validate_app_dir(EXAMPLE_DIR).ok


def test_unknown_secret_kind_is_refused(tmp_path: Path) -> None:
    """Secret kinds are kubernetes, openbao, file or env."""
    app_dir = variant(tmp_path, lambda d: d["secrets"][0].update(kind="vault"))

    assert "openbao" in issue_at(issues_of(app_dir), "secrets[0].kind").hint


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    """Problems in different tables are all listed in one DeclarationError."""

    def mutate(d: dict[str, Any]) -> None:
        d["bogus"] = 1
        d["workload"]["name"] = "Not A Label"
        d["health"][0]["timeout"] = "soon"
        d["routing"]["port"] = "8080"
        d["secrets"][0]["value"] = "x"
        d["canary"]["thresholds"]["max_error_rate"] = 2.0
        del d["stages"]["production"]

    paths = {i.path for i in issues_of(variant(tmp_path, mutate))}

    assert {
        "bogus",
        "workload.name",
        "health[0].timeout",
        "routing.port",
        "secrets[0].value",
        "canary.thresholds.max_error_rate",
        "stages.production",
    } <= paths


def test_toml_syntax_error_is_reported_with_its_position(tmp_path: Path) -> None:
    """A TOML syntax error names the line and column."""
    app_dir = write_app(tmp_path, 'schema = "railiance.app/v1"\n[workload]\nname = hello\n')

    issues = issues_of(app_dir)

    assert ["railiance/app.toml:3:8"] == [i.path for i in issues]
    assert "line 3, column 8" in issues[0].message


def test_missing_file_is_an_issue_and_validate_does_not_raise(tmp_path: Path) -> None:
    """validate_app_dir reports a missing declaration instead of raising; load raises exit code 2."""
    report = validate_app_dir(tmp_path)

    assert (False, False, None) == (report.ok, report.found, report.declaration)
    assert ["railiance/app.toml"] == [i.path for i in report.issues]
    with pytest.raises(DeclarationError) as caught:
        load_declaration(tmp_path)
    assert 2 == caught.value.exit_code


# --------------------------------------------------------------------------- cross-field rules


@pytest.mark.parametrize(
    ("canary", "path"),
    [
        ({"weight": 80}, "canary.weight"),
        ({"weight": 0}, "canary.weight"),
        ({"provider": None}, "canary.provider"),
        ({"form": "header", "weight": None}, "canary.header"),
        ({"form": "path", "weight": None}, "canary.path_prefix"),
        ({"form": "weighted", "provider": "traefik"}, "canary.provider"),
        ({"form": "canary-ish"}, "canary.form"),
    ],
)
def test_canary_form_rules(tmp_path: Path, canary: dict[str, Any], path: str) -> None:
    """weighted needs provider and 1..50 weight; header needs header; path needs path_prefix."""

    def mutate(d: dict[str, Any]) -> None:
        for key, value in canary.items():
            if value is None:
                d["canary"].pop(key, None)
            else:
                d["canary"][key] = value

    issue_at(issues_of(variant(tmp_path, mutate)), path)


def test_isolated_namespace_form_needs_its_own_namespace(tmp_path: Path) -> None:
    """The isolated-namespace canary cannot share the production namespace."""

    def mutate(d: dict[str, Any]) -> None:
        d["canary"] = {k: v for k, v in d["canary"].items() if k not in ("provider", "weight")}
        d["canary"]["form"] = "isolated-namespace"

    issue_at(issues_of(variant(tmp_path, mutate)), "stages.canary.namespace")


def test_canary_release_must_differ_from_production(tmp_path: Path) -> None:
    """A canary that is the production release cannot be distinguished from stable."""
    app_dir = variant(tmp_path, lambda d: d["stages"]["canary"].update(release="hello-web"))

    issue_at(issues_of(app_dir), "stages.canary.release")


def test_window_too_short_for_min_samples_is_refused(tmp_path: Path) -> None:
    """A window that cannot collect min_samples samples would always fail closed."""
    app_dir = variant(tmp_path, lambda d: d["canary"].update(sample_interval="5m"))

    issue_at(issues_of(app_dir), "canary.sample_interval")


def test_manual_rollback_requires_a_runbook(tmp_path: Path) -> None:
    """The manual rollback strategy needs a runbook path or URL."""
    app_dir = variant(tmp_path, lambda d: d["rollback"].update(strategy="manual"))

    issue_at(issues_of(app_dir), "rollback.runbook")


def test_rollback_verification_must_name_a_check(tmp_path: Path) -> None:
    """rollback.verification refers to a declared health, smoke or acceptance check."""
    app_dir = variant(tmp_path, lambda d: d["rollback"].update(verification="nope"))

    assert "healthz" in issue_at(issues_of(app_dir), "rollback.verification").hint


def test_absent_migrations_are_unclassified_with_a_warning(tmp_path: Path) -> None:
    """Missing [migrations] loads as unclassified; Stage 1 decides what that means."""
    report = validate_app_dir(variant(tmp_path, lambda d: d.pop("migrations")))

    assert report.declaration is not None
    assert report.declaration.migrations.classified is False
    assert ["migrations.classification"] == [w.path for w in report.warnings]


def test_stateful_backup_requires_a_check(tmp_path: Path) -> None:
    """A stateful workload must declare its backup posture check."""
    app_dir = variant(tmp_path, lambda d: d["backup"].update(stateful=True))

    issue_at(issues_of(app_dir), "backup.check")


def test_acceptance_checks_by_kind(tmp_path: Path) -> None:
    """Acceptance checks: http needs path, command needs command, tcp needs port."""

    def mutate(d: dict[str, Any]) -> None:
        d["acceptance"] = [
            {"name": "web", "kind": "http", "path": "/", "expect_status": 200},
            {"name": "ssh", "kind": "tcp", "port": 22},
            {"name": "registry", "kind": "command"},
        ]

    issue_at(issues_of(variant(tmp_path, mutate)), "acceptance[2].command")


# --------------------------------------------------------------------------- runbook


def test_runbook_names_missing_fields_of_a_minimal_declaration(tmp_path: Path) -> None:
    """A declaration with only its workload table: the runbook lists every other minimum field."""
    data = example_data()
    app_dir = write_app(tmp_path, {"schema": data["schema"], "workload": data["workload"]})

    text = render_runbook(app_dir, validate_app_dir(app_dir))

    assert text.startswith("# Operator runbook: hello-web")
    for path in (
        "source.revision_policy",
        "image.repository",
        "stages.canary.namespace",
        "stages.production.release",
        "observability.prometheus_selector",
        "routing.service",
        "dependencies",
        "rollback.strategy",
        "secrets",
    ):
        assert f"`{path}`" in text
    assert "- Missing: `workload.name`" not in text
    assert "Meanwhile the operator must" in text


def test_runbook_for_a_missing_file_lists_every_field(tmp_path: Path) -> None:
    """With no app.toml every field of the spec's minimum list is missing."""
    text = render_runbook(tmp_path)

    assert "does not exist" in text
    for path in (
        "workload.name",
        "workload.repo",
        "stages.local.namespace",
        "health",
        "routing.port",
        "dependencies",
        "rollback.command or rollback.previous_stable or rollback.runbook",
        "secrets",
    ):
        assert f"`{path}`" in text


def test_runbook_for_an_unparsable_file_and_invalid_fields(tmp_path: Path) -> None:
    """A TOML syntax error leaves every field missing and is listed among the other problems."""
    app_dir = write_app(tmp_path, "schema = \n")

    text = render_runbook(app_dir)

    assert "not valid TOML" in text and "`workload.name`" in text and "railiance/app.toml:1:" in text


def test_runbook_of_the_example_has_no_gaps() -> None:
    """The complete example needs no manual substitute."""
    assert "no manual substitute is needed" in render_runbook(EXAMPLE_DIR)


def test_report_as_dict_never_contains_a_secret(tmp_path: Path, detector: str) -> None:
    """The JSON report lists issues without the offending values."""
    app_dir = variant(tmp_path, lambda d: d["workload"].update(token="ghp_" + "A" * 36))

    report = validate_app_dir(app_dir)

    assert ["workload.token"] == [i.path for i in report.issues]
    assert "AAAA" not in json.dumps(report.as_dict())


def test_declaration_can_be_built_from_a_mapping_and_bound() -> None:
    """Other code may validate a mapping directly and bind it to a directory for resolve()."""
    decl = Declaration.model_validate(example_data())

    with pytest.raises(ValueError):
        decl.resolve("x")
    assert EXAMPLE_DIR / "chart" == decl.bind(EXAMPLE_DIR).resolve("../chart")


def test_example_copy_in_tmp_path_is_independent(tmp_path: Path) -> None:
    """Copying the example directory keeps it valid (no path outside it is required)."""
    shutil.copytree(EXAMPLE_DIR, tmp_path / "hello-web")

    assert validate_app_dir(tmp_path / "hello-web").ok


# --------------------------------------------------------------------------- docs


DOCS = Path(__file__).resolve().parents[1] / "docs" / "app-toml.md"


def test_docs_example_is_the_example_file() -> None:
    """The example in docs/app-toml.md parses to the same declaration as the example file."""
    block = (
        DOCS.read_text(encoding="utf-8").split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    )

    assert example_data() == tomllib.loads(block)


def test_docs_name_every_key_of_every_table() -> None:
    """Every key the models accept is documented."""
    text = DOCS.read_text(encoding="utf-8")
    from pydantic import BaseModel

    from railiance_ledger.declaration import models

    keys = {
        field.alias or name
        for attr in models.__all__
        if isinstance(model := getattr(models, attr), type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items()
    }
    documented = {key for key in keys if f"| `{key}` |" in text or f"[{key}]" in text or f"[[{key}]]" in text}
    documented |= {
        key for key in keys if f"[stages.{key}]" in text or f"[{key}." in text or f".{key}]" in text
    }
    assert set() == keys - documented


def test_promotion_form_defaults_to_release_replace_and_routing_switch_needs_routing_rollback(
    tmp_path: Path,
) -> None:
    """[promotion] is optional (release-replace); routing-switch needs rollback.strategy routing (or manual)
    and a canary in the production namespace."""
    assert "release-replace" == load_declaration(EXAMPLE_DIR).promotion.form

    switch = variant(tmp_path / "a", lambda d: d.update(promotion={"form": "routing-switch"}))
    assert "helm-revision" in issue_at(issues_of(switch), "promotion.form").message

    def routed(d: dict[str, Any]) -> None:
        d["promotion"] = {"form": "routing-switch"}
        d["rollback"]["strategy"] = "routing"

    assert "routing-switch" == load_declaration(variant(tmp_path / "b", routed)).promotion.form

    def elsewhere(d: dict[str, Any]) -> None:
        routed(d)
        d["stages"]["canary"]["namespace"] = "hello-web-canary"

    assert (
        "production namespace"
        in issue_at(issues_of(variant(tmp_path / "c", elsewhere)), "promotion.form").message
    )

    unknown = variant(tmp_path / "d", lambda d: d.update(promotion={"form": "weight-shift"}))
    issue_at(issues_of(unknown), "promotion.form")
