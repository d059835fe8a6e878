"""A real Chromium (the system's, driven by Playwright) against the app on a loopback port.

Screenshots go to test-artifacts/. Chromium comes from the system packages (`.ci/run` installs
`chromium` and `fonts-noto-cjk`); nothing is downloaded at run time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright, expect

from exporter.auth.tokens import issue_token
from tests.conftest import ROOT, SECRET, add_account
from tests.support import ApiUser

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for an export to run its course on a slow CI machine; a met condition returns at once.
expect.set_options(timeout=20_000)

OpenPage = Callable[..., Awaitable[Page]]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("no Chromium: install it with `apt-get install chromium fonts-noto-cjk`")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def open_page(browser: Browser, client: TestClient[Any, Any]) -> AsyncIterator[OpenPage]:
    """A page in a fresh browser profile (its own cookies) on the test's server.

    Options go to ``new_context``; the default is a Chinese browser in Shanghai. Any uncaught
    error in a page's scripts fails the test.
    """
    errors: list[str] = []

    async def new_page(**options: Any) -> Page:
        settings = {
            "base_url": str(client.make_url("/")),
            "locale": "zh-CN",
            "timezone_id": "Asia/Shanghai",
            "viewport": {"width": 1360, "height": 860},
            "accept_downloads": True,
            **options,
        }
        context = await browser.new_context(**settings)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield new_page
    assert errors == [], "uncaught errors in the pages' scripts"


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=path, full_page=full_page)
    return path


async def sign_in(page: Page, username: str, password: str, start: str = "/tasks") -> None:
    """Open ``start``, get sent to the sign-in page, sign in with the keyboard alone, come back."""
    await page.goto(start)
    await page.wait_for_url(re.compile(r"/login\?next="))
    await expect(page.locator("#username")).to_be_focused()
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: urlsplit(url).path == start)


@pytest.fixture
async def colleague(client: TestClient[Any, Any], db: asyncpg.Connection[Any]) -> ApiUser:
    """A second account that may do everything and can sign in (password "colleague-password")."""
    colleague_id = await add_account(db, "colleague", ["*"], password="colleague-password")
    return ApiUser(client, issue_token(SECRET, colleague_id))
