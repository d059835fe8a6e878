"""Errors in the reader's language: once, in the form's own words, where they belong."""

from __future__ import annotations

from playwright.async_api import expect

from settings import Settings
from tests.e2e.conftest import OpenPage, screenshot, sign_in
from tests.support import ApiUser
from tests.workers import drain_queue


async def test_a_reversed_date_range_is_one_message_by_its_field_in_each_language(
    open_page: OpenPage,
) -> None:
    page = await open_page()
    await sign_in(page, "admin", "admin-password", start="/accounts")
    filters = page.locator("#filters")
    await filters.get_by_label("创建日期从").fill("2024-02-01")
    await filters.get_by_label("创建日期至").fill("2024-01-01")
    await filters.get_by_role("button", name="查询").click()

    message = filters.locator("#field-error-created_from")
    await expect(message).to_have_text("“创建日期从”不能晚于“创建日期至”")
    await expect(filters.get_by_role("textbox", name="创建日期从", exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    await expect(page.locator("#list-table tr.state.error")).to_have_text("请先修改标出的筛选条件")
    await expect(page.get_by_text("不能晚于")).to_have_count(1)

    await page.get_by_role("button", name="导出", exact=True).click()
    await expect(page.locator("#export-notice")).to_have_text("无法导出：请先修改标出的筛选条件")
    await expect(page.get_by_text("不能晚于")).to_have_count(1)
    await screenshot(page, "accounts-reversed-range")

    # The filters stay in the address, so the page loads them again in English.
    await page.get_by_role("button", name="Switch to English").click()
    english = page.locator("#field-error-created_from")
    await expect(english).to_have_text("“Created from” must not be after “Created to”")
    await expect(page.get_by_text("must not be after")).to_have_count(1)
    await expect(page.locator("#list-table tr.state.error")).to_have_text(
        "Correct the marked filters first"
    )
    await screenshot(page, "accounts-reversed-range-en")
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(english).to_be_visible()
    await screenshot(page, "accounts-reversed-range-narrow")

    await page.get_by_role("textbox", name="Created to", exact=True).fill("2024-03-01")
    await page.get_by_role("button", name="Search").click()
    await expect(english).to_have_count(0)
    await expect(
        page.get_by_role("textbox", name="Created from", exact=True)
    ).not_to_have_attribute("aria-invalid", "true")


async def test_a_task_failed_for_too_many_rows_says_why_in_each_language(
    open_page: OpenPage, admin: ApiUser, settings: Settings
) -> None:
    task = await admin.create("account", "xlsx")
    await drain_queue(settings.model_copy(update={"max_rows": 100}))
    page = await open_page()
    await sign_in(page, "admin", "admin-password")

    error = page.locator(f'tr[data-task-id="{task["id"]}"] .col-error')
    await expect(error).to_have_text(
        "符合条件的数据有 300 行，超过单次导出上限 100 行；请缩小筛选范围"
    )
    await screenshot(page, "tasks-too-many-rows")

    await page.get_by_role("button", name="Switch to English").click()
    await expect(error).to_have_text(
        "The filters match 300 rows, more than the 100 one export may hold; narrow the filters"
    )
    await screenshot(page, "tasks-too-many-rows-en")
