"""A type's list page comes from its handler module alone: tests/gadget_handler.py declares a
third type, and its list, page, link and OpenAPI entry appear with no change in exporter/."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter import Column, ExportParams, ListPage, RowQuery, export_handler
from exporter.errors import DuplicateHandler
from exporter.exports.registry import ExportHandler, HandlerRegistry, registry
from exporter.ops.app import create_app
from exporter.web.i18n import LANGUAGES
from settings import Settings
from tests.conftest import add_account
from tests.gadget_handler import STRINGS, GadgetParams, gadget_rows
from tests.support import ApiUser, csv_rows
from tests.test_sessions import ADMIN, sign_in

FIELDS = ["id", "name", "state", "made_at"]


@pytest.mark.usefixtures("worker")
async def test_its_list_shows_the_rows_its_export_writes(admin: ApiUser) -> None:
    status, body = await admin.get("/api/test-gadgets?state=sold&made_from=2024-01-10&page_size=5")
    exported = csv_rows(
        await admin.export("test_gadget", "csv", state="sold", made_from="2024-01-10")
    )

    assert status == 200
    assert (body["total"], body["page"], body["page_size"]) == (8, 1, 5)
    assert [list(item) for item in body["items"]] == [FIELDS] * 5
    assert exported[0] == ["编号", "名称", "状态", "制造时间"]
    assert [[str(item["id"]), item["name"], "已售"] for item in body["items"]] == [
        row[:3] for row in exported[1:6]
    ]
    assert body["items"][0]["made_at"] == "2024-01-10T01:00:00Z"


async def test_its_filters_are_refused_as_its_export_refuses_them(admin: ApiUser) -> None:
    filters = {"state": "lost", "colour": "red"}
    listed, body = await admin.get("/api/test-gadgets?state=lost&colour=red")
    created, refusal = await admin.post_task(
        {"type": "test_gadget", "format": "csv", "params": filters}
    )

    assert (listed, created) == (422, 422)
    assert [detail["field"] for detail in body["error"]["details"]] == ["state", "colour"]
    assert [detail["field"] for detail in refusal["error"]["details"]] == [
        "params.state",
        "params.colour",
    ]


async def test_its_list_needs_its_permission(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "no-gadgets", ["account:read"], password="pw-no-gadgets")
    await sign_in(client, {"username": "no-gadgets", "password": "pw-no-gadgets"})

    listed = await client.get("/api/test-gadgets")
    page = await client.get("/test-gadgets")

    assert listed.status == 403
    assert (await listed.json())["error"]["params"] == {"permission": "test_gadget:read"}
    assert page.status == 403


@pytest.mark.parametrize("language", LANGUAGES)
async def test_its_page_has_its_filters_and_columns_in_its_words(
    client: TestClient[Any, Any], language: str
) -> None:
    words = STRINGS[language]
    await sign_in(client, ADMIN)

    response = await client.get("/test-gadgets", cookies={"lang": language})

    assert response.status == 200
    html = await response.text()
    assert f"<h1>{words['page']}</h1>" in html
    assert '<input name="keyword" type="search" maxlength="50">' in html
    assert f'<option value="sold">{words["value.state.sold"]}</option>' in html
    assert '<input name="made_from" type="date">' in html
    headings = re.findall(r'<th scope="col" data-field="(\w+)"[^>]*>([^<]*)</th>', html)
    assert headings == [(field, words[f"column.{field}"]) for field in FIELDS]
    assert 'data-source="/api/test-gadgets"' in html
    assert 'id="export-button" data-type="test_gadget"' in html


async def test_the_nav_links_its_page_for_who_may_see_it(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "gadgeteer", ["test_gadget:read"], password="pw-gadgeteer")

    def links(html: str) -> list[tuple[str, str]]:
        nav = re.search(r'<nav class="nav".*?</nav>', html, re.DOTALL)
        assert nav
        return re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav[0])

    await sign_in(client, ADMIN)
    admin_links = links(await (await client.get("/tasks")).text())
    await sign_in(client, {"username": "gadgeteer", "password": "pw-gadgeteer"})
    own_links = links(await (await client.get("/test-gadgets")).text())

    assert admin_links == [
        ("/accounts", "账号管理"),
        ("/roles", "角色管理"),
        ("/test-gadgets", "小工具管理"),
        ("/tasks", "导出任务"),
    ]
    assert own_links == [("/test-gadgets", "小工具管理"), ("/tasks", "导出任务")]


async def test_the_openapi_document_describes_its_list(client: TestClient[Any, Any]) -> None:
    document = await (await client.get("/api/openapi.json")).json()

    operation = document["paths"]["/api/test-gadgets"]["get"]
    parameters = {parameter["name"] for parameter in operation["parameters"]}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    item = document["components"]["schemas"]["TestGadgetOut"]
    assert parameters == {"page", "page_size", "keyword", "state", "made_from"}
    assert answer == {"$ref": "#/components/schemas/TestGadgetPageOut"}
    assert (list(item["properties"]), item["required"]) == (FIELDS, FIELDS)
    assert item["properties"]["made_at"] == {
        "format": "date-time",
        "title": "Made At",
        "type": "string",
    }
    assert operation["summary"] == "Gadgets, filtered like the test_gadget export, paged"


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
            return RowQuery("test_gadgets", order_by="id")

    assert "test_fieldless" not in registry


def test_two_types_cannot_have_the_same_page() -> None:
    with pytest.raises(DuplicateHandler, match="/test-gadgets"):
        export_handler(
            "test_gadget_again",
            title="t",
            params=GadgetParams,
            columns=registry.get("test_gadget").columns,
            list_page=ListPage("test-gadgets"),
        )(gadget_rows)

    assert "test_gadget_again" not in registry


def _gadgets_at(slug: str, strings: dict[str, dict[str, str]]) -> HandlerRegistry:
    handlers = HandlerRegistry()
    gadget = registry.get("test_gadget")
    handlers.add(
        ExportHandler(
            gadget.name,
            gadget.title,
            GadgetParams,
            gadget.columns,
            gadget_rows,
            gadget.permission,
            list_page=ListPage(slug),
            strings=strings,
        )
    )
    return handlers


@pytest.mark.parametrize(
    ("slug", "strings", "refusal"),
    [
        ("login", STRINGS, "already serves: \\['/login'\\]"),
        ("gadgets", {"zh-CN": STRINGS["zh-CN"]}, "has strings in \\['zh-CN'\\]"),
        (
            "gadgets",
            {
                language: {key: text for key, text in words.items() if key != "value.state.sold"}
                for language, words in STRINGS.items()
            },
            "strings have no \\['type.test_gadget.value.state.sold'\\]",
        ),
    ],
    ids=["address-taken", "one-language", "a-string-missing"],
)
def test_the_app_refuses_a_page_it_could_not_serve(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    slug: str,
    strings: dict[str, dict[str, str]],
    refusal: str,
) -> None:
    monkeypatch.setattr(
        "exporter.ops.app.load_handlers", lambda modules: _gadgets_at(slug, strings)
    )

    with pytest.raises(ValueError, match=refusal):
        create_app(settings)
