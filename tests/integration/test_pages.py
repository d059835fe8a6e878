"""The HTML pages over HTTP: who gets them, in which language, with which protections."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from exporter.exports.registry import load_handlers
from exporter.web.i18n import LANGUAGES, catalog, page_catalogs
from tests.integration.test_sessions import ADMIN, sign_in

PAGES = ("/accounts", "/roles", "/tasks", "/ops")


@pytest.mark.parametrize("path", [*PAGES, "/tasks?page=2"])
async def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(
    client: TestClient[Any, Any], path: str
) -> None:
    response = await client.get(path, allow_redirects=False)

    assert response.status == 302
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", path)
    login = await client.get(response.headers["Location"])
    assert f'data-next="{path}"' in await login.text()


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/tasks", "/\\evil.example", "tasks"]
)
async def test_sign_in_never_sends_the_browser_off_the_site(
    client: TestClient[Any, Any], target: str
) -> None:
    response = await client.get("/login", params={"next": target})

    assert 'data-next="/tasks"' in await response.text()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("path", PAGES)
async def test_every_page_renders_in_each_language_with_the_sessions_csrf_value(
    client: TestClient[Any, Any], path: str, language: str
) -> None:
    csrf_token = await sign_in(client, ADMIN)

    response = await client.get(path, cookies={"lang": language})

    assert response.status == 200
    html = await response.text()
    assert f'<html lang="{language}">' in html
    assert f'<meta name="csrf-token" content="{csrf_token}">' in html
    assert catalog(language)["nav.tasks"] in html
    embedded = re.search(r'<script type="application/json" id="messages">(.*?)</script>', html)
    assert embedded and json.loads(embedded[1]) == page_catalogs(load_handlers())[language]


async def test_pages_default_to_simplified_chinese(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/login", cookies={"lang": "fr"})).text()

    assert '<html lang="zh-CN">' in html
    assert "登录导出中心" in html


async def test_pages_load_nothing_from_elsewhere_and_run_no_inline_script(
    client: TestClient[Any, Any],
) -> None:
    await sign_in(client, ADMIN)

    response = await client.get("/tasks")

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    html = await response.text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith(("/", "#")) and not s.startswith("//") for s in sources)
    for script in re.findall(r"<script([^>]*)>", html):
        assert "src=" in script or 'type="application/json"' in script


async def test_static_files_are_served_from_the_package(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/login")).text()
    script = re.search(r'src="(/static/app\.js\?v=[^"]+)"', html)

    assert script
    response = await client.get(script[1])
    assert response.status == 200
    assert "window.Exporter" in await response.text()


def test_both_languages_have_the_same_messages() -> None:
    catalogs = page_catalogs(load_handlers())
    chinese, english = (catalogs[language] for language in LANGUAGES)

    assert chinese.keys() == english.keys()
    assert all(value.strip() for value in [*chinese.values(), *english.values()])


async def test_the_home_page_is_the_tasks_page(client: TestClient[Any, Any]) -> None:
    response = await client.get("/", allow_redirects=False)

    assert (response.status, response.headers["Location"]) == (302, "/tasks")


@pytest.mark.parametrize(
    ("language", "heading"), [("zh-CN", "没有这个页面"), ("en", "There is no such page")]
)
async def test_an_address_that_leads_nowhere_is_a_page_in_the_readers_language(
    client: TestClient[Any, Any], language: str, heading: str
) -> None:
    page = await client.get("/no-such-page", cookies={"lang": language})
    api = await client.get("/api/no-such-thing")

    assert page.status == 404
    assert page.content_type == "text/html"
    assert heading in await page.text()
    assert api.status == 404
    assert (await api.json())["error"]["code"] == "not_found"


async def test_a_page_address_typed_with_a_trailing_slash_leads_to_the_page(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/login/", allow_redirects=False)

    assert response.status in (301, 308)
    assert response.headers["Location"] == "/login"
