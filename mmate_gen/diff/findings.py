"""A classified change between two spec sets: which rule, about what, where on both sides."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..diagnostics import Location
from .rules import CATEGORY_ORDER, RULES, SEVERITY_ORDER, Category, Severity


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    subject: str
    """What changed, as allow entries name it: ``OrderCreatedEvent.amount``, ``queue
    order-service-queue``, ``models.OrderReply``..."""
    message: str
    """What changed, with the old and new values."""
    old: Location | None
    new: Location | None
    allowed: bool = False

    @property
    def category(self) -> Category:
        return RULES[self.rule].category

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    @property
    def migration(self) -> str:
        return RULES[self.rule].migration

    @property
    def blocking(self) -> bool:
        """Breaking and not allowed: fails the diff."""
        return self.severity == "breaking" and not self.allowed

    def allow(self) -> Finding:
        return replace(self, allowed=True)


def finding(
    rule_id: str, subject: str, message: str, old: Location | None, new: Location | None
) -> Finding:
    if rule_id not in RULES:
        raise KeyError(f"no diff rule {rule_id!r}")
    return Finding(rule_id, subject, message, old, new)


def sort_key(f: Finding) -> tuple[int, int, str, str, str]:
    return (SEVERITY_ORDER[f.severity], CATEGORY_ORDER[f.category], f.subject, f.rule, f.message)
