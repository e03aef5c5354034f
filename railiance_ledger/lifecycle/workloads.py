"""The workloads declared under an apps directory, as the Dagster code location sees them.

- ``discover_workloads``: every ``*/railiance/app.toml`` under an apps directory, loaded, with the
  problems of the ones that do not load (a broken declaration never hides the others).
- ``find_workload``: one of them by name, else ``InvalidInput`` naming the apps directory.
- ``registry_path``: an ``image.repository`` without its registry host (what the registry is asked for).

No dagster import here (the import-linter contract forbids it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from railiance_ledger.domain.text import shown
from railiance_ledger.errors import InvalidInput, RailianceError

if TYPE_CHECKING:
    from railiance_ledger.declaration.models import Declaration

__all__ = ["DeclaredWorkload", "discover_workloads", "find_workload", "registry_path"]

_HOST_RE = re.compile(r"[.:]|^localhost$")


@dataclass(frozen=True)
class DeclaredWorkload:
    """One workload declared under the apps directory: where it lives and what the sensor watches."""

    app_dir: Path
    decl: Declaration

    @property
    def name(self) -> str:
        """The workload name (the ledger stream and partition-key prefix)."""
        return self.decl.workload.name

    @property
    def repository(self) -> str:
        """The declared ``image.repository`` (with its registry host)."""
        return str(self.decl.image.repository)

    @property
    def repository_path(self) -> str:
        """The repository path inside the registry: ``image.repository`` minus the registry host."""
        return registry_path(self.repository)

    @property
    def platform(self) -> str | None:
        """The declared ``image.platform`` (``os/arch[/variant]``), or ``None``."""
        return getattr(self.decl.image, "platform", None)

    @property
    def tag_pattern(self) -> str | None:
        """The declared ``image.tag_pattern`` (a regular expression), or ``None`` for every tag."""
        pattern = getattr(self.decl.image, "tag_pattern", None)
        return str(pattern) if pattern else None


def registry_path(repository: str) -> str:
    """``registry.local/railiance/hello-web`` -> ``railiance/hello-web``.

    The first component is a registry host when it contains a ``.`` or a ``:`` or is ``localhost``
    (the rule container tools use); otherwise the whole reference is the path.
    """
    first, sep, rest = repository.partition("/")
    if sep and _HOST_RE.search(first):
        return rest
    return repository


_DECLARATIONS: dict[Path, tuple[tuple[int, int, int], Declaration]] = {}
"""Loaded declarations by app.toml path, reused while the file is unchanged (sensors tick often)."""


def discover_workloads(apps_dir: Path) -> tuple[list[DeclaredWorkload], list[str]]:
    """Every loadable ``<apps_dir>/*/railiance/app.toml``, sorted by directory, and the problems of the rest.

    Two directories declaring the same workload name are a problem: the second one is left out.
    A declaration is parsed again only when its file changed (size, mtime, inode).
    """
    from railiance_ledger.declaration.loader import load_declaration

    found: list[DeclaredWorkload] = []
    problems: list[str] = []
    names: dict[str, Path] = {}
    if not apps_dir.is_dir():
        return [], [f"apps directory {apps_dir} does not exist"]
    for toml in sorted(apps_dir.glob("*/railiance/app.toml")):
        app_dir = toml.parent.parent
        try:
            st = toml.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = _DECLARATIONS.get(toml)
            if cached is not None and cached[0] == stamp:
                decl = cached[1]
            else:
                decl = load_declaration(app_dir)
                _DECLARATIONS[toml] = (stamp, decl)
        except RailianceError as exc:
            problems.append(f"{app_dir}: {exc.message}")
            continue
        except OSError as exc:
            problems.append(f"{app_dir}: {exc}")
            continue
        name = decl.workload.name
        if name in names:
            problems.append(
                f"{app_dir}: workload {shown(name)} is already declared by {names[name]}; ignored"
            )
            continue
        names[name] = app_dir
        found.append(DeclaredWorkload(app_dir=app_dir, decl=decl))
    return found, problems


def find_workload(apps_dir: Path, workload: str) -> DeclaredWorkload:
    """The declared workload named ``workload``, else ``InvalidInput`` naming the apps directory."""
    found, problems = discover_workloads(apps_dir)
    for w in found:
        if w.name == workload:
            return w
    extra = f"; declarations that did not load: {'; '.join(problems)}" if problems else ""
    raise InvalidInput(
        f"workload {shown(workload)} is not declared under {apps_dir}{extra}",
        hint=(
            "set RAILIANCE_APPS_DIR (or the apps resource's apps_dir) to the directory holding "
            "<app>/railiance/app.toml"
        ),
    )
