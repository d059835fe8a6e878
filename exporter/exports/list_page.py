"""A type's list page: its address, the fields of its items, and its filters' choices.

The page's filters are the type's params, its table the type's columns (by their ``field``), and
its JSON list the export's rows: the framework builds all three from the handler's declaration.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from exporter.exports.columns import Column

SLUG = re.compile(r"^[a-z][a-z0-9-]*$")
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class ListField:
    """A value of the list's items that no column gives, or that the list gives in another form
    than the file (``r.permissions`` as an array where the file joins it): then it is named
    as that column's field, and takes its place."""

    name: str
    sql: str
    annotation: Any  # the item field's type, e.g. ``int | None`` or ``list[str]``


@dataclasses.dataclass(frozen=True)
class Choices:
    """A filter whose choices are the items of another type's list: which field is the value,
    which the label. Offered only to who may see that list."""

    type_name: str
    value: str = "id"
    label: str = "name"


@dataclasses.dataclass(frozen=True)
class ListPage:
    """The page ``/<slug>`` and its JSON list ``GET /api/<slug>``.

    ``shown`` are the fields of the columns in the table (every column's when empty);
    ``choices`` maps a param to where its choices come from; ``alerts`` maps an ENUM column's
    field to the codes the page marks as a warning.
    """

    slug: str
    shown: Sequence[str] = ()
    fields: Sequence[ListField] = ()
    choices: Mapping[str, Choices] = dataclasses.field(default_factory=dict)
    alerts: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)

    def check(self, type_name: str, columns: Sequence[Column], params: Collection[str]) -> None:
        """Raise ValueError for a page that could not be built from ``columns`` and ``params``."""
        problem = _problem(self, columns, params)
        if problem:
            raise ValueError(f"list page of export handler {type_name!r}: {problem}")

    def item_fields(self, columns: Sequence[Column]) -> list[str]:
        """The item's field names, in order: the columns', then the extra ones."""
        named = [column.field for column in columns]
        return named + [field.name for field in self.fields if field.name not in named]

    def shown_columns(self, columns: Sequence[Column]) -> list[Column]:
        if not self.shown:
            return list(columns)
        by_field = {column.field: column for column in columns}
        return [by_field[name] for name in self.shown]


def _problem(page: ListPage, columns: Sequence[Column], params: Collection[str]) -> str | None:
    if not SLUG.match(page.slug):
        return f"slug {page.slug!r} is not lower-case letters, digits and hyphens"
    names = [column.field for column in columns]
    unnamed = [column.label for column in columns if not column.field]
    if unnamed:
        return f"columns {unnamed} have no field"
    names += [field.name for field in page.fields if field.name not in names]
    for name in names:
        if not FIELD_NAME.match(name):
            return f"field {name!r} is not a lower-case identifier"
    if len(set(names)) != len(names) or len({f.name for f in page.fields}) != len(page.fields):
        return "a field is named twice"
    unknown = set(page.shown) - {column.field for column in columns}
    unknown |= set(page.alerts) - {column.field for column in columns}
    unknown |= set(page.choices) - set(params)
    if unknown:
        return f"{sorted(unknown)} name no column or param"
    return None
