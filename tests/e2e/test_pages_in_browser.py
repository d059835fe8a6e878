"""The back office in Chromium: sign in, export, watch the task live, download, cancel, retry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Dialog, Page, expect

from exporter.web.i18n import catalog
from settings import Settings
from tests.e2e.conftest import OpenPage, screenshot, sign_in
from tests.expected import ACCOUNT_HEADER, account_rows
from tests.support import ApiUser, xlsx_rows
from tests.workers import running_worker

ACCOUNT_FILTERS_SQL = (
    "a.status = 'active' AND a.created_at >= '2023-06-01 00:00:00+08'"
    " AND (a.username ILIKE $1 OR a.nickname ILIKE $1 OR a.email ILIKE $1 OR a.phone ILIKE $1)"
)


async def tab_to(page: Page, selector: str, *, presses: int = 40) -> None:
    """Move the focus with Tab alone until it reaches ``selector``."""
    target = page.locator(selector)
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reachable with the Tab key")


async def test_an_account_export_goes_pending_running_completed_live_and_downloads(
    open_page: OpenPage, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    page = await open_page()
    await sign_in(page, "admin", "admin-password", start="/accounts")
    filters = page.locator("#filters")
    await filters.get_by_label("关键字").fill("User")
    await filters.get_by_label("状态").select_option("active")
    await filters.get_by_label("创建日期从").fill("2023-06-01")
    await filters.get_by_role("button", name="查询").click()
    expected = await account_rows(db, ACCOUNT_FILTERS_SQL, "%User%")
    await expect(page.locator("#page-info")).to_have_text(
        f"第 1 / {-(-len(expected) // 20)} 页，共 {len(expected)} 条"
    )
    await expect(page.locator("#list-table tbody tr").first.locator("td").first).to_have_text(
        str(expected[0][0])
    )

    await page.get_by_label("导出格式").select_option("xlsx")
    await page.get_by_role("button", name="导出", exact=True).click()
    notice = page.locator("#export-notice")
    await expect(notice).to_contain_text(
        "已创建导出任务：关键字：User；状态：正常；创建日期从：2023-06-01。"
    )
    await screenshot(page, "accounts")
    task = await db.fetchrow("SELECT id, type, format, params::text FROM tasks")
    assert (task["type"], task["format"]) == ("account", "xlsx")
    assert json.loads(task["params"]) == {
        "keyword": "User",
        "status": "active",
        "created_from": "2023-06-01",
    }

    await notice.get_by_role("link", name="前往“导入导出任务”查看进度并下载").click()
    await page.wait_for_url(lambda url: urlsplit(url).path == "/tasks")
    row = page.locator(f'tr[data-task-id="{task["id"]}"]')
    await expect(row.locator(".badge")).to_have_text("等待中")  # no worker is running yet
    await expect(row.locator(".col-progress")).to_have_text("排队中")
    await page.evaluate("window.stillTheSamePage = true")

    # The export's first read of roles waits for this lock, so "running" lasts until it goes.
    lock = db.transaction()
    await lock.start()
    await db.execute("LOCK TABLE roles IN ACCESS EXCLUSIVE MODE")
    try:
        async with running_worker(settings):
            await expect(row.locator(".badge")).to_have_text("进行中")
            await expect(row.locator(".col-progress")).to_have_text("正在统计行数…")
            await screenshot(page, "tasks-running")
            await lock.rollback()
            await expect(row.locator(".badge")).to_have_text("已完成")
    finally:
        if db.is_in_transaction():
            await lock.rollback()
    count = f"{len(expected):,}"
    await expect(row.locator(".col-progress")).to_have_text(f"{count} / {count} 行")
    await expect(row.locator(".col-rows")).to_have_text(count)
    await expect(row.locator(".col-size")).to_have_text(re.compile(r"^\d+(\.\d)? KB$"))
    assert await page.evaluate("window.stillTheSamePage") is True

    await tab_to(page, f'tr[data-task-id="{task["id"]}"] [data-action="download"]')
    async with page.expect_download() as download_info:
        await page.keyboard.press("Enter")
    download = await download_info.value
    assert re.fullmatch(r"账号列表_\d{8}_\d{6}_[0-9a-f]{6}\.xlsx", download.suggested_filename)
    rows = xlsx_rows(Path(await download.path()).read_bytes())
    assert rows[0] == ACCOUNT_HEADER
    assert rows[1:] == expected


@pytest.mark.usefixtures("worker")
async def test_running_failed_and_finished_exports_side_by_side_then_cancel_retry_delete(
    open_page: OpenPage, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    page = await open_page()
    await sign_in(page, "admin", "admin-password")
    await expect(page.locator("#tasks-table tr.state.empty")).to_contain_text("还没有导出任务")
    await expect(page.locator("#live-state")).to_have_text("实时更新中")

    accounts = await admin.create("account", "xlsx", status="active", keyword="张")
    finished = await admin.finished((await admin.create("role", "csv"))["id"])
    failed = await admin.finished((await admin.create("test_raises", "csv"))["id"])
    slow = await admin.create("test_slow", "csv", rows=20_000)

    rows = page.locator("#tasks-table tbody tr[data-task-id]")
    await expect(rows).to_have_count(4)
    ids = [await row.get_attribute("data-task-id") for row in await rows.all()]
    assert ids == [slow["id"], failed["id"], finished["id"], accounts["id"]]  # newest first
    accounts_row = page.locator(f'tr[data-task-id="{accounts["id"]}"]')
    await expect(accounts_row.locator(".col-filters")).to_have_text("关键字：张；状态：正常")
    await expect(accounts_row.locator(".badge")).to_have_text("已完成")
    failed_row = page.locator(f'tr[data-task-id="{failed["id"]}"]')
    await expect(failed_row.locator(".badge")).to_have_text("失败")
    assert failed["status"] == "failed" and "exploded on purpose" in failed["error"]
    await expect(failed_row.locator(".col-error")).to_have_text(
        "导出失败（内部错误），请重试或联系管理员"
    )
    finished_row = page.locator(f'tr[data-task-id="{finished["id"]}"]')
    await expect(finished_row.get_by_role("link", name="下载")).to_be_visible()
    slow_row = page.locator(f'tr[data-task-id="{slow["id"]}"]')
    await expect(slow_row.locator(".badge")).to_have_text("进行中")
    await expect(slow_row.locator(".progress-text")).to_have_text(
        re.compile(r"^[1-9][\d,]* / 20,000 行$")
    )
    await expect(slow_row.locator("progress")).to_have_attribute("max", "20000")
    await screenshot(page, "tasks-page")

    await slow_row.get_by_role("button", name="取消").click()
    await expect(slow_row.locator(".badge")).to_have_text("已取消")
    assert await db.fetchval("SELECT status FROM tasks WHERE id = $1", slow["id"]) == ("cancelled")

    await failed_row.get_by_role("button", name="重试").click()
    await expect(page.locator("#toast")).to_have_text("已重新开始导出")
    await expect(rows).to_have_count(5)
    await expect(rows.first.locator(".badge")).to_have_text("失败")

    async def accept(dialog: Dialog) -> None:
        assert dialog.message == "删除这个导出任务及其文件？"  # noqa: RUF001
        await dialog.accept()

    page.once("dialog", accept)
    await finished_row.get_by_role("button", name="删除").click()
    await expect(rows).to_have_count(4)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE id = $1", finished["id"]) == 0


async def test_a_second_user_sees_none_of_the_first_users_tasks_not_even_live(
    open_page: OpenPage, admin: ApiUser, colleague: ApiUser
) -> None:
    await admin.create("role", "csv")
    page = await open_page()
    await sign_in(page, "colleague", "colleague-password")
    await expect(page.locator("#tasks-table tr.state.empty")).to_be_visible()
    await expect(page.locator("#live-state")).to_have_text("实时更新中")
    await screenshot(page, "tasks-empty")

    await admin.create("account", "xlsx")
    own = await colleague.create("role", "xlsx")

    rows = page.locator("#tasks-table tbody tr[data-task-id]")
    await expect(rows).to_have_count(1)
    await expect(rows).to_have_attribute("data-task-id", own["id"])


@pytest.mark.usefixtures("worker")
async def test_in_english_in_new_york_on_a_phone_then_signing_out(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    page = await open_page(locale="en-US", timezone_id="America/New_York")
    await page.goto("/login")
    await screenshot(page, "login")
    await sign_in(page, "admin", "admin-password", start="/roles")
    await page.get_by_role("button", name="Switch to English").click()
    await expect(page.locator("h1")).to_have_text("Roles")

    keyword = page.get_by_label("Keyword")
    await keyword.fill("管理员")
    await keyword.press("Enter")
    await expect(page.locator("#list-table tbody tr")).to_have_count(2)
    await page.get_by_label("Format").select_option("csv")
    await page.get_by_role("button", name="Export", exact=True).click()
    notice = page.locator("#export-notice")
    await expect(notice).to_contain_text("Export created: Keyword: 管理员.")
    await screenshot(page, "roles")

    await notice.get_by_role("link").click()
    row = page.locator("#tasks-table tbody tr[data-task-id]")
    await expect(row.locator(".badge")).to_have_text("Completed")
    created_at = await db.fetchval("SELECT created_at FROM tasks")
    in_new_york = created_at.astimezone(ZoneInfo("America/New_York"))
    await expect(row.locator(".col-created")).to_have_text(f"{in_new_york:%Y-%m-%d %H:%M:%S}")
    await expect(row.locator(".col-filters")).to_have_text("Keyword: 管理员")
    await expect(row.locator(".col-progress")).to_have_text("2 / 2 rows")

    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#tasks-table thead")).to_be_hidden()
    await screenshot(page, "tasks-narrow")

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    await page.goto("/tasks")
    await page.wait_for_url(re.compile(r"/login\?next="))


@pytest.mark.usefixtures("worker")
async def test_without_the_event_stream_the_page_polls_and_still_follows_exports(
    open_page: OpenPage, admin: ApiUser
) -> None:
    page = await open_page()
    await page.route("**/api/export-tasks/stream", lambda route: route.abort())
    await sign_in(page, "admin", "admin-password")
    await expect(page.locator("#live-state")).to_have_text("实时连接中断，每 3 秒刷新")

    task = await admin.create("role", "xlsx")

    row = page.locator(f'tr[data-task-id="{task["id"]}"]')
    await expect(row.locator(".badge")).to_have_text("已完成")


async def test_a_page_open_when_its_account_is_disabled_goes_to_sign_in_at_its_next_call(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    page = await open_page()
    await sign_in(page, "admin", "admin-password", start="/roles")

    await db.execute("UPDATE accounts SET status = 'disabled' WHERE username = 'admin'")
    await page.get_by_role("button", name="导出", exact=True).click()

    await page.wait_for_url(re.compile(r"/login\?next=%2Froles$"))
    await page.locator("#username").fill("admin")
    await page.locator("#password").fill("admin-password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#login-error")).to_have_text(catalog("zh-CN")["login.forbidden"])
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
