"""A type's list page comes from its handler module alone: a deployment that adds
tests/gadget_handler.py gets the type's list, page, nav link and OpenAPI entry, with no change in
exporter/; and the app refuses a page it could not serve."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from exporter import Column, ExportParams, ListPage, RowQuery, export_handler
from exporter.auth.tokens import issue_token
from exporter.errors import DuplicateHandler
from exporter.exports.registry import ExportHandler, HandlerRegistry, load_handlers, registry
from exporter.ops.app import create_app
from settings import Settings
from tests.conftest import SECRET, account_id, add_account
from tests.integration.test_faults import free_port
from tests.integration.test_sessions import ADMIN
from tests.processes import settings_env, start_exporter, wait_for_api
from tests.support import TERMINAL, csv_rows, wait_until

GADGETS = """
CREATE TABLE test_gadgets (
    id integer PRIMARY KEY, name text NOT NULL, state text NOT NULL, made_at timestamptz NOT NULL
);
-- Every third one sold, one made each day from 2024-01-02.
INSERT INTO test_gadgets
SELECT n, 'gadget ' || n, CASE WHEN n % 3 = 0 THEN 'sold' ELSE 'new' END,
       timestamptz '2024-01-01 09:00+08' + n * interval '1 day'
FROM generate_series(1, 30) AS n;
"""
FIELDS = ["id", "name", "state", "made_at"]
HEADINGS = {
    "zh-CN": ["编号", "名称", "状态", "制造时间"],
    "en": ["No.", "Name", "State", "Made"],
}


@pytest.fixture
async def deployment(
    settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> AsyncIterator[aiohttp.ClientSession]:
    """`exporter serve` and `exporter worker` with the gadget module added, as a deployment adds
    its own, on the test's database with the gadgets' table; a client of that server."""
    await db.execute(GADGETS)
    port = free_port()
    env = settings_env(settings, port=port, api_processes=1, handler_modules="tests.gadget_handler")
    processes = [
        start_exporter(command, {**os.environ, **env}, tmp_path / f"{command}.log")
        for command in ("serve", "worker")
    ]
    jar = aiohttp.CookieJar(unsafe=True)  # keeps the session cookie of 127.0.0.1
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            await wait_for_api(client)
            yield client
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert "test_gadget" not in registry, "only the deployment's processes load the module"


async def _json(client: aiohttp.ClientSession, method: str, path: str, **options: Any) -> Any:
    async with client.request(method, path, **options) as response:
        return response.status, await response.json()


async def test_its_list_shows_the_rows_its_export_writes_and_the_document_describes_it(
    deployment: aiohttp.ClientSession, db: asyncpg.Connection[Any]
) -> None:
    auth = {"Authorization": f"Bearer {issue_token(SECRET, await account_id(db, 'admin'))}"}
    filters = {"state": "sold", "made_from": "2024-01-10"}
    request = {"type": "test_gadget", "format": "csv", "params": filters}

    status, listed = await _json(
        deployment, "GET", "/api/test-gadgets", params={**filters, "page_size": 5}, headers=auth
    )
    created, task = await _json(deployment, "POST", "/api/export-tasks", json=request, headers=auth)
    path = f"/api/export-tasks/{task['id']}"

    async def finished() -> dict[str, Any] | None:
        _, now = await _json(deployment, "GET", path, headers=auth)
        return now if now["status"] in TERMINAL else None

    done = await wait_until(finished, what="the gadget export")
    async with deployment.get(f"{path}/download", headers=auth) as file:
        exported = csv_rows(await file.read())
    assert (status, created, done["status"]) == (200, 202, "completed")
    assert (listed["total"], listed["page"], listed["page_size"]) == (8, 1, 5)
    assert [list(item) for item in listed["items"]] == [FIELDS] * 5
    assert listed["items"][0]["made_at"] == "2024-01-10T01:00:00Z"
    assert exported[0] == HEADINGS["zh-CN"]
    assert [[str(item["id"]), item["name"], "已售"] for item in listed["items"]] == [
        row[:3] for row in exported[1:6]
    ]

    status, refused = await _json(
        deployment, "GET", "/api/test-gadgets?state=lost&colour=red", headers=auth
    )
    assert status == 422
    assert [detail["field"] for detail in refused["error"]["details"]] == ["state", "colour"]

    _, document = await _json(deployment, "GET", "/api/openapi.json")
    operation = document["paths"]["/api/test-gadgets"]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    item = document["components"]["schemas"]["TestGadgetOut"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {
        "page",
        "page_size",
        "keyword",
        "state",
        "made_from",
    }
    assert answer == {"$ref": "#/components/schemas/TestGadgetPageOut"}
    assert (list(item["properties"]), item["required"]) == (FIELDS, FIELDS)
    assert operation["summary"] == "Gadgets, filtered like the test_gadget export, paged"


def _nav(html: str) -> list[tuple[str, str]]:
    nav = re.search(r'<nav class="nav".*?</nav>', html, re.DOTALL)
    assert nav, html
    return re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav[0])


async def _page(client: aiohttp.ClientSession, path: str, language: str) -> tuple[int, str]:
    async with client.get(path, cookies={"lang": language}) as response:
        return response.status, await response.text()


async def test_its_page_and_nav_link_are_in_its_words_for_who_may_see_it(
    deployment: aiohttp.ClientSession, db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "gadgeteer", ["test_gadget:read"], password="pw-gadgeteer")
    await add_account(db, "no-gadgets", ["account:read"], password="pw-no-gadgets")

    async def sign_in(credentials: dict[str, str]) -> None:
        async with deployment.post("/api/session", json=credentials) as response:
            assert response.status == 200

    await sign_in(ADMIN)
    pages = {language: await _page(deployment, "/test-gadgets", language) for language in HEADINGS}
    admin_nav = _nav(pages["zh-CN"][1])
    await sign_in({"username": "gadgeteer", "password": "pw-gadgeteer"})
    _, own = await _page(deployment, "/tasks", "en")
    await sign_in({"username": "no-gadgets", "password": "pw-no-gadgets"})
    refused, _ = await _page(deployment, "/test-gadgets", "en")

    zh, en = pages["zh-CN"][1], pages["en"][1]
    assert (pages["zh-CN"][0], pages["en"][0]) == (200, 200)
    assert "<h1>小工具管理</h1>" in zh and "<h1>Gadgets</h1>" in en
    assert '<input name="keyword" type="search" maxlength="50">' in zh
    assert '<option value="sold">已售</option>' in zh and '<option value="sold">Sold</option>' in en
    assert '<input name="made_from" type="date">' in zh
    for language, html in (("zh-CN", zh), ("en", en)):
        headings = re.findall(r'<th scope="col" data-field="(\w+)"[^>]*>([^<]*)</th>', html)
        assert headings == list(zip(FIELDS, HEADINGS[language], strict=True))
    assert 'data-source="/api/test-gadgets"' in zh
    assert 'id="export-button" data-type="test_gadget"' in zh
    assert admin_nav == [
        ("/accounts", "账号管理"),
        ("/roles", "角色管理"),
        ("/test-gadgets", "小工具管理"),
        ("/tasks", "导入导出任务"),
        ("/ops", "运维"),  # the admin's role grants everything (*), ops:read included
    ]
    assert _nav(own) == [("/test-gadgets", "Gadgets"), ("/tasks", "Tasks")]
    assert refused == 403


def test_a_list_page_needs_each_column_to_name_its_field() -> None:
    with pytest.raises(ValueError, match="have no field"):

        @export_handler(
            "test_fieldless",
            title="t",
            params=ExportParams,
            columns=[Column("ID", "1")],
            list_page=ListPage("fieldless"),
        )
        def rows(params: ExportParams) -> RowQuery:
            return RowQuery("accounts", order_by="id")

    assert "test_fieldless" not in registry


def test_two_types_cannot_have_the_same_page() -> None:
    role = load_handlers().get("role")

    with pytest.raises(DuplicateHandler, match="/roles"):
        export_handler(
            "test_roles_again",
            title="t",
            params=role.params_model,
            columns=role.columns,
            list_page=ListPage("roles"),
        )(role.rows)

    assert "test_roles_again" not in registry


WORDS = {"name": "Things", "page": "Things", "empty": "None", "column.id": "ID"}


def _things_at(slug: str, strings: dict[str, dict[str, str]]) -> HandlerRegistry:
    handlers = HandlerRegistry()
    handlers.add(
        ExportHandler(
            "test_thing",
            "东西",
            ExportParams,
            (Column("ID", "g.n", field="id"),),
            lambda params: RowQuery("test_series g", order_by="g.n"),
            "test_thing:read",
            list_page=ListPage(slug),
            strings=strings,
        )
    )
    return handlers


@pytest.mark.parametrize(
    ("slug", "strings", "refusal"),
    [
        ("login", {"zh-CN": WORDS, "en": WORDS}, r"already serves: \['/login'\]"),
        ("things", {"zh-CN": WORDS}, r"has strings in \['zh-CN'\]"),
        (
            "things",
            {"zh-CN": WORDS, "en": {key: text for key, text in WORDS.items() if key != "empty"}},
            r"the en strings have no \['type.test_thing.empty'\]",
        ),
    ],
    ids=["address-taken", "one-language", "a-word-missing"],
)
def test_the_app_refuses_a_page_it_could_not_serve(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    slug: str,
    strings: dict[str, dict[str, str]],
    refusal: str,
) -> None:
    monkeypatch.setattr("exporter.ops.app.load_handlers", lambda modules: _things_at(slug, strings))

    with pytest.raises(ValueError, match=refusal):
        create_app(settings)
