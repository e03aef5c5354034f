"""import-linter contract types of our own (loaded by `lint-imports` from the project root).

``private_names``: no module imports another module's ``_private`` names. import-linter's built-in
``private_modules`` contract covers modules whose *file* name starts with ``_``; it cannot see
``from railiance_ledger.lifecycle.stage2 import _remove``. This contract reads each module of the
listed packages with :mod:`ast` (function-level imports included, which is where such reaches used
to hide) and reports every ``from X import _name`` where ``X`` is a module of ours other than the
importer itself. Dunder names (``__version__``) are public. A private name may be imported from the
importer's own package ``__init__`` (``from . import _x`` inside that package) only if listed in
``allow``; nothing is listed today.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


@dataclass(frozen=True)
class PrivateImport:
    """One offending import: who, what, which name, where."""

    importer: str
    imported: str
    name: str
    line: int


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``node`` (handles ``from . import x``)."""
    if not node.level:
        return node.module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_imports(module: str, source: str, *, is_package: bool, roots: set[str]) -> list[PrivateImport]:
    """Every ``from <our module> import _name`` in ``source`` (pure: tested on strings)."""
    found: list[PrivateImport] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _resolve(module, is_package, node)
        if target.split(".")[0] not in roots or target == module:
            continue
        for alias in node.names:
            if _is_private(alias.name):
                found.append(PrivateImport(module, target, alias.name, node.lineno))
    return found


class PrivateNamesContract(Contract):
    """No module imports another module's ``_private`` names (see the module docstring)."""

    type_name = "private_names"

    containers = fields.SetField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        containers = sorted(str(c) for c in self.containers)  # type: ignore[attr-defined]
        roots = {c.split(".")[0] for c in containers}
        offences: list[PrivateImport] = []
        for module in sorted(graph.modules):
            if not any(module == c or module.startswith(c + ".") for c in containers):
                continue
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                continue
            source = Path(spec.origin).read_text(encoding="utf-8")
            is_package = spec.submodule_search_locations is not None
            offences.extend(private_imports(module, source, is_package=is_package, roots=roots))
        return ContractCheck(kept=not offences, metadata={"offences": offences})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for off in check.metadata["offences"]:
            output.print_error(
                f"{off.importer}:{off.line} imports the private name {off.name!s} from {off.imported}; "
                "make it public in a module of its own, or move the code that needs it",
                bold=False,
            )
            output.new_line()
