"""Who may do what on the board: an identity's role and the units it covers (pure rules).

Two roles: a **viewer** reads the board (a ward's wall screen, a physician following a
unit), a **nurse** reads and acknowledges. Each identity is limited to units; ``*`` covers
every unit (a charge nurse, the rapid response team). An alert without a unit is seen only
by ``*``: a unit-limited identity must never see a patient it cannot place on its ward.

>>> micu = Identity("rn.alice", "nurse", frozenset({"MICU"}), "password")
>>> micu.sees("MICU"), micu.sees("SICU"), micu.sees(None), micu.can_acknowledge("MICU")
(True, False, False, True)
>>> screen = Identity("screen-1", "viewer", frozenset({"MICU"}), "token")
>>> screen.can_acknowledge("MICU")
False
>>> Identity("rrt", "nurse", frozenset({"*"}), "proxy").sees(None)
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ALL_UNITS", "Identity", "Method", "ROLES", "Role", "parse_units", "valid_name"]

Role = Literal["viewer", "nurse"]
Method = Literal["password", "token", "proxy"]
ROLES: tuple[Role, ...] = ("viewer", "nurse")
ALL_UNITS = "*"
_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# an identity ends up in AckEvent.by (at most 64 characters) and in log lines
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


def valid_name(name: str) -> bool:
    """A user or screen name the audit trail can carry: 1-64 characters, no spaces or
    control characters (they would make log lines and the acks topic ambiguous)."""
    return bool(_NAME.match(name))


def parse_units(units: str | Iterable[str]) -> frozenset[str]:
    """``"MICU,SICU"`` or ``["MICU"]`` or ``"*"``; raises ValueError on an empty or bad list.

    >>> sorted(parse_units(" MICU, SICU ")), parse_units("*")
    (['MICU', 'SICU'], frozenset({'*'}))
    """
    items = units.split(",") if isinstance(units, str) else list(units)
    out = frozenset(u.strip() for u in items if u.strip())
    if not out:
        raise ValueError("give at least one unit (or * for all units)")
    bad = [u for u in out if u != ALL_UNITS and not _UNIT.match(u)]
    if bad:
        raise ValueError(f"not a unit name: {', '.join(sorted(bad))}")
    return frozenset({ALL_UNITS}) if ALL_UNITS in out else out


@dataclass(frozen=True)
class Identity:
    """A signed-in person or screen: ``name`` is what the audit trail records."""

    name: str
    role: Role
    units: frozenset[str]
    method: Method

    @property
    def all_units(self) -> bool:
        return ALL_UNITS in self.units

    def sees(self, unit: str | None) -> bool:
        """May this identity see an alert of ``unit``?"""
        return self.all_units or (unit is not None and unit in self.units)

    def can_acknowledge(self, unit: str | None) -> bool:
        """May it acknowledge an alert of ``unit``? Nurses only, on their own units."""
        return self.role == "nurse" and self.sees(unit)

    def describe(self) -> dict[str, object]:
        """What the page shows about who is signed in."""
        return {"name": self.name, "role": self.role, "units": sorted(self.units),
                "method": self.method}
