"""The account and role lists behind the pages: the export's filters, the export's rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.support import ApiUser, csv_rows

ACCOUNT_FILTERS = {
    "keyword": "User",
    "status": "active",
    "created_from": "2023-01-10",
    "created_to": "2023-03-31",
}


async def every_page(user: ApiUser, path: str, filters: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        status, body = await user.get(f"{path}?{urlencode({**filters, 'page': page})}")
        assert status == 200, body
        items.extend(body["items"])
        if page * body["page_size"] >= body["total"]:
            assert len(items) == body["total"]
            return items
        page += 1


@pytest.mark.usefixtures("worker")
async def test_the_account_list_shows_exactly_the_rows_the_export_writes(admin: ApiUser) -> None:
    listed = await every_page(admin, "/api/accounts", ACCOUNT_FILTERS)
    exported = csv_rows(await admin.export("account", "csv", **ACCOUNT_FILTERS))

    assert listed, "the filters should match some seeded accounts"
    assert [str(item["id"]) for item in listed] == [row[0] for row in exported[1:]]
    assert [item["username"] for item in listed] == [row[1] for row in exported[1:]]


async def test_an_account_row_has_what_the_page_shows(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    status, body = await admin.get("/api/accounts?keyword=admin")

    assert status == 200
    (item,) = body["items"]
    stored = await db.fetchrow(
        "SELECT r.id, r.name, a.created_at FROM accounts a JOIN roles r ON r.id = a.role_id"
        " WHERE a.username = 'admin'"
    )
    assert item["username"] == "admin"
    assert item["status"] == "active"
    assert (item["role_id"], item["role_name"]) == (stored["id"], stored["name"])
    assert datetime.fromisoformat(item["created_at"]) == stored["created_at"]
    assert body["total"] == 1 and body["page"] == 1 and body["page_size"] == 20


async def test_the_role_list_filters_by_keyword_and_counts_accounts(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    status, body = await admin.get("/api/roles?keyword=管理员&page_size=100")

    assert status == 200
    assert [item["name"] for item in body["items"]] == ["超级管理员", "管理员"]
    expected = await db.fetchval(
        "SELECT count(*) FROM accounts a JOIN roles r ON r.id = a.role_id WHERE r.name = '管理员'"
    )
    assert body["items"][1]["account_count"] == expected


async def test_pages_past_the_end_are_empty_with_the_total(admin: ApiUser) -> None:
    status, body = await admin.get("/api/roles?page=99")

    assert status == 200
    assert body == {"items": [], "total": 20, "page": 99, "page_size": 20}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("nickname=x", "nickname"),
        ("status=deleted", "status"),
        ("created_from=yesterday", "created_from"),
        ("created_from=2024-02-01&created_to=2024-01-01", "created_from"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
    ],
)
async def test_bad_filters_are_422_naming_the_field(admin: ApiUser, query: str, field: str) -> None:
    status, body = await admin.get(f"/api/accounts?{query}")

    assert status == 422
    assert [detail["field"] for detail in body["error"]["details"]] == [field]


async def test_the_lists_need_credentials(client: TestClient[Any, Any]) -> None:
    for path in ("/api/accounts", "/api/roles"):
        response = await client.get(path)
        assert response.status == 401
