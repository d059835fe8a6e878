"""The tasks page and the list pages in Chromium, as a new user meets them in either language:
downloads that fail, loads that fail, filters, progress, dates, the time zone and the layout."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Locator, Page, expect

from settings import Settings
from tests.conftest import account_id
from tests.e2e.conftest import OpenPage, screenshot, sign_in
from tests.support import ApiUser, wait_until

# A limit the slow test export passes; its error message is the longest a task shows.
MAX_ROWS = 10_000

LANGUAGES = ["zh-CN", "en"]

# What the page says, by language.
TEXT = {
    "zh-CN": {
        "download": "下载",
        "file_gone_toast": "文件已过期或已被清理，无法下载",
        "expired": "已过期",
        "not_ready_toast": "这个导出任务现在没有可下载的文件",
        "not_found_toast": "这个导出任务已不存在",
        "failed": "失败",
        "filters": "关键字：张；状态：锁定；角色：{role}；"
        "创建日期从：2023-01-01 00:00:00；创建日期至：2023-06-30",
        "finishing": "400,000 行已全部写入，正在生成文件…",
        "no_rows": "没有符合条件的行",
        "finishing_no_rows": "没有符合条件的行，正在生成文件…",
        "stopped_at": r"^停在 [1-9][\d,]* / 8,000 行$",
        "fix_filters": "请先修改标出的筛选条件",
        "retry": "重试",
    },
    "en": {
        "download": "Download",
        "file_gone_toast": "The file has expired or was removed and can no longer be downloaded",
        "expired": "Expired",
        "not_ready_toast": "This export has no file to download right now",
        "not_found_toast": "This export no longer exists",
        "failed": "Failed",
        "filters": "Keyword: 张; Status: Locked; Role: {role}; "
        "Created from: 2023-01-01 00:00:00; Created to: 2023-06-30",
        "finishing": "All 400,000 rows written; finishing the file…",
        "no_rows": "No matching rows",
        "finishing_no_rows": "No matching rows; finishing the file…",
        "stopped_at": r"^Stopped at [1-9][\d,]* / 8,000 rows$",
        "fix_filters": "Correct the marked filters first",
        "retry": "Retry",
    },
}

# Each word of Latin letters, digits and underscores (a date, a time, a number with its dashes,
# colons and dots) in the element's text that the browser split over two lines: none may be.
BROKEN_WORDS_JS = r"""
(element) => {
  const broken = [];
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/\w+(?:[-:.,]\w+)*/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
      if (lines.size > 1) {
        broken.push(match[0]);
      }
    }
  }
  return broken;
}
"""

# Changes the open page is not told about (as if it had missed them): the announcing triggers
# are off while they are made.
SILENTLY = """
ALTER TABLE tasks DISABLE TRIGGER tasks_notify_update;
ALTER TABLE tasks DISABLE TRIGGER tasks_notify_insert_delete;
{change};
ALTER TABLE tasks ENABLE TRIGGER tasks_notify_update;
ALTER TABLE tasks ENABLE TRIGGER tasks_notify_insert_delete;
"""


# A task another worker is finishing: its last heartbeat said all $2 rows are written.
FINISHING_TASK = """
INSERT INTO tasks (id, kind, type, format, params, created_by_id, status, worker_id,
                   started_at, attempts, lease_expires_at, rows_done, rows_total)
VALUES (gen_random_uuid(), 'export', 'test_slow', 'xlsx', jsonb_build_object('rows', $2::int), $1,
        'running', 'elsewhere', now(), 1, now() + interval '1 hour', $2, $2)
RETURNING id
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_rows": MAX_ROWS})


async def open_tasks(
    open_page: OpenPage, language: str, start: str = "/tasks", **options: Any
) -> Page:
    """A signed-in admin on ``start``, in ``language``."""
    page = await open_page(**options)
    await sign_in(page, "admin", "admin-password", start=start)
    if language == "en":
        await page.get_by_role("button", name="Switch to English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
    return page


def task_row(page: Page, task: dict[str, Any]) -> Locator:
    return page.locator(f'tr[data-task-id="{task["id"]}"]')


async def broken_words(cell: Locator) -> list[str]:
    words: list[str] = await cell.evaluate(BROKEN_WORDS_JS)
    return words


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_failed_download_stays_on_the_page_with_a_message_and_updates_the_row(
    language: str,
    open_page: OpenPage,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
) -> None:
    text = TEXT[language]
    tasks = [await admin.finished((await admin.create("role", "csv"))["id"]) for _ in range(3)]
    assert [task["status"] for task in tasks] == ["completed"] * 3
    gone, changed, deleted = tasks
    page = await open_tasks(open_page, language)
    for task in tasks:
        await expect(
            task_row(page, task).get_by_role("link", name=text["download"])
        ).to_be_visible()

    file_key = await db.fetchval("SELECT file_key FROM tasks WHERE id = $1", gone["id"])
    (settings.storage_dir / file_key).unlink()
    await db.execute(
        SILENTLY.format(change=f"UPDATE tasks SET status = 'failed' WHERE id = '{changed['id']}'")
    )
    await db.execute(SILENTLY.format(change=f"DELETE FROM tasks WHERE id = '{deleted['id']}'"))
    await page.evaluate("window.stillTheSamePage = true")

    row = task_row(page, gone)
    await row.get_by_role("link", name=text["download"]).click()
    await expect(page.locator("#toast")).to_have_text(text["file_gone_toast"])
    # The server marked it expired: the row says so, and offers to export it again.
    await expect(row.locator(".badge")).to_have_text(text["expired"])
    await expect(row.get_by_role("link", name=text["download"])).to_have_count(0)
    await expect(row.get_by_role("button", name=text["retry"])).to_be_visible()

    row = task_row(page, changed)
    await row.get_by_role("link", name=text["download"]).click()
    await expect(page.locator("#toast")).to_have_text(text["not_ready_toast"])
    await expect(row.locator(".badge")).to_have_text(text["failed"])

    row = task_row(page, deleted)
    await row.get_by_role("link", name=text["download"]).click()
    await expect(page.locator("#toast")).to_have_text(text["not_found_toast"])
    await expect(row).to_have_count(0)

    assert urlsplit(page.url).path == "/tasks"
    assert await page.evaluate("window.stillTheSamePage") is True
    await screenshot(page, f"tasks-download-failed-{language}")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_refused_load_clears_the_pager_and_offers_retry_only_after_a_network_failure(
    language: str, open_page: OpenPage
) -> None:
    text = TEXT[language]
    page = await open_tasks(open_page, language, start="/accounts")
    info = page.locator("#page-info")
    await expect(info).not_to_be_empty()
    state = page.locator("#list-table tr.state.error")

    filters = page.locator("#filters")
    await filters.locator('[name="created_from"]').fill("2023-06-30")
    await filters.locator('[name="created_to"]').fill("2023-01-01")
    await filters.locator('[name="created_to"]').press("Enter")
    await expect(state).to_contain_text(text["fix_filters"])
    await expect(state.get_by_role("button")).to_have_count(0)  # it would be refused again
    await expect(info).to_be_empty()
    await expect(page.locator("#page-prev")).to_be_disabled()
    await expect(page.locator("#page-next")).to_be_disabled()
    await screenshot(page, f"accounts-refused-{language}", full_page=False)

    await page.route("**/api/accounts?*", lambda route: route.abort())
    await filters.get_by_role("button", name=re.compile("^(重置|Reset)$")).click()
    retry = state.get_by_role("button", name=text["retry"])
    await expect(retry).to_be_visible()
    await expect(info).to_be_empty()
    await page.unroute("**/api/accounts?*")
    await retry.click()
    await expect(state).to_have_count(0)
    await expect(info).not_to_be_empty()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_filters_read_in_the_forms_order_and_times_as_dates_in_a_readable_zone(
    language: str, open_page: OpenPage, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    role_id, role_name = await db.fetchrow("SELECT id, name FROM roles ORDER BY id LIMIT 1")
    task = await admin.create(
        "account",
        "xlsx",
        keyword="张",
        status="locked",
        role_id=role_id,
        created_from="2023-01-01T00:00:00+08:00",
        created_to="2023-06-30",
    )
    page = await open_tasks(open_page, language)
    row = task_row(page, task)
    await expect(row.locator(".col-filters")).to_have_text(
        TEXT[language]["filters"].format(role=role_name)
    )
    created_at = await db.fetchval("SELECT created_at FROM tasks")
    await expect(row.locator(".col-created")).to_have_text(
        f"{created_at.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M:%S}"
    )


@pytest.mark.parametrize(
    ("language", "zone", "intro"),
    [
        (
            "zh-CN",
            "Asia/Shanghai",
            "你创建的导出和导入任务，各自最新的在前；状态和进度会自动更新。"
            "时间按中国标准时间（UTC+08:00）显示。",
        ),
        (
            "en",
            "America/New_York",
            "Your exports and imports, each newest first; status and progress update by"
            " themselves."
            " Times are in Eastern Standard Time (UTC-05:00).",
        ),
    ],
)
async def test_the_intro_names_the_time_zone_as_people_do(
    language: str, zone: str, intro: str, open_page: OpenPage
) -> None:
    page = await open_tasks(open_page, language, timezone_id=zone)
    await expect(page.locator("#tasks-intro")).to_have_text(intro, use_inner_text=True)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("language", LANGUAGES)
async def test_progress_shows_finishing_the_file_no_rows_and_how_far_a_cancelled_export_got(
    language: str,
    open_page: OpenPage,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
) -> None:
    text = TEXT[language]
    owner = await account_id(db, "admin")
    finishing = {"id": str(await db.fetchval(FINISHING_TASK, owner, 400_000))}
    finishing_empty = {"id": str(await db.fetchval(FINISHING_TASK, owner, 0))}
    empty = await admin.finished(
        (await admin.create("account", "csv", keyword="no account has this"))["id"]
    )
    assert (empty["status"], empty["row_count"]) == ("completed", 0)
    cancelled = await admin.create("test_slow", "csv", rows=8_000)

    async def under_way() -> bool:
        return (await admin.task(cancelled["id"]))["rows_done"] > 0

    await wait_until(under_way, what="the slow export to write rows")
    response = await admin.client.post(
        f"/api/export-tasks/{cancelled['id']}/cancel", headers=admin.headers
    )
    assert response.status == 200
    cancelled = await admin.finished(cancelled["id"])
    assert cancelled["status"] == "cancelled" and cancelled["rows_done"] > 0

    page = await open_tasks(open_page, language)
    row = task_row(page, finishing)
    await expect(row.locator(".progress-text")).to_have_text(text["finishing"])
    await expect(row.locator("progress")).to_have_js_property("position", -1)  # indeterminate
    row = task_row(page, finishing_empty)
    await expect(row.locator(".progress-text")).to_have_text(text["finishing_no_rows"])
    row = task_row(page, empty)
    await expect(row.locator(".progress-text")).to_have_text(text["no_rows"])
    await expect(row.locator("progress")).to_have_js_property("position", 0)
    row = task_row(page, cancelled)
    await expect(row.locator(".progress-text")).to_have_text(re.compile(text["stopped_at"]))
    await expect(row.locator("progress")).to_have_js_property("value", cancelled["rows_done"])
    await screenshot(page, f"tasks-progress-{language}")


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_tasks_table_keeps_words_whole_and_dates_year_first(
    language: str,
    open_page: OpenPage,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
) -> None:
    role_id = await db.fetchval("SELECT min(id) FROM roles")
    filtered = await admin.finished(
        (
            await admin.create(
                "account",
                "xlsx",
                keyword="User",
                status="active",
                role_id=role_id,
                created_from="2023-01-01",
                created_to="2023-06-30",
            )
        )["id"]
    )
    too_large = await admin.finished(
        (await admin.create("test_slow", "csv", rows=MAX_ROWS * 2))["id"]
    )
    assert too_large["status"] == "failed" and too_large["error"]

    page = await open_tasks(open_page, language, viewport={"width": 1280, "height": 800})
    for task, column in ((filtered, ".col-filters"), (too_large, ".col-error")):
        cell = task_row(page, task).locator(column)
        await expect(cell).not_to_be_empty()
        assert await broken_words(cell) == []
    wrap = page.locator("#exports .table-wrap")
    assert await wrap.evaluate("wrap => wrap.scrollWidth <= wrap.clientWidth"), (
        "it scrolls sideways"
    )
    await expect(task_row(page, filtered).locator(".col-created")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
    )
    await screenshot(page, f"tasks-wide-{language}")

    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#tasks-table thead")).to_be_hidden()
    assert await broken_words(task_row(page, too_large).locator(".col-error")) == []
    await screenshot(page, f"tasks-phone-{language}")


@pytest.mark.usefixtures("worker")
async def test_on_a_phone_the_status_badge_keeps_its_own_width(
    open_page: OpenPage, admin: ApiUser
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    page = await open_tasks(open_page, "zh-CN", viewport={"width": 390, "height": 844})
    status = task_row(page, task).locator(".col-status")
    await expect(status.locator(".badge")).to_have_text("已完成")
    badge_box = await status.locator(".badge").bounding_box()
    cell_box = await status.bounding_box()
    assert badge_box is not None and cell_box is not None
    assert badge_box["width"] < cell_box["width"] / 3  # not a second progress bar


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_list_page_shows_times_year_first_on_a_wide_screen_and_a_phone(
    language: str, open_page: OpenPage
) -> None:
    page = await open_tasks(
        open_page, language, start="/accounts", viewport={"width": 1280, "height": 800}
    )
    created = page.locator("#list-table tbody tr").first.locator("td.kind-datetime").first
    await expect(created).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    await screenshot(page, f"accounts-wide-{language}")
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#list-table thead")).to_be_hidden()
    await screenshot(page, f"accounts-phone-{language}", full_page=False)
