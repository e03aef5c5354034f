"""Who acts: an operator identity that remembers whether it was given explicitly.

A human decision (approval, revocation, waiver, emergency exception) names its operator. The
identity is *explicit* when the operator gave it (``--operator``, ``RAILIANCE_OPERATOR``, the
Dagster launchpad) and *defaulted* when the program filled it in (the login name, a job's service
name). Records keep both facts (``operator`` and ``operator_explicit``), so an audit can tell a
named human from a default.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Operator", "OperatorLike"]


@dataclass(frozen=True)
class Operator:
    """An operator name and whether it was given explicitly."""

    name: str
    explicit: bool

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValueError("an operator identity needs a name")
        if self.name != self.name.strip():
            object.__setattr__(self, "name", self.name.strip())

    def __str__(self) -> str:
        return self.name

    @classmethod
    def given(cls, name: str) -> Operator:
        """An identity the operator gave (``--operator``, ``RAILIANCE_OPERATOR``, launchpad)."""
        return cls(name, True)

    @classmethod
    def defaulted(cls, name: str) -> Operator:
        """An identity the program filled in (login name, service account)."""
        return cls(name, False)

    @classmethod
    def of(cls, value: OperatorLike, *, explicit: bool = True) -> Operator:
        """``value`` as an ``Operator``; a plain string counts as ``explicit`` (default: given).

        Plain strings are accepted while callers move to ``Operator``: they come from
        ``--operator``/``RAILIANCE_OPERATOR`` or the launchpad, which are explicit.
        """
        return value if isinstance(value, Operator) else cls(value, explicit)


OperatorLike = Operator | str
"""What services accept while callers move to ``Operator``: an identity, or a plain name."""
