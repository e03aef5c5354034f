"""Hostile input (issue 13): every input error is exit 2 with a message, never a traceback or a hang.

Two Hypothesis fuzzers with a fixed budget (``derandomize=True``, so the same examples every run):

- over the CLI arguments: every command and option with hostile values (control and bidi characters,
  NUL, 300-character names, numbers beyond 64 bits, paths outside the tree, secrets);
- over the declaration schema: the example ``app.toml`` with one value replaced by a hostile one of
  any TOML type.

Each invocation must end with an exit code of the contract (0-4), no uncaught exception and no
traceback in the output, and no secret of the corpus in what was printed. The budget is in
``FUZZ_EXAMPLES``; docs/secrets.md records it and the result.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from railiance_ledger.cli import app
from railiance_ledger.declaration.loader import validate_app_dir
from tests.secret_corpus import SHAPES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello-web"
FUZZ_EXAMPLES = {
    "cli": int(os.environ.get("FUZZ_CLI", 400)),
    "declaration": int(os.environ.get("FUZZ_DECL", 300)),
}
SECRET = next(s for s in SHAPES if s.name == "github-pat-classic").secret
DIGEST = "sha256:" + "ab" * 32

HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "x" * 300,
    "y" * 5000,
    "\u202eevil",
    "alice\u2066bob",
    "line\nbreak",
    "\r\n",
    "\x1b[31mred",
    "99999999999999999999",
    "-1",
    "0",
    "1e309",
    "nan",
    "../../../etc/shadow",
    "/etc/shadow",
    "/dev/null/x",
    "/nonexistent/dir/x",
    "sqlite:///nonexistent-dir/typo/ledger.db",
    "postgresql://u:p@127.0.0.1:1/none",
    "registry.local/x@" + DIGEST,
    "registry.local/x:latest",
    "x@sha256:abc",
    SECRET,
    f"token={SECRET}",
    "2026-11-30T25:99:00Z",
    "1:" + "0" * 64,
    "a" * 40,
    "local_health",
    "=",
    "--json",
]
text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(alphabet="\x00\x1b\u202e\n\t ab:/.=-", max_size=20),
)

# command -> option -> value strategy; the app directory comes from APP_DIRS.
_OPTIONS: dict[str, dict[str, Any]] = {
    "validate": {"--runbook": text},
    "readiness": {"--image": text},
    "candidate add": {"--image": text, "--revision": text, "--operator": text},
    "waive": {"--gate": text, "--reason": text, "--image": text, "--stage": text, "--operator": text},
    "exception": {"--skip-stage": text, "--reason": text, "--image": text, "--operator": text},
    "approve": {
        "--stage": text,
        "--image": text,
        "--window": text,
        "--rollback-target": text,
        "--waive": text,
        "--approval": text,
        "--reason": text,
        "--operator": text,
    },
    "rollback": {"--reason": text, "--candidate": text, "--approval": text, "--operator": text},
    "deploy": {"--stage": text, "--image": text, "--operator": text},
    "observe": {"--image": text, "--max-samples": text},
    "promote": {"--image": text, "--operator": text},
    "run": {"--image": text, "--skip-check": text},
}
_WORKLOAD_COMMANDS = {
    "status": {},
    "history": {"--limit": text},
    "lineage": {"--at": text},
    "notes": {},
}
_LEDGER_COMMANDS = {"ledger verify": {"--expect-head": text}, "ledger export": {"--output": text}}
# Commands that act on a cluster get only app directories that fail before any action.
_ACTING = {"rollback", "deploy", "observe", "promote", "run"}


@pytest.fixture
def fuzz_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)  # files named by fuzzed arguments (--runbook " ") land here
    monkeypatch.setenv("RAILIANCE_HOME", str(home))
    monkeypatch.setenv("RAILIANCE_OPERATOR", "alice")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    for name in ("RAILIANCE_LEDGER_URL", "RAILIANCE_STATEHUB_URL", "RAILIANCE_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    app_dir = tmp_path / "hello-web"
    shutil.copytree(EXAMPLE, app_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    ledger = tmp_path / "ledger.db"
    url = f"sqlite:///{ledger}"
    assert 0 == CliRunner().invoke(app, ["--ledger", url, "ledger", "init"]).exit_code
    image = f"registry.local/railiance/hello-web@{DIGEST}"
    added = CliRunner().invoke(app, ["--ledger", url, "candidate", "add", str(app_dir), "--image", image])
    assert 0 == added.exit_code, added.output
    return {"app": app_dir, "ledger": ledger, "tmp": tmp_path, "outside": outside}


def _check(result: Any, args: list[str]) -> None:
    shown = " ".join(a[:40] for a in args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__} for: {shown}") from result.exception
    assert result.exit_code in (0, 1, 2, 3, 4), (shown, result.exit_code, result.output[-2000:])
    assert "Traceback" not in result.output, (shown, result.output[-2000:])
    assert SECRET not in result.output, shown


@settings(
    max_examples=FUZZ_EXAMPLES["cli"],
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_cli_arguments_end_in_a_contract_exit_code(
    fuzz_env: dict[str, Path], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(["app", "workload", "ledger"]))
    args: list[str] = []
    if data.draw(st.booleans()):
        args += ["--ledger", data.draw(st.sampled_from(HOSTILE[18:22]))]
    else:
        args += ["--ledger", f"sqlite:///{fuzz_env['ledger']}"]
    if data.draw(st.booleans()):
        args.append("--json")
    if kind == "app":
        command = data.draw(st.sampled_from(sorted(_OPTIONS)))
        options = _OPTIONS[command]
        dirs = [str(fuzz_env["tmp"] / "missing"), "/dev/null", str(fuzz_env["outside"])]
        if command not in _ACTING:
            dirs.append(str(fuzz_env["app"]))
        args += [*command.split(), data.draw(st.sampled_from(dirs))]
    elif kind == "workload":
        command = data.draw(st.sampled_from(sorted(_WORKLOAD_COMMANDS)))
        options = _WORKLOAD_COMMANDS[command]
        args += [command, data.draw(st.one_of(st.just("hello-web"), text))]
    else:
        command = data.draw(st.sampled_from(sorted(_LEDGER_COMMANDS)))
        options = _LEDGER_COMMANDS[command]
        args += command.split()
    for option in (
        data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4)) if options else []
    ):
        args += [option, data.draw(options[option])]
    if "--output" in args:  # never write outside the test's directory
        i = args.index("--output") + 1
        args[i] = (
            str(fuzz_env["tmp"] / "export" / Path(args[i].replace("\x00", "")).name) if args[i] else args[i]
        )
    result = CliRunner().invoke(app, args)
    _check(result, args)


# ---------------------------------------------------------------------------- the declaration schema

_BASE = tomlkit.parse((EXAMPLE / "railiance" / "app.toml").read_text(encoding="utf-8")).unwrap()


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _leaves(v, (*path, i))
    return out


LEAVES = _leaves(_BASE)
toml_value = st.one_of(
    text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([10**18, -1, 0, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(text, max_size=3),
    st.dictionaries(st.sampled_from(["path", "name", "x", "\u202e"]), text, max_size=2),
    st.sampled_from(["/etc/shadow", "../../..", "../" * 20 + "etc", "chart\x00", "a" * 1_000_000]),
)


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    import copy

    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


@settings(
    max_examples=FUZZ_EXAMPLES["declaration"],
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(LEAVES), value=toml_value)
def test_fuzz_declaration_schema_never_raises(
    fuzz_env: dict[str, Path], path: tuple[Any, ...], value: Any
) -> None:
    doc = _replace(_BASE, path, value)
    app_dir = fuzz_env["tmp"] / "fuzzed"
    (app_dir / "railiance").mkdir(parents=True, exist_ok=True)
    for item in ("chart", "railiance"):
        src = fuzz_env["app"] / item
        if item == "chart" and not (app_dir / "chart").exists() and src.exists():
            shutil.copytree(src, app_dir / "chart")
    (app_dir / "railiance" / "app.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    report = validate_app_dir(app_dir)  # never raises
    assert report.ok or report.issues
    result = CliRunner().invoke(app, ["validate", str(app_dir)])
    _check(result, ["validate", ".".join(map(str, path))])
    assert result.exit_code in (0, 2)
    if not report.ok:
        assert result.exit_code == 2


# ---------------------------------------------------------------------------- the measured cases


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_a_ledger_url_naming_no_ledger_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "ledger.db"
    result = _run("--ledger", f"sqlite:///{typo}", "ledger", "verify")
    assert 3 == result.exit_code, result.output
    assert "no ledger at" in result.output
    assert not typo.parent.exists()
    for args in (["status", "x"], ["history", "x"], ["ledger", "export"]):
        assert 3 == _run("--ledger", f"sqlite:///{typo}", *args).exit_code
    assert not typo.parent.exists()
    assert 0 == _run("--ledger", f"sqlite:///{typo}", "ledger", "init").exit_code
    assert 0 == _run("--ledger", f"sqlite:///{typo}", "ledger", "verify").exit_code


def test_first_candidate_add_on_the_default_path_creates_the_ledger(fuzz_env: dict[str, Path]) -> None:
    image = f"registry.local/railiance/hello-web@{DIGEST}"
    assert 3 == _run("status", "hello-web").exit_code  # nothing there yet
    assert 0 == _run("candidate", "add", str(fuzz_env["app"]), "--image", image).exit_code
    assert 0 == _run("status", "hello-web").exit_code


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["history", "hello-web", "--limit", "99999999999999999999"], 2, "--limit"),
        (["ledger", "export", "-o", "/nonexistent/x"], 2, "No such file or directory"),
        (
            ["waive", "APP", "--gate", "local_health", "--reason", "r" * 100_000, "--operator", "bob"],
            2,
            "--reason",
        ),
        (
            ["waive", "APP", "--gate", "local_health", "--reason", "x", "--operator", "o" * 201],
            2,
            "--operator",
        ),
        (
            ["waive", "APP", "--gate", "local_health", "--reason", "x", "--operator", "eve\u202e"],
            2,
            "bidirectional",
        ),
        (["candidate", "add", "APP", "--image", "IMAGE", "--revision", f"token={SECRET}"], 2, "commit id"),
    ],
)
def test_measured_bad_inputs_exit_2_with_a_message(
    fuzz_env: dict[str, Path], args: list[str], code: int, says: str
) -> None:
    image = f"registry.local/railiance/hello-web@{DIGEST}"
    args = [str(fuzz_env["app"]) if a == "APP" else image if a == "IMAGE" else a for a in args]
    result = _run("--ledger", f"sqlite:///{fuzz_env['ledger']}", *args)
    _check(result, args)
    assert code == result.exit_code, result.output
    assert says in result.output
    assert "r" * 300 not in result.output and "\u202e" not in result.output


def test_railiance_home_that_is_not_a_directory_is_a_clean_error(
    fuzz_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAILIANCE_HOME", "/dev/null")
    image = f"registry.local/railiance/hello-web@{DIGEST}"
    for args in (["status", "x"], ["candidate", "add", str(fuzz_env["app"]), "--image", image]):
        result = _run(*args)
        _check(result, args)
        assert 3 == result.exit_code, result.output


def _declaration(app_dir: Path, old: str, new: str) -> None:
    toml = app_dir / "railiance" / "app.toml"
    text = toml.read_text(encoding="utf-8")
    assert old in text
    toml.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('path = "../chart" ', 'path = "/etc/shadow" ', "chart.path"),
        ('path = "../chart" ', 'path = "../../../.." ', "chart.path"),
        ('values = "../chart/values.yaml"', 'values = "../chart/values.yaml\\u0000"', "chart.values"),
        ('path = ".." ', 'path = "../.." ', "source.path"),
        ('values = "../chart/values-local.yaml"', 'values = "escape"', "stages.local.values"),
    ],
)
def test_declared_paths_stay_inside_the_workload_directory(
    fuzz_env: dict[str, Path], old: str, new: str, field: str
) -> None:
    app_dir = fuzz_env["app"]
    (app_dir / "railiance" / "escape").symlink_to(fuzz_env["outside"])  # a symlink out of the tree
    _declaration(app_dir, old, new)
    result = _run("validate", str(app_dir))
    _check(result, ["validate"])
    assert 2 == result.exit_code, result.output
    assert field in result.output


def test_validate_refuses_a_one_megabyte_string_field_with_its_path(fuzz_env: dict[str, Path]) -> None:
    app_dir = fuzz_env["app"]
    _declaration(app_dir, 'host = "hello.example.internal"', f'host = "{"a." * 500_000}"')
    result = _run("validate", str(app_dir))
    _check(result, ["validate"])
    assert 2 == result.exit_code
    assert "routing.host" in result.output and "1000000 characters long" in result.output
