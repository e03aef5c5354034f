"""Workload categories, the criticality they imply, and the default observation windows.

The spec ("Default observation windows" and "Human Approval Gates") ties three things to what a
workload *is*: how long its canary is observed, whether Stage 3 needs a human approval, and whether
a short observation window needs a recorded waiver. This module is the one place that decides.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "PRODUCTION_CRITICAL_MINIMUM_WINDOW_SECONDS",
    "Category",
    "Criticality",
    "category_criticality",
]

#: The spec's minimum observation window for production-critical workloads, unless waived.
PRODUCTION_CRITICAL_MINIMUM_WINDOW_SECONDS = 60 * 60


class Criticality(StrEnum):
    """How much a failure of the workload hurts; decides the window and the approval gate."""

    STANDARD = "standard"
    """A non-critical internal service: 15 minute default window, no mandatory approval."""

    ELEVATED = "elevated"
    """A user-facing or shared platform service: 30 minute default window."""

    PRODUCTION_CRITICAL = "production-critical"
    """Infrastructure whose failure blocks others (forge, identity, registry, State Hub, ...):
    operator-defined window of at least 60 minutes unless a waiver is recorded, and explicit human
    approval before production traffic changes."""

    @property
    def default_window_seconds(self) -> int:
        """The default canary observation window for this criticality, in seconds."""
        return _DEFAULT_WINDOW[self]

    @property
    def minimum_window_seconds(self) -> int | None:
        """The window below which a recorded waiver is needed (None: no minimum)."""
        if self is Criticality.PRODUCTION_CRITICAL:
            return PRODUCTION_CRITICAL_MINIMUM_WINDOW_SECONDS
        return None

    @property
    def requires_approval(self) -> bool:
        """True when the spec requires human approval before production traffic changes."""
        return self is Criticality.PRODUCTION_CRITICAL

    @property
    def rank(self) -> int:
        """Ordering of criticalities: standard < elevated < production-critical."""
        return _RANK[self]


_DEFAULT_WINDOW: dict[Criticality, int] = {
    Criticality.STANDARD: 15 * 60,
    Criticality.ELEVATED: 30 * 60,
    Criticality.PRODUCTION_CRITICAL: PRODUCTION_CRITICAL_MINIMUM_WINDOW_SECONDS,
}
_RANK: dict[Criticality, int] = {
    Criticality.STANDARD: 0,
    Criticality.ELEVATED: 1,
    Criticality.PRODUCTION_CRITICAL: 2,
}


class Category(StrEnum):
    """What kind of workload this is (``workload.category``); it decides the criticality."""

    INTERNAL_SERVICE = "internal-service"
    """A non-critical internal service (standard)."""

    USER_FACING = "user-facing"
    """A service end users reach directly (elevated)."""

    SHARED_PLATFORM = "shared-platform"
    """A platform service shared by several workloads, such as a cache (elevated)."""

    SOURCE_FORGE = "source-forge"
    """A source forge such as Forgejo or Gitea (production-critical)."""

    PACKAGE_REGISTRY = "package-registry"
    """A package or container registry (production-critical)."""

    IDENTITY = "identity"
    """Identity, MFA, SSO or authorization systems (production-critical)."""

    STATE_HUB = "state-hub"
    """State Hub (production-critical)."""

    OPERATOR_COORDINATION = "operator-coordination"
    """Inter-Hub and other operator coordination services (production-critical)."""

    DATABASE = "database"
    """Databases (production-critical)."""

    OBJECT_STORE = "object-store"
    """Object stores (production-critical)."""

    BACKUP = "backup"
    """Backup systems (production-critical)."""

    INGRESS = "ingress"
    """Ingress controllers (production-critical)."""

    CERTIFICATES = "certificates"
    """Certificate controllers (production-critical)."""

    CLUSTER_POLICY = "cluster-policy"
    """Cluster-wide policy controllers (production-critical)."""

    MULTI_DOMAIN = "multi-domain"
    """Any workload whose failure blocks multiple repos or domains (production-critical)."""

    @property
    def criticality(self) -> Criticality:
        """The criticality this category implies."""
        return category_criticality(self)


_ELEVATED = frozenset({Category.USER_FACING, Category.SHARED_PLATFORM})
_STANDARD = frozenset({Category.INTERNAL_SERVICE})


def category_criticality(category: Category) -> Criticality:
    """The criticality implied by ``category`` (every category not standard or elevated is critical)."""
    if category in _STANDARD:
        return Criticality.STANDARD
    if category in _ELEVATED:
        return Criticality.ELEVATED
    return Criticality.PRODUCTION_CRITICAL
