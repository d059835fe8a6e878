"""The rows an export reads: FROM, WHERE and ORDER BY with bound values."""

from __future__ import annotations

from typing import Any


class RowQuery:
    """The FROM, WHERE and ORDER BY of an export, with its values bound as ``$n`` parameters.

    Conditions use ``{}`` where a value goes: ``query.where("a.status = {}", params.status)``.
    Only the placeholders are formatted; values always travel as bound parameters.
    """

    def __init__(self, source: str, *, order_by: str) -> None:
        self.source = source
        self.order_by = order_by
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def where(self, condition: str, *values: Any) -> RowQuery:
        first = len(self.args) + 1
        placeholders = [f"${first + offset}" for offset in range(len(values))]
        self.conditions.append(condition.format(*placeholders))
        self.args.extend(values)
        return self

    @property
    def where_sql(self) -> str:
        if not self.conditions:
            return ""
        return " WHERE " + " AND ".join(f"({condition})" for condition in self.conditions)
