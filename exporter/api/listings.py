"""GET /api/accounts and /api/roles: the lists the back-office pages show above their Export button.

Each list takes exactly the filters of its export type and builds its WHERE clause with that
type's handler, in the same time zone, so the rows a page shows are the rows the export writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.auth.accounts import require_permissions
from exporter.input_model import InputModel
from exporter.validation import validate

routes = web.RouteTableDef()

# Select lists over the handlers' own FROM clauses (aliases a and r there).
ACCOUNT_FIELDS = """
    a.id, a.username, a.nickname, a.email, a.phone, a.status, a.role_id, r.name AS role_name,
    a.created_at, a.last_login_at
"""
ROLE_FIELDS = """
    r.id, r.name, r.description, r.permissions,
    (SELECT count(*) FROM accounts a WHERE a.role_id = r.id) AS account_count, r.created_at
"""


class PageQuery(InputModel):
    """The paging part of a list's query string; everything else is the export type's filters."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(20, ge=1, le=100)


class AccountOut(BaseModel):
    id: int
    username: str
    nickname: str | None
    email: str | None
    phone: str | None
    status: str
    role_id: int | None
    role_name: str | None
    created_at: datetime
    last_login_at: datetime | None


class RoleOut(BaseModel):
    id: int
    name: str
    description: str
    permissions: list[str]
    account_count: int
    created_at: datetime


Item = TypeVar("Item", bound=BaseModel)


class ListPageOut(BaseModel, Generic[Item]):
    """One page of a list and how many rows match the filters in all."""

    items: list[Item]
    total: int
    page: int
    page_size: int


class AccountPageOut(ListPageOut[AccountOut]):
    pass


class RolePageOut(ListPageOut[RoleOut]):
    pass


Page = TypeVar("Page", bound=ListPageOut[Any])


async def _list_page(
    request: web.Request, type_name: str, fields: str, page_model: type[Page]
) -> Page:
    account = await current_account(request)
    services = services_of(request)
    handler = services.handlers.get(type_name)
    require_permissions(account, handler.permission)
    filters = dict(request.query)
    paging = validate(
        PageQuery, {name: filters.pop(name) for name in ("page", "page_size") if name in filters}
    )
    query = handler.rows(validate(handler.params_model, filters))
    limit_at = len(query.args) + 1
    rows_sql = (
        f"SELECT {fields} FROM {query.source}{query.where_sql} ORDER BY {query.order_by}"
        f" LIMIT ${limit_at} OFFSET ${limit_at + 1}"
    )
    offset = (paging.page - 1) * paging.page_size
    async with services.pool.acquire() as conn, conn.transaction(readonly=True):
        # Dates without an offset in the filters mean the export's zone, as they do in the export.
        await conn.execute("SELECT set_config('TimeZone', $1, true)", services.settings.time_zone)
        total = await conn.fetchval(
            f"SELECT count(*) FROM {query.source}{query.where_sql}", *query.args
        )
        records = await conn.fetch(rows_sql, *query.args, paging.page_size, offset)
    return page_model.model_validate(
        {
            "items": [dict(record) for record in records],
            "total": total,
            "page": paging.page,
            "page_size": paging.page_size,
        }
    )


@routes.get("/api/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    return json_model(await _list_page(request, "account", ACCOUNT_FIELDS, AccountPageOut))


@routes.get("/api/roles")
async def list_roles(request: web.Request) -> web.Response:
    return json_model(await _list_page(request, "role", ROLE_FIELDS, RolePageOut))
