"""Import handlers: what a type's uploaded rows may hold and where they go, and the registry.

An import type mirrors an export type of the same name: its columns are the export's, found by
the same labels (or field names), so that an export file is a valid import file. A handler
module declares it by stacking :func:`import_handler` on its ``@export_handler`` function.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from exporter.errors import DuplicateHandler
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.registry import ExportHandler
from exporter.exports.registry import registry as export_registry

# What creating any import takes, beside the write permission of its type.
IMPORT_CREATE = "import:create"
# An SQL identifier the engine writes into statements: a handler's constant, checked anyway.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Reference:
    """A value that names a row of another table: ``table.match`` holds the name in the file,
    ``table.key`` is what the imported row stores (a role's name in the file, its id stored)."""

    table: str
    match: str
    key: str = "id"


@dataclasses.dataclass(frozen=True)
class ImportField:
    """One importable column: the export column with field ``field``, written to ``target``.

    ``required``: a row without it is rejected. ``max_length`` counts characters.
    ``pattern`` is a PostgreSQL regular expression a non-empty value must match; ``split``
    turns the text into a ``text[]`` at that separator (each item trimmed, empty ones
    dropped) and ``item_pattern`` checks each item. An ENUM export column takes its codes or
    their labels; ``references`` looks the value up in another table. ``example`` is the
    value of the template's example row (an enum's first label when not given).
    """

    field: str
    target: str = ""
    required: bool = False
    max_length: int | None = None
    pattern: str | None = None
    split: str | None = None
    item_pattern: str | None = None
    references: Reference | None = None
    example: str = ""

    @property
    def column(self) -> str:
        """The target table's column this field is written to."""
        return self.target or self.field


@dataclasses.dataclass(frozen=True)
class ImportColumn:
    """An importable column as the engine uses it: the declaration and its export column."""

    declared: ImportField
    export: Column
    # Lower-cased labels the enum's codes are known by in the file (code itself included).
    choices: Mapping[str, str]
    # Every header a file may give this column, lower-cased and trimmed.
    headers: frozenset[str]

    @property
    def field(self) -> str:
        return self.declared.field

    @property
    def label(self) -> str:
        return self.export.label

    @property
    def is_enum(self) -> bool:
        return self.export.kind is ColumnKind.ENUM


@dataclasses.dataclass(frozen=True)
class ImportHandler:
    """A registered import type: rows keyed by ``key`` (a field) go into ``table``."""

    export: ExportHandler[Any]
    table: str
    key: str
    columns: tuple[ImportColumn, ...]
    permission: str

    @property
    def name(self) -> str:
        return self.export.name

    @property
    def title(self) -> str:
        return self.export.title

    @property
    def import_permissions(self) -> tuple[str, str]:
        """What importing this type takes: writing its rows, and creating imports."""
        return (self.permission, IMPORT_CREATE)

    @property
    def key_column(self) -> ImportColumn:
        return next(column for column in self.columns if column.field == self.key)


def _choices(column: Column, strings: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    choices = {code.lower(): code for code in column.labels}
    choices |= {label.strip().lower(): code for code, label in column.labels.items()}
    for messages in strings.values():
        for code in column.labels:
            label = messages.get(f"value.{column.field}.{code}")
            if label:
                choices[label.strip().lower()] = code
    return choices


def _headers(column: Column, strings: Mapping[str, Mapping[str, str]]) -> frozenset[str]:
    names = {column.label, column.field}
    names |= {
        m[f"column.{column.field}"] for m in strings.values() if f"column.{column.field}" in m
    }
    return frozenset(name.strip().lower() for name in names if name)


def build_import_handler(
    export: ExportHandler[Any],
    *,
    table: str,
    key: str,
    fields: list[ImportField] | tuple[ImportField, ...],
    permission: str | None = None,
) -> ImportHandler:
    """The import type mirroring ``export``; ValueError when the declaration does not fit it."""
    by_field = {column.field: column for column in export.columns if column.field}
    for name in (table, *(f.column for f in fields)):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"import handler {export.name!r}: {name!r} is not an SQL identifier")
    columns = []
    for declared in fields:
        if declared.field not in by_field:
            raise ValueError(
                f"import handler {export.name!r}: the export has no column with field "
                f"{declared.field!r}"
            )
        column = by_field[declared.field]
        columns.append(
            ImportColumn(
                declared,
                column,
                _choices(column, export.strings) if column.kind is ColumnKind.ENUM else {},
                _headers(column, export.strings),
            )
        )
    if key not in {column.field for column in columns}:
        raise ValueError(f"import handler {export.name!r}: key {key!r} is not one of its fields")
    return ImportHandler(export, table, key, tuple(columns), permission or f"{export.name}:write")


class ImportRegistry:
    """Import types by name; registering a taken name raises."""

    def __init__(self) -> None:
        self._handlers: dict[str, ImportHandler] = {}

    def add(self, handler: ImportHandler) -> None:
        if handler.name in self._handlers:
            raise DuplicateHandler(
                f"an import handler named {handler.name!r} is already registered"
            )
        self._handlers[handler.name] = handler

    def get(self, name: str) -> ImportHandler:
        return self._handlers[name]

    def __iter__(self) -> Iterator[ImportHandler]:
        return iter(sorted(self._handlers.values(), key=lambda handler: handler.name))

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


import_registry = ImportRegistry()


def import_handler(
    *,
    table: str,
    key: str,
    fields: list[ImportField] | tuple[ImportField, ...],
    permission: str | None = None,
) -> Callable[[F], F]:
    """Make the export type of the decorated rows function importable too.

    Stack it above ``@export_handler``: uploaded rows are matched to ``key`` (a field) and
    written to ``table``; ``fields`` are the export's columns a file may set. ``permission``
    is what an account needs, with ``import:create``, to import (``"<name>:write"`` unless
    given).
    """

    def register(rows: F) -> F:
        export = next((h for h in export_registry if h.rows is rows), None)
        if export is None:
            raise ValueError(f"@import_handler on {rows.__name__}: put it above @export_handler")
        import_registry.add(
            build_import_handler(export, table=table, key=key, fields=fields, permission=permission)
        )
        return rows

    return register
