"""GET /api/<slug>: the list each type's page shows above its Export button.

A list takes exactly the filters of its export type and reads the rows of that type's handler,
in the same time zone, so the rows a page shows are the rows the export writes. Its items are
the type's columns by field (see :class:`exporter.exports.list_page.ListPage`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.auth.accounts import require_permissions
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.list_page import ListPage
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.input_model import InputModel
from exporter.validation import validate

# What a column's value is in JSON, by its kind.
KIND_TYPES: dict[ColumnKind, type] = {
    ColumnKind.TEXT: str,
    ColumnKind.INTEGER: int,
    ColumnKind.DATETIME: datetime,
    ColumnKind.ENUM: str,
}


class PageQuery(InputModel):
    """The paging part of a list's query string; everything else is the export type's filters."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(20, ge=1, le=100)


Item = TypeVar("Item", bound=BaseModel)


class ListPageOut(BaseModel, Generic[Item]):
    """One page of a list and how many rows match the filters in all."""

    items: list[Item]
    total: int
    page: int
    page_size: int


def _column_type(column: Column) -> Any:
    value_type = KIND_TYPES[column.kind]
    return value_type | None if column.nullable else value_type


@dataclass(frozen=True)
class ListEndpoint:
    """A type's list: its path, the SQL select list of its items, and their models."""

    handler: ExportHandler[Any]
    path: str
    select_list: str
    page_model: type[ListPageOut[Any]]

    @classmethod
    def of(cls, handler: ExportHandler[Any], page: ListPage) -> ListEndpoint:
        fields: dict[str, tuple[Any, str]] = {
            column.field: (_column_type(column), column.sql) for column in handler.columns
        }
        # A list field named as a column's gives that column's value in its own form.
        fields |= {field.name: (field.annotation, field.sql) for field in page.fields}
        order = page.item_fields(handler.columns)
        # Models named after the type: OrderOut and OrderPageOut for "order".
        model_name = "".join(part.capitalize() for part in handler.name.split("_"))
        # Every field required: the document says each item has each key (null where nullable).
        definitions: dict[str, Any] = {name: (fields[name][0], ...) for name in order}
        item_model = create_model(f"{model_name}Out", **definitions)
        page_model = create_model(f"{model_name}PageOut", __base__=ListPageOut[item_model])
        select_list = ", ".join(f'{fields[name][1]} AS "{name}"' for name in order)
        return cls(
            handler, f"/api/{page.slug}", select_list, cast(type[ListPageOut[Any]], page_model)
        )

    async def answer(self, request: web.Request) -> ListPageOut[Any]:
        """The page of items the request's filters and paging ask for."""
        handler = self.handler
        require_permissions(await current_account(request), handler.permission)
        services = services_of(request)
        filters = dict(request.query)
        paging = validate(
            PageQuery,
            {name: filters.pop(name) for name in ("page", "page_size") if name in filters},
        )
        query = handler.rows(validate(handler.params_model, filters))
        limit_at = len(query.args) + 1
        rows_sql = (
            f"SELECT {self.select_list} FROM {query.source}{query.where_sql}"
            f" ORDER BY {query.order_by} LIMIT ${limit_at} OFFSET ${limit_at + 1}"
        )
        offset = (paging.page - 1) * paging.page_size
        async with services.pool.acquire() as conn, conn.transaction(readonly=True):
            # Dates without an offset in the filters mean the export's zone, as in the export.
            await conn.execute(
                "SELECT set_config('TimeZone', $1, true)", services.settings.time_zone
            )
            total = await conn.fetchval(
                f"SELECT count(*) FROM {query.source}{query.where_sql}", *query.args
            )
            records = await conn.fetch(rows_sql, *query.args, paging.page_size, offset)
        return self.page_model.model_validate(
            {
                "items": [dict(record) for record in records],
                "total": total,
                "page": paging.page,
                "page_size": paging.page_size,
            }
        )


def list_endpoints(handlers: HandlerRegistry) -> list[ListEndpoint]:
    """The list of every type that declares a list page."""
    return [
        ListEndpoint.of(handler, handler.list_page)
        for handler in handlers
        if handler.list_page is not None
    ]


def _route(endpoint: ListEndpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def list_items(request: web.Request) -> web.Response:
        return json_model(await endpoint.answer(request))

    return list_items


def list_routes(handlers: HandlerRegistry) -> list[web.RouteDef]:
    return [web.get(endpoint.path, _route(endpoint)) for endpoint in list_endpoints(handlers)]
