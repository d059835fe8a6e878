"""The tasks page with files in an S3 store (SeaweedFS) and downloads redirected to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Request, expect

from exporter.ops.seaweedfs import SeaweedFS
from settings import Settings
from tests.conftest import on_s3
from tests.e2e.conftest import OpenPage, sign_in
from tests.support import ApiUser


@pytest.fixture
def settings(settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str) -> Settings:
    return on_s3(settings, seaweedfs, s3_storage_url).model_copy(update={"download_redirect": True})


@pytest.mark.usefixtures("worker")
async def test_in_redirect_mode_the_tasks_page_downloads_the_file_from_the_store(
    open_page: OpenPage, admin: ApiUser, seaweedfs: SeaweedFS
) -> None:
    task = await admin.finished((await admin.create("account", "csv"))["id"])
    status, expected, _ = await admin.download(task["id"])  # follows the 303 to the store
    page = await open_page()
    await sign_in(page, "admin", "admin-password")
    asked: list[str] = []

    def note(request: Request) -> None:
        asked.append(f"{request.method} {request.url}")

    page.on("request", note)
    link = page.locator(f'tr[data-task-id="{task["id"]}"]').get_by_role("link", name="下载")
    await expect(link).to_be_visible()
    async with page.expect_download() as download_info:
        await link.click()
    download = await download_info.value

    assert status == 200
    assert re.fullmatch(r"账号列表_\d{8}_\d{6}_[0-9a-f]{6}\.csv", download.suggested_filename)
    assert Path(await download.path()).read_bytes() == expected
    assert any(entry.startswith(f"GET {seaweedfs.endpoint_url}/") for entry in asked), asked
