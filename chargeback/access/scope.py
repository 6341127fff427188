"""Resolves a principal to what it may read and do: every cost center, or only its teams'."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from chargeback.access.principal import ENTRA_ID, Principal
from chargeback.billing.cost_centers import CostCenterMap
from chargeback.domain.errors import ForbiddenError

ADMIN_ROLE = "Chargeback.Admin"
"""App role: reads everything and regenerates reports."""
FINANCE_READER_ROLE = "Chargeback.FinanceReader"
"""App role: reads every report and all usage, changes nothing."""


class Level(StrEnum):
    ADMIN = "admin"
    FINANCE_READER = "finance_reader"
    TEAM = "team"


@dataclass(frozen=True, slots=True)
class Scope:
    """What one caller may see: everything, or the lines of ``cost_centers`` only."""

    level: Level
    cost_centers: frozenset[str] = frozenset()
    who: str = field(default="", compare=False)
    """Who the caller is, for an audit trail: ``entra:<object id>``, or ``local`` on a developer's machine."""

    @property
    def reads_everything(self) -> bool:
        return self.level in (Level.ADMIN, Level.FINANCE_READER)

    def visible(self, cost_center: str) -> bool:
        return self.reads_everything or cost_center in self.cost_centers

    def require_admin(self) -> None:
        if self.level is not Level.ADMIN:
            raise ForbiddenError(f"this needs the {ADMIN_ROLE} role")

    def narrow(self, cost_center: str | None) -> frozenset[str] | None:
        """The cost centers an answer is cut to (None: all), given an optional ``cost_center`` filter."""
        if cost_center is not None and not self.visible(cost_center):
            raise ForbiddenError("that cost center is not one you may read")
        if cost_center is not None:
            return frozenset({cost_center})
        return None if self.reads_everything else self.cost_centers


EVERYTHING = Scope(Level.ADMIN)
"""The scope of a caller on a developer's machine, where nobody signs in."""


def scope_for(principal: Principal, cost_centers: CostCenterMap) -> Scope:
    """Admin, finance reader, or the cost centers the principal's groups read; otherwise 403."""
    if principal.identity_provider != ENTRA_ID:
        raise ForbiddenError("only a Microsoft Entra ID sign-in is accepted")
    who = f"entra:{principal.object_id or 'unknown'}"
    if ADMIN_ROLE in principal.roles:
        return replace(EVERYTHING, who=who)
    if FINANCE_READER_ROLE in principal.roles:
        return Scope(Level.FINANCE_READER, who=who)
    readable = cost_centers.read_by(principal.groups)
    if readable:
        return Scope(Level.TEAM, readable, who=who)
    raise ForbiddenError("no role or group of yours grants access to chargeback data")
