"""Stage 1's gate names and limits, the facts one run gathers (``Stage1Context``), small helpers."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from railiance_ledger.domain.durations import parse_duration
from railiance_ledger.domain.gates import names_for
from railiance_ledger.domain.redaction import is_secret_key
from railiance_ledger.lifecycle.kit import StageRun

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration

STAGE: Literal[1] = 1

REQUIRED_CHECKS: tuple[str, ...] = names_for(STAGE)
"""The stable names of Stage 1's required checks, in the order they are reported (from the gate
catalogue, ``domain.gates``); the declared local checks follow ``local_health``."""

MIGRATION_CLASSES = ("none", "reversible", "forward-only", "requires-approval")

OUTPUT_TAIL_CHARS = 4096
"""The longest redacted output tail kept as evidence of a local check."""

WORKLOAD_TAIL_CHARS = 1024
"""The longest redacted output tail of the local workload kept when it fails to start."""

_ENV_SCRUB = re.compile(r"(?i)^(RAILIANCE_LEDGER_URL|KUBECONFIG|.*_TOKEN|.*_KEY|.*SECRET.*|.*PASSWORD.*)$")


@dataclass
class Stage1Context:
    """The facts gathered so far in one Stage 1 run (mutable while the run is assembled): the kit's
    ``run`` (declaration, candidate digest, image, registration, source revision, history, clock) and
    what the checks rendered and read."""

    run: StageRun
    app_dir: Path
    rendered: list[dict[str, Any]] | None = None
    render_error: str | None = None
    values_files: list[Path] = field(default_factory=list)
    printed_secrets: list[tuple[str, str]] = field(default_factory=list)
    """(where, kind) for each kind of secret a local command printed: the workload started for
    ``local_health`` or a declared local check. Fails ``secrets_by_reference``."""

    @property
    def decl(self) -> Declaration:
        return self.run.decl

    @property
    def railiance_dir(self) -> Path:
        return self.run.decl.railiance_dir


def seconds_of(value: Any, default: float) -> float:
    """Seconds from a declaration duration: ``"15s"``, an int, a ``timedelta``, or ``None``."""
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float(parse_duration(str(value)))


def text_of(value: Any) -> str | None:
    """An enum's value or a string, else ``None``."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def relative_to(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return path.name


def local_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment local commands run with: ours, minus anything credential-like
    (Stage 1 checks must not need production credentials), plus ``TRACK=local`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _ENV_SCRUB.match(k) and not is_secret_key(k)}
    env["TRACK"] = "local"
    env.update(extra or {})
    return env
