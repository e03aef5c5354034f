"""The private_names import-linter contract (tools/import_contracts.py) sees what it must."""

from __future__ import annotations

from tools.import_contracts import private_imports

ROOTS = {"railiance_ledger"}


def test_private_name_from_another_module_is_reported_even_inside_a_function() -> None:
    source = "def f():\n    from railiance_ledger.lifecycle.stage2 import _remove, store_manifests\n"
    found = private_imports("railiance_ledger.lifecycle.stage3", source, is_package=False, roots=ROOTS)
    assert [(f.imported, f.name, f.line) for f in found] == [
        ("railiance_ledger.lifecycle.stage2", "_remove", 2)
    ]


def test_relative_import_is_resolved_against_the_importer() -> None:
    source = "from .stage2 import _open_deployment\nfrom . import _x\n"
    found = private_imports("railiance_ledger.lifecycle.rollback", source, is_package=False, roots=ROOTS)
    assert [(f.imported, f.name) for f in found] == [
        ("railiance_ledger.lifecycle.stage2", "_open_deployment"),
        ("railiance_ledger.lifecycle", "_x"),
    ]


def test_public_dunder_and_third_party_private_names_are_not_ours_to_police() -> None:
    source = (
        "from railiance_ledger.lifecycle.kit import StageRun\n"
        "from railiance_ledger import __version__\n"
        "from dagster._core.definitions import something\n"
        "from typing import _SpecialForm\n"
    )
    assert private_imports("railiance_ledger.cli", source, is_package=False, roots=ROOTS) == []
