"""The operators' page in Chromium: live workers, every account's tasks with their errors in the
reader's language, cancel of another account's task for ops:write, and refusals for the rest."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Page, expect

from tests.conftest import add_account
from tests.e2e.conftest import OpenPage, screenshot, sign_in
from tests.support import ApiUser, wait_until

LANGUAGES = ["zh-CN", "en"]
WORDS = {
    "zh-CN": {
        "nav": "主导航",
        "link": "运维",
        "alive": "在线",
        "stale": "心跳中断",
        "failed": "导出失败（内部错误），请重试或联系管理员",
        "running": "进行中",
    },
    "en": {
        "nav": "Main",
        "link": "Operations",
        "alive": "Alive",
        "stale": "No heartbeat",
        "failed": "The export failed (internal error); retry or ask an administrator",
        "running": "Running",
    },
}
DEAD_WORKER = """
INSERT INTO workers (id, host, pid, queue_name, heartbeat_interval_s, started_at, heartbeat_at)
VALUES ('dead-host:7:abcdef', 'dead-host', 7, 'q', 0.5, now() - interval '1 hour',
        now() - interval '1 minute')
"""


async def open_ops(open_page: OpenPage, username: str, language: str = "zh-CN") -> Page:
    page = await open_page()
    await sign_in(page, username, f"{username}-password", start="/ops")
    if language == "en":
        await page.get_by_role("button", name="Switch to English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
    return page


async def operator(db: asyncpg.Connection[Any], username: str, *permissions: str) -> None:
    await add_account(db, username, list(permissions), password=f"{username}-password")


async def post_from_page(page: Page, path: str) -> int:
    """POST as the page's scripts would: its session cookie and its CSRF token."""
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = await page.request.post(path, headers={"X-CSRF-Token": token or ""})
    return response.status


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_operator_sees_live_workers_and_a_failed_tasks_localized_error(
    language: str,
    open_page: OpenPage,
    db: asyncpg.Connection[Any],
    admin: ApiUser,
    other_user: ApiUser,
) -> None:
    words = WORDS[language]
    await operator(db, "watcher", "ops:read")
    failed = await other_user.finished((await other_user.create("test_raises", "csv"))["id"])
    assert failed["status"] == "failed" and failed["error_code"]
    await db.execute(DEAD_WORKER)

    page = await open_ops(open_page, "watcher", language)
    nav = page.get_by_role("navigation", name=words["nav"])
    await expect(nav.get_by_role("link", name=words["link"])).to_have_attribute(
        "aria-current", "page"
    )
    alive = page.locator('#workers-table tr[data-stale="false"]')
    await expect(alive).to_have_count(1)
    await expect(alive.locator(".badge")).to_have_text(words["alive"])
    dead = page.locator('#workers-table tr[data-worker-id="dead-host:7:abcdef"]')
    await expect(dead.locator(".badge")).to_have_text(words["stale"])
    row = page.locator(f'#failed-table tr[data-task-id="{failed["id"]}"]')
    await expect(row.locator(".col-error")).to_have_text(words["failed"])
    await expect(row.locator(".col-owner")).to_have_text("other")
    # ops:read alone: nothing to press, and the API refuses what a button would send.
    await expect(page.locator("main button")).to_have_count(0)
    await expect(page.locator("#failed-table th")).to_have_count(4)  # no Actions column
    for action in ("retry", "cancel"):
        assert await post_from_page(page, f"/api/ops/tasks/{failed['id']}/{action}") == 403

    # Live: a task started after the page opened shows up running, with its worker.
    slow = await admin.create("test_slow", "csv", rows=20_000)
    running = page.locator(f'#slowest-table tr[data-task-id="{slow["id"]}"]')
    await expect(running.locator(".badge")).to_have_text(words["running"])
    await expect(alive.locator(".col-current code")).to_have_text(slow["id"][:8])
    await screenshot(page, f"ops-{language}")
    response = await admin.client.post(
        f"/api/export-tasks/{slow['id']}/cancel", headers=admin.headers
    )
    assert response.status == 200
    await admin.finished(slow["id"])


async def test_an_account_without_ops_read_gets_the_forbidden_page_and_no_link(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    await operator(db, "clerk", "account:read")
    page = await open_page()
    await sign_in(page, "clerk", "clerk-password", start="/tasks")
    nav = page.get_by_role("navigation", name="主导航")
    await expect(nav.get_by_role("link")).to_have_text(["账号管理", "导入导出任务"])

    response = await page.goto("/ops")
    assert response is not None and response.status == 403
    await expect(page.locator("h1")).to_have_text("你无权查看此页面")
    await expect(page.locator("main")).to_contain_text("ops:read")
    answer = await page.request.get("/api/ops/summary")
    assert answer.status == 403
    assert (await answer.json())["error"]["params"] == {"permission": "ops:read"}


@pytest.mark.usefixtures("worker")
async def test_ops_write_cancels_another_accounts_running_task_from_the_page(
    open_page: OpenPage, db: asyncpg.Connection[Any], admin: ApiUser
) -> None:
    await operator(db, "keeper", "ops:read", "ops:write")
    slow = await admin.create("test_slow", "csv", rows=50_000)

    async def under_way() -> bool:
        return (await admin.task(slow["id"]))["rows_done"] > 0

    await wait_until(under_way, what="the slow export to write rows")
    page = await open_ops(open_page, "keeper")
    row = page.locator(f'#slowest-table tr[data-task-id="{slow["id"]}"]')
    await expect(row.locator(".col-owner")).to_have_text("admin")
    await row.get_by_role("button", name="取消").click()
    await expect(page.locator("#toast")).to_have_text("已请求取消 admin 的任务")
    assert (await admin.finished(slow["id"]))["status"] == "cancelled"
    await expect(row.locator(".badge")).to_have_text("已取消")
    await expect(row.get_by_role("button", name="重试")).to_be_visible()
    await screenshot(page, "ops-cancelled")
    assert re.fullmatch(r"\d+ 秒", await row.locator(".col-duration").inner_text())
