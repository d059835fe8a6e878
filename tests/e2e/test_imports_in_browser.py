"""Imports in Chromium: the Import dialog of a list page uploads real files, and the tasks page
shows each import live beside the exports, with its counts and errors, in either language."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest
import xlsxwriter
from playwright.async_api import Dialog, Locator, Page, expect

from settings import Settings
from tests.conftest import account_id, add_account, set_permissions
from tests.e2e.conftest import OpenPage, screenshot, sign_in

LANGUAGES = ["zh-CN", "en"]

# What the page says, by language.
TEXT = {
    "zh-CN": {
        "import": "导入",
        "upload": "上传",
        "apply": "校验并导入：检查每一行，然后写入数据",
        "skip": "跳过有错误的行，导入其余的行",
        "go_to_tasks": "前往“导入导出任务”查看进度和结果",
        "created": "已上传“{file}”，正在后台导入。",
        "checked": "已上传“{file}”，正在后台校验（不会修改数据）。",
        "applied": ["新增 1", "更新 1", "未变 1", "有错误 1"],
        "validated": ["可新增 1", "可更新 0", "未变 0", "有错误 1"],
        "completed": "已完成",
        "bad_email": "第 5 行 “邮箱”的格式不正确",
        "bad_role": "工作表“账号”第 3 行 “角色”中的“没有这个角色”不存在",
        "garbage": "无法导入：这个文件不是 csv、xlsx 或 xlsb 表格（按文件内容判断，与文件名无关）",
        "no_file": "请先选择要上传的文件",
        "xlsx_template": "Excel 模板（.xlsx）",
        "header": ["用户名", "昵称", "邮箱", "状态", "角色"],
        "active": "正常",
        "rejected_task": "5 行有错误，未导入任何数据；下载错误报告查看原因",
        "row_errors": [
            "第 2 行 “用户名”不能为空",
            "工作表“账号”第 3 行 “状态”只能是：正常、禁用、锁定",
            "工作表“账号”第 4 行 “用户名”为“li”的行在工作表“旧账号”第 2 行已经出现过",
        ],
        "more_errors": "共 5 行有错误，下载错误报告查看全部",
        "report": "错误报告",
        "delete": "删除",
        "confirm_delete": "删除这个导入任务、上传的文件和错误报告？",  # noqa: RUF001
        "deleted": "已删除导入任务",
    },
    "en": {
        "import": "Import",
        "upload": "Upload",
        "apply": "Check and import: check every row, then write the data",
        "skip": "Skip the rows with errors and import the rest",
        "go_to_tasks": "Open Tasks to follow its progress and result",
        "created": "“{file}” is uploaded and being imported in the background.",
        "checked": "“{file}” is uploaded and being checked in the background (nothing is changed).",
        "applied": ["Created 1", "Updated 1", "Unchanged 1", "With errors 1"],
        "validated": ["To create 1", "To update 0", "Unchanged 0", "With errors 1"],
        "completed": "Completed",
        "bad_email": "Row 5 “Email” is not in a valid format",
        "bad_role": "Sheet “账号”, row 3 “Role”: there is no “没有这个角色”",
        "garbage": "Could not import: This file is not a csv, xlsx or xlsb workbook"
        " (judged from its content, not its name)",
        "no_file": "Choose a file to upload first",
        "xlsx_template": "Excel template (.xlsx)",
        "header": ["Username", "Nickname", "Email", "Status", "Role"],
        "active": "Active",
        "rejected_task": "5 rows rejected; nothing was imported."
        " Download the error report to see why",
        "row_errors": [
            "Row 2 “Username” is required",
            "Sheet “账号”, row 3 “Status” must be one of: Active, Disabled, Locked",
            "Sheet “账号”, row 4 “Username” “li” already appears in sheet “旧账号”, row 2",
        ],
        "more_errors": "5 rows have errors in all; download the error report to see them all",
        "report": "Error report",
        "delete": "Delete",
        "confirm_delete": "Delete this import, its uploaded file and its error report?",
        "deleted": "Import deleted",
    },
}

# Small enough that a file past it is quick to make, large enough for the tests' workbooks.
MAX_UPLOAD_BYTES = 64 * 1024
# An upload slowed to this many bytes a second takes seconds: long enough to see it progress.
SLOW_UPLOAD_BPS = 16 * 1024

EXISTING_ACCOUNTS = """
SELECT a.username, coalesce(a.nickname, '') AS nickname, coalesce(a.email, '') AS email,
       a.status, coalesce(r.name, '') AS role
FROM accounts a LEFT JOIN roles r ON r.id = a.role_id
WHERE a.username LIKE 'user%' ORDER BY a.id LIMIT 2
"""

# An import that ended with rejected rows, as the worker leaves it (its report made, nothing
# written): the page's words for it need no engine.
REJECTED_IMPORT = """
INSERT INTO tasks (id, kind, type, format, params, created_by_id, status, started_at,
                   finished_at, attempts, rows_done, rows_total, error, error_code,
                   error_params, upload_key, upload_name, upload_size, file_key, file_name,
                   file_size, outcome)
VALUES (gen_random_uuid(), 'import', 'account', 'xlsx',
        '{"mode": "apply", "on_error": "abort", "sha256": ""}', $1, 'failed', now(), now(), 1,
        6, 6, '5 rows rejected; nothing was imported', 'rows_rejected', '{"rejected": 5}',
        'uploads/never-read.xlsx', '账号.xlsx', 5120, 'reports/never-read.xlsx',
        'report.xlsx', 2048, $2::jsonb)
RETURNING id
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": MAX_UPLOAD_BYTES})


def csv_bytes(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode("utf-8-sig")


def xlsx_bytes(sheet: str, rows: list[list[str]]) -> bytes:
    data = io.BytesIO()
    workbook = xlsxwriter.Workbook(data, {"in_memory": True})
    worksheet = workbook.add_worksheet(sheet)
    for number, row in enumerate(rows):
        worksheet.write_row(number, 0, row)
    workbook.close()
    return data.getvalue()


async def open_in(open_page: OpenPage, language: str, user: str, start: str) -> Page:
    """``user`` (password "<user>-password") signed in on ``start``, in ``language``."""
    page = await open_page()
    await sign_in(page, user, f"{user}-password", start=start)
    if language == "en":
        await page.get_by_role("button", name="Switch to English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
    return page


async def upload(page: Page, language: str, name: str, data: bytes, *, apply: bool) -> None:
    """Open the Import dialog (unless open), choose the file (and apply, skipping bad rows), and
    upload it."""
    text = TEXT[language]
    dialog = page.get_by_role("dialog")
    if not await dialog.is_visible():
        await page.get_by_role("button", name=text["import"], exact=True).click()
    await expect(dialog).to_be_visible()
    await dialog.locator('input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
    )
    if apply:
        await dialog.get_by_label(text["apply"]).check()
        await dialog.get_by_label(text["skip"]).check()
    await dialog.get_by_role("button", name=text["upload"]).click()


async def newest_import(db: asyncpg.Connection[Any]) -> str:
    task_id = await db.fetchval(
        "SELECT id FROM tasks WHERE kind = 'import' ORDER BY created_at DESC LIMIT 1"
    )
    assert task_id is not None, "no import task was created"
    return str(task_id)


def import_row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#import-tasks-table tr[data-task-id="{task_id}"]')


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_uploaded_csv_and_xlsx_show_live_on_the_tasks_page_with_their_counts(
    language: str, open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    text = TEXT[language]
    same, changed = [dict(row) for row in await db.fetch(EXISTING_ACCOUNTS)]
    role = await db.fetchval("SELECT name FROM roles ORDER BY id LIMIT 1")
    page = await open_in(open_page, language, "admin", "/accounts")
    # The tasks page is open all along in another tab: what it shows comes live.
    tasks = await page.context.new_page()
    await tasks.goto("/tasks")
    await tasks.evaluate("window.stillTheSamePage = true")

    def row_of(account: dict[str, str]) -> list[str]:
        return [account[name] for name in ("username", "nickname", "email", "status", "role")]

    header = text["header"]
    new_name = f"imported-{language}"
    rows = [
        header,
        [new_name, "新来的", f"{new_name}@example.com", text["active"], role],
        row_of({**changed, "nickname": "改过的昵称"}),
        row_of(same),
        [f"bad-{language}", "", "not-an-email", text["active"], ""],
    ]
    await upload(page, language, "accounts.csv", csv_bytes(rows), apply=True)
    notice = page.locator("#import-notice")
    await expect(notice).to_contain_text(text["created"].format(file="accounts.csv"))
    await expect(notice.get_by_role("link", name=text["go_to_tasks"])).to_be_focused()

    applied = import_row(tasks, await newest_import(db))
    await expect(applied.locator(".badge")).to_have_text(text["completed"])
    await expect(applied.locator(".count")).to_have_text(text["applied"])
    await expect(applied.locator(".col-file")).to_contain_text("accounts.csv")
    await expect(applied.locator(".row-error")).to_have_text([text["bad_email"]])
    assert await db.fetchval("SELECT nickname FROM accounts WHERE username = $1", new_name)
    assert (
        await db.fetchval("SELECT nickname FROM accounts WHERE username = $1", changed["username"])
        == "改过的昵称"
    )

    workbook = xlsx_bytes(
        "账号",
        [
            header,
            [f"checked-{language}", "", "", text["active"], role],
            [f"checked-2-{language}", "", "", text["active"], "没有这个角色"],
        ],
    )
    await upload(page, language, "accounts.xlsx", workbook, apply=False)
    await expect(notice).to_contain_text(text["checked"].format(file="accounts.xlsx"))
    checked = import_row(tasks, await newest_import(db))
    await expect(checked.locator(".count")).to_have_text(text["validated"])
    await expect(checked.locator(".row-error")).to_have_text([text["bad_role"]])
    assert not await db.fetchval("SELECT count(*) FROM accounts WHERE username LIKE 'checked-%'"), (
        "a check wrote rows"
    )
    assert await tasks.evaluate("window.stillTheSamePage") is True
    await screenshot(tasks, f"imports-live-{language}")

    await notice.get_by_role("link", name=text["go_to_tasks"]).click()
    await expect(page).to_have_url(re.compile(r"/tasks#imports$"))
    await expect(page.locator("#import-tasks-table tr[data-task-id]")).to_have_count(2)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_file_that_is_no_workbook_is_refused_in_words_not_json(
    language: str, open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    text = TEXT[language]
    page = await open_in(open_page, language, "admin", "/accounts")
    await page.get_by_role("button", name=text["import"], exact=True).click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("button", name=text["upload"]).click()
    await expect(dialog.get_by_role("alert")).to_have_text(text["no_file"])

    await upload(page, language, "accounts.xlsx", os.urandom(4096), apply=False)
    await expect(dialog.get_by_role("alert")).to_have_text(text["garbage"])
    await expect(dialog).to_be_visible()
    await screenshot(page, f"import-refused-{language}", full_page=False)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE kind = 'import'") == 0


async def test_the_upload_shows_its_progress_and_a_file_too_large_is_refused_before_it(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    page = await open_in(open_page, "zh-CN", "admin", "/accounts")
    dialog = page.get_by_role("dialog")
    too_large = csv_bytes([["用户名"]] + [[f"user-{n:08d}"] for n in range(6000)])
    assert len(too_large) > MAX_UPLOAD_BYTES
    await upload(page, "zh-CN", "too-large.csv", too_large, apply=False)
    await expect(dialog.get_by_role("alert")).to_have_text("无法导入：文件太大，最大可上传 64.0 KB")

    # Chromium's network emulation slows the upload down; the bar follows the bytes sent.
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": SLOW_UPLOAD_BPS,
        },
    )
    slow = csv_bytes([["用户名"]] + [[f"slow-{n:08d}"] for n in range(3000)])
    assert SLOW_UPLOAD_BPS * 2 < len(slow) <= MAX_UPLOAD_BYTES
    await upload(page, "zh-CN", "slow.csv", slow, apply=False)
    await expect(dialog.locator(".progress-text")).to_have_text(
        re.compile(r"^正在上传… [1-9]\d?%$")
    )
    await screenshot(page, "import-uploading", full_page=False)
    await expect(page.locator("#import-notice")).to_contain_text("已上传“slow.csv”")
    assert await db.fetchval("SELECT upload_size FROM tasks WHERE kind = 'import'") == len(slow)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_dialog_gives_the_template_of_the_type(
    language: str, open_page: OpenPage
) -> None:
    text = TEXT[language]
    page = await open_in(open_page, language, "admin", "/accounts")
    await page.get_by_role("button", name=text["import"], exact=True).click()
    dialog = page.get_by_role("dialog")
    async with page.expect_download() as download_info:
        await dialog.get_by_role("link", name=text["xlsx_template"]).click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    data = Path(await download.path()).read_bytes()
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    first = next(sheet.iter_rows(max_row=1, values_only=True))
    assert "用户名" in first


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_import_refused_for_its_rows_says_why_row_by_row(
    language: str, open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    text = TEXT[language]
    errors = [
        {"sheet": None, "row": 2, "column": "用户名", "code": "required", "params": {}},
        {
            "sheet": "账号",
            "row": 3,
            "column": "状态",
            "code": "unknown_choice",
            "params": {"allowed": ["正常", "禁用", "锁定"]},
        },
        {
            "sheet": "账号",
            "row": 4,
            "column": "用户名",
            "code": "duplicate_key",
            "params": {"value": "li", "first_row": 2, "first_sheet": "旧账号"},
        },
        {"sheet": None, "row": 5, "column": "邮箱", "code": "invalid_format", "params": {}},
    ]
    if language == "en":
        errors[0]["column"], errors[1]["column"] = "Username", "Status"
        errors[1]["params"] = {"allowed": ["Active", "Disabled", "Locked"]}
        errors[2]["column"] = "Username"
    outcome = {
        "counts": {"created": 1, "updated": 0, "unchanged": 0, "rejected": 5},
        "errors": [{**error, "message": "in English"} for error in errors],
    }
    owner = await account_id(db, "admin")
    task_id = str(await db.fetchval(REJECTED_IMPORT, owner, json.dumps(outcome)))
    page = await open_in(open_page, language, "admin", "/tasks")
    row = import_row(page, task_id)
    await expect(row.locator(".failure")).to_have_text(text["rejected_task"])
    await expect(row.locator(".row-error")).to_have_text(text["row_errors"])
    await expect(row.locator(".col-errors")).to_contain_text(text["more_errors"])
    await expect(row.get_by_role("link", name=text["report"])).to_be_visible()
    await expect(row.locator(".col-file")).to_contain_text("账号.xlsx")
    await screenshot(page, f"import-rejected-{language}")
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("#import-tasks-table thead")).to_be_hidden()
    await expect(row.locator(".row-error")).to_have_text(text["row_errors"])
    await screenshot(page, f"import-rejected-phone-{language}")

    async def accept(dialog: Dialog) -> None:
        assert dialog.message == text["confirm_delete"]
        await dialog.accept()

    page.once("dialog", accept)
    await row.get_by_role("button", name=text["delete"]).click()
    await expect(page.locator("#toast")).to_have_text(text["deleted"])
    await expect(row).to_have_count(0)
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE id = $1", task_id) == 0


async def test_only_who_may_import_a_type_sees_its_import_button(
    open_page: OpenPage, db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "clerk", ["account:read", "export:create"], password="clerk-password")
    page = await open_in(open_page, "zh-CN", "clerk", "/accounts")
    await expect(page.get_by_role("button", name="导出", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="导入", exact=True)).to_have_count(0)
    await page.goto("/tasks")
    await expect(page.locator("#imports")).to_be_hidden()

    await set_permissions(db, "clerk", "account:read", "account:write")  # not import:create
    await page.goto("/accounts")
    await expect(page.locator("#page-info")).to_contain_text("共")
    await expect(page.get_by_role("button", name="导入", exact=True)).to_have_count(0)

    await set_permissions(db, "clerk", "account:read", "account:write", "import:create")
    await page.goto("/accounts")
    await expect(page.get_by_role("button", name="导入", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="导出", exact=True)).to_have_count(0)
    await page.goto("/tasks")
    await expect(page.locator("#imports")).to_be_visible()

    await set_permissions(db, "clerk", "role:read", "role:write", "import:create")
    await page.goto("/roles")
    await page.get_by_role("button", name="导入", exact=True).click()
    await expect(page.get_by_role("dialog")).to_contain_text("表头须有：名称。")
