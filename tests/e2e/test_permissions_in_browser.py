"""The pages in Chromium for roles with partial rights: only what the role allows is offered."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import expect

from exporter.auth.tokens import issue_token
from tests.conftest import SECRET, add_account, set_permissions
from tests.e2e.conftest import OpenPage, screenshot, sign_in
from tests.support import ApiUser


@pytest.mark.usefixtures("worker")
async def test_each_role_sees_only_the_lists_and_buttons_it_may_use(
    open_page: OpenPage, client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    user_id = await add_account(db, "limited", ["*"], password="limited-password")
    user = ApiUser(client, issue_token(SECRET, user_id))
    failed = await user.finished((await user.create("test_raises", "csv"))["id"])
    await set_permissions(db, "limited", "account:read")

    page = await open_page()
    await sign_in(page, "limited", "limited-password")
    nav = page.get_by_role("navigation", name="主导航")
    await expect(nav.get_by_role("link")).to_have_text(["账号管理", "导入导出任务"])
    row = page.locator(f'tr[data-task-id="{failed["id"]}"]')
    await expect(row.locator(".badge")).to_have_text("失败")
    await expect(row.get_by_role("button", name="删除")).to_be_visible()
    await expect(row.get_by_role("button", name="重试")).to_have_count(0)  # may not export it

    await nav.get_by_role("link", name="账号管理").click()
    await expect(page.locator("#page-info")).to_contain_text("共")
    filters = page.locator("#filters")
    await expect(filters.get_by_label("状态")).to_be_visible()
    await expect(filters.get_by_label("角色")).to_have_count(0)  # its options are the roles
    await expect(page.get_by_role("button", name="导出", exact=True)).to_have_count(0)
    await screenshot(page, "accounts-read-only")

    response = await page.goto("/roles")
    assert response is not None and response.status == 403
    await expect(page.locator("h1")).to_have_text("你无权查看此页面")
    await expect(page.locator("main")).to_contain_text("role:read")
    await screenshot(page, "forbidden")
    await page.get_by_role("button", name="Switch to English").click()
    await expect(page.locator("h1")).to_have_text("You may not see this page")

    await set_permissions(db, "limited", "role:read", "role:write", "export:create")
    await page.goto("/roles")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link")).to_have_text(["Roles", "Tasks"])
    await page.get_by_role("button", name="Export", exact=True).click()
    await expect(page.locator("#export-notice")).to_contain_text("Export created: all rows.")
    response = await page.goto("/accounts")
    assert response is not None and response.status == 403


async def test_an_account_without_a_role_has_only_its_tasks_page(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "nobody", None, password="nobody-password")

    page = await open_page()
    await sign_in(page, "nobody", "nobody-password")

    nav = page.get_by_role("navigation", name="主导航")
    await expect(nav.get_by_role("link")).to_have_text(["导入导出任务"])
    await expect(page.locator("#tasks-table tr.state.empty")).to_have_text(
        "还没有导出任务。你的角色没有创建导出的权限。"
    )
    for path in ("/accounts", "/roles"):
        response = await page.goto(path)
        assert response is not None and response.status == 403
