"""Export handlers: what a type exports (columns, rows query, params) and the registry of types.

A handler module in ``handlers/`` declares one type with :func:`export_handler`; the framework
owns files, writers, statuses and errors. Handlers are discovered by :func:`load_handlers`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, get_args

from pydantic import ConfigDict, ValidationInfo, field_validator, model_validator

from exporter.errors import DuplicateHandler, HandlerNotFound
from exporter.exports.columns import Column
from exporter.exports.list_page import ListPage
from exporter.exports.row_query import RowQuery
from exporter.input_model import InputModel

# What creating any export takes, beside the permission of its type.
EXPORT_CREATE = "export:create"
FORMULA_PREFIXES = ("=", "@", "+", "-", "\t", "\r", "\n")
BLANK_PATTERN = r"^\s*$"
NULL = {"type": "null"}
# Keywords of a property's schema that describe it rather than constrain its value.
NOTES = frozenset({"title", "description", "default", "examples"})


def _blank_allowed(schema: dict[str, Any]) -> None:
    # What _blank_means_unset lets through, told in the schema: null or a blank text for any
    # filter that may be left out.
    required = schema.get("required", [])
    for name, property_schema in schema.get("properties", {}).items():
        if name in required:
            continue
        members = property_schema.pop("anyOf", None) or [
            {key: property_schema.pop(key) for key in list(property_schema) if key not in NOTES}
        ]
        if NULL not in members:
            members.append(NULL)
        property_schema["anyOf"] = [*members, {"type": "string", "pattern": BLANK_PATTERN}]


class ExportParams(InputModel):
    """Base of every handler's filter model: unknown fields are refused, values are frozen, and
    every value can be bound in PostgreSQL (see :mod:`exporter.input_model`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, json_schema_extra=_blank_allowed
    )

    @field_validator("*", mode="before")
    @classmethod
    def _true_is_not_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would read true as 1: only a filter declared yes/no takes true or false.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation):
                raise ValueError("must not be true or false")
        return value

    @model_validator(mode="before")
    @classmethod
    def _blank_means_unset(cls, data: Any) -> Any:
        # A cleared filter box sends "" (or "  "); it means "no filter", not "match nothing".
        if isinstance(data, dict):
            return {
                key: value
                for key, value in data.items()
                if not (isinstance(value, str) and not value.strip()) and value is not None
            }
        return data


P = TypeVar("P", bound=ExportParams)
RowsFunction = Callable[[P], RowQuery]
# Language → message key → text: what the pages call the type, its columns, params and codes.
Strings = Mapping[str, Mapping[str, str]]


@dataclasses.dataclass(frozen=True)
class ExportHandler(Generic[P]):
    """A registered export type."""

    name: str
    title: str
    params_model: type[P]
    columns: tuple[Column, ...]
    rows: RowsFunction[P]
    permission: str
    timeout_s: int | None = None
    list_page: ListPage | None = None
    strings: Strings = dataclasses.field(default_factory=dict)

    @property
    def export_permissions(self) -> tuple[str, str]:
        """What exporting this type takes: seeing its list, and creating exports."""
        return (self.permission, EXPORT_CREATE)

    def query_for(self, params: Mapping[str, Any]) -> RowQuery:
        """Build the row query from stored (already validated and normalised) params."""
        return self.rows(self.params_model.model_validate(params))


class HandlerRegistry:
    """Export types by name; registering a taken name raises."""

    def __init__(self) -> None:
        self._handlers: dict[str, ExportHandler[Any]] = {}

    def add(self, handler: ExportHandler[Any]) -> None:
        if handler.name in self._handlers:
            raise DuplicateHandler(
                f"an export handler named {handler.name!r} is already registered"
            )
        slug = handler.list_page and handler.list_page.slug
        if slug and any(other.list_page and other.list_page.slug == slug for other in self):
            raise DuplicateHandler(f"a list page at /{slug} is already registered")
        self._handlers[handler.name] = handler

    def get(self, name: str) -> ExportHandler[Any]:
        try:
            return self._handlers[name]
        except KeyError:
            raise HandlerNotFound(f"unknown export type {name!r}") from None

    def __iter__(self) -> Iterator[ExportHandler[Any]]:
        return iter(sorted(self._handlers.values(), key=lambda handler: handler.name))

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


registry = HandlerRegistry()


def export_handler(
    name: str,
    *,
    title: str,
    params: type[P],
    columns: list[Column] | tuple[Column, ...],
    permission: str | None = None,
    timeout_s: int | None = None,
    list_page: ListPage | None = None,
    strings: Strings | None = None,
) -> Callable[[RowsFunction[P]], RowsFunction[P]]:
    """Register the decorated rows function as the export type ``name``.

    ``permission`` is what an account needs to see this type's list and, with
    ``export:create``, to export it (``"<name>:read"`` unless given). ``timeout_s`` is this
    type's deadline; without it, ``EXPORTER_JOB_TIMEOUT_S`` applies. ``list_page`` gives the
    type a page and a JSON list; ``strings`` are the pages' words for it in each language.
    """
    if not columns:
        raise ValueError(f"export handler {name!r} declares no columns")
    if permission is not None and not permission.strip():
        raise ValueError(f"export handler {name!r} declares an empty permission")
    for column in columns:
        for label in column.labels.values():
            # csv writes labels unguarded: one that Excel could read as a formula is refused.
            if label.startswith(FORMULA_PREFIXES):
                raise ValueError(f"label {label!r} of column {column.label!r} looks like a formula")
    if list_page is not None:
        list_page.check(name, columns, params.model_fields)
    key_sets = {frozenset(messages) for messages in (strings or {}).values()}
    if len(key_sets) > 1:
        raise ValueError(f"export handler {name!r} has other strings in one language than another")

    def register(rows: RowsFunction[P]) -> RowsFunction[P]:
        registry.add(
            ExportHandler(
                name,
                title,
                params,
                tuple(columns),
                rows,
                permission or f"{name}:read",
                timeout_s,
                list_page,
                strings or {},
            )
        )
        return rows

    return register


def load_handlers(extra_modules: str = "", package: str = "handlers") -> HandlerRegistry:
    """Import every module of the handlers package, and any comma-separated extra modules,
    so that each registers itself (Python imports a module once, however often this runs)."""
    root = importlib.import_module(package)
    for module in pkgutil.iter_modules(root.__path__, prefix=f"{package}."):
        importlib.import_module(module.name)
    for name in filter(None, (part.strip() for part in extra_modules.split(","))):
        importlib.import_module(name)
    return registry
