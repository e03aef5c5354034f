"""The workload declaration ``railiance/app.toml``: models, loading, validation, criticality, runbook.

Layer: imports only ``railiance_ledger.domain``, ``railiance_ledger.errors``, the standard library
and pydantic. See docs/app-toml.md for the format.
"""

from __future__ import annotations

from railiance_ledger.declaration.criticality import Category, Criticality, category_criticality
from railiance_ledger.declaration.loader import (
    ValidationReport,
    declaration_file,
    load_declaration,
    validate_app_dir,
)
from railiance_ledger.declaration.models import SCHEMA_ID, Declaration
from railiance_ledger.declaration.runbook import render_runbook

__all__ = [
    "SCHEMA_ID",
    "Category",
    "Criticality",
    "Declaration",
    "ValidationReport",
    "category_criticality",
    "declaration_file",
    "load_declaration",
    "render_runbook",
    "validate_app_dir",
]
