"""What each list page shows, built from its export type: filters from the params model, the
table from the columns, words from the type's strings.

Labels are message keys; a type's strings become ``type.<type>.<key>`` (see
:func:`exporter.web.i18n.type_key`). The list template renders any page described here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, get_origin

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.list_page import Choices, ListPage
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.web.i18n import has_string, type_key

# The largest page the list API gives: a select takes its options from one.
OPTIONS_PAGE_SIZE = 100
# How the page formats a column's values, by the column's kind.
CELL_KINDS = {
    ColumnKind.TEXT: "text",
    ColumnKind.INTEGER: "number",
    ColumnKind.DATETIME: "datetime",
    ColumnKind.ENUM: "enum",
}
TIME_FORMATS = ("date", "date-time")


class FilterKind(StrEnum):
    SEARCH = "search"
    SELECT = "select"
    DATE = "date"
    NUMBER = "number"


@dataclass(frozen=True)
class ItemOptions:
    """A select's options beyond its own: the items of the list at ``source``."""

    type_name: str
    source: str
    value: str
    label: str


@dataclass(frozen=True)
class Filter:
    """One filter control; its ``name`` is the export param (and query parameter) it sets."""

    name: str
    label: str
    kind: FilterKind
    hint: str | None = None
    max_length: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    # Shown only to who may see that list.
    options_from: ItemOptions | None = None


@dataclass(frozen=True)
class ListColumn:
    """A table column: the item field it shows, its heading, and how the page formats it.

    ``values`` prefixes the message keys of an enum's ``codes``; ``alerts`` are codes shown as a
    warning.
    """

    field: str
    label: str
    kind: str = "text"
    values: str = ""
    codes: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListPageView:
    """A list page as the template renders it."""

    path: str
    export_type: str
    permission: str
    source: str
    title: str
    caption: str
    empty: str
    filters: tuple[Filter, ...]
    columns: tuple[ListColumn, ...]

    @property
    def message_keys(self) -> set[str]:
        """Every message the page shows: each must be in every language."""
        keys = {self.title, self.caption, self.empty}
        for control in self.filters:
            keys |= {control.label, *(label for _, label in control.options)}
            keys |= {control.hint} if control.hint else set()
        for column in self.columns:
            keys |= {column.label, *(f"{column.values}.{code}" for code in column.codes)}
        return keys


def _members(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [member for member in schema.get("anyOf", [schema]) if member.get("type") != "null"]


def is_time(schema: dict[str, Any]) -> bool:
    """Whether a param's schema takes a date or a date-time."""
    return any(member.get("format") in TIME_FORMATS for member in _members(schema))


def _choices(schema: dict[str, Any]) -> list[str]:
    return [str(code) for member in _members(schema) for code in member.get("enum", [])]


def param_options(handler: ExportHandler[Any], name: str) -> tuple[tuple[str, str], ...]:
    """A param's fixed choices (a Literal's codes), each with its message key."""
    schema = handler.params_model.model_json_schema()["properties"][name]
    return tuple(
        (code, type_key(handler.name, f"value.{name}.{code}")) for code in _choices(schema)
    )


def item_options(handlers: HandlerRegistry, choices: Choices) -> ItemOptions:
    page = handlers.get(choices.type_name).list_page
    if page is None:
        raise ValueError(f"{choices.type_name!r} has no list page to take choices from")
    source = f"/api/{page.slug}?page_size={OPTIONS_PAGE_SIZE}"
    return ItemOptions(choices.type_name, source, choices.value, choices.label)


def _filter(
    handler: ExportHandler[Any], page: ListPage, handlers: HandlerRegistry, name: str
) -> Filter:
    schema = handler.params_model.model_json_schema()["properties"][name]
    label = type_key(handler.name, f"param.{name}")
    options = param_options(handler, name)
    if name in page.choices or options:
        choices = page.choices.get(name)
        items = None if choices is None else item_options(handlers, choices)
        return Filter(name, label, FilterKind.SELECT, options=options, options_from=items)
    if is_time(schema):
        return Filter(name, label, FilterKind.DATE)
    if any(member.get("type") == "integer" for member in _members(schema)):
        return Filter(name, label, FilterKind.NUMBER)
    hint = f"param.{name}.hint"
    lengths = [member["maxLength"] for member in _members(schema) if "maxLength" in member]
    return Filter(
        name,
        label,
        FilterKind.SEARCH,
        hint=type_key(handler.name, hint) if has_string(handler, hint) else None,
        max_length=min(lengths, default=None),
    )


def _column(handler: ExportHandler[Any], page: ListPage, column: Column) -> ListColumn:
    kind = CELL_KINDS[column.kind]
    override = next((field for field in page.fields if field.name == column.field), None)
    if override is not None and get_origin(override.annotation) is list:
        kind = "list"
    return ListColumn(
        column.field,
        type_key(handler.name, f"column.{column.field}"),
        kind,
        values=type_key(handler.name, f"value.{column.field}") if column.labels else "",
        codes=tuple(column.labels),
        alerts=tuple(page.alerts.get(column.field, ())),
    )


def list_page_view(handler: ExportHandler[Any], handlers: HandlerRegistry) -> ListPageView:
    """The page of ``handler``'s list (which it must declare)."""
    page = handler.list_page
    assert page is not None
    return ListPageView(
        path=f"/{page.slug}",
        export_type=handler.name,
        permission=handler.permission,
        source=f"/api/{page.slug}",
        title=type_key(handler.name, "page"),
        caption=type_key(handler.name, "name"),
        empty=type_key(handler.name, "empty"),
        filters=tuple(
            _filter(handler, page, handlers, name) for name in handler.params_model.model_fields
        ),
        columns=tuple(
            _column(handler, page, column) for column in page.shown_columns(handler.columns)
        ),
    )


# The tasks page's table; its script fills each cell by field.
TASK_COLUMNS = tuple(
    ListColumn(field, f"tasks.col.{field}")
    for field in (
        "type",
        "format",
        "filters",
        "status",
        "progress",
        "created",
        "finished",
        "size",
        "rows",
        "error",
        "actions",
    )
)

# The imports' table on the tasks page.
IMPORT_TASK_COLUMNS = tuple(
    ListColumn(field, f"imports.col.{field}")
    for field in (
        "type",
        "file",
        "mode",
        "status",
        "progress",
        "counts",
        "created",
        "finished",
        "errors",
        "actions",
    )
)
