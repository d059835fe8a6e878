"""Large csv exports copied over several connections at once: one file, row for row."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest

from exporter.ops.seed import seed
from settings import Settings
from tests.expected import ACCOUNT_HEADER, ACCOUNT_TEXT_COLUMNS, account_rows, as_csv
from tests.integration.test_exports import AWKWARD_ACCOUNTS
from tests.support import ApiUser, csv_rows, files_in
from tests.workers import running_worker

ACCOUNTS = 12_345
PARTS = 3


@pytest.fixture
def parts_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"parallel_min_rows": 1_000, "encode_processes": PARTS})


@pytest.mark.slow
async def test_a_csv_export_copied_in_parts_is_the_file_copied_whole(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    database_url: str,
    settings: Settings,
    parts_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await seed(database_url, accounts=ACCOUNTS, admin_password=None)
    # Quotes, commas and line breaks inside values, and formula-like text, in every range.
    for number, (_, nickname, email, phone) in enumerate(AWKWARD_ACCOUNTS):
        await db.execute(
            "UPDATE accounts SET nickname = $1, email = $2, phone = $3 WHERE id % 997 = $4",
            nickname,
            email,
            phone,
            number,
        )

    async with running_worker(settings.model_copy(update={"encode_processes": 1})):
        whole = await admin.export("account", "csv")
    caplog.set_level(logging.INFO, "exporter.worker")
    async with running_worker(parts_settings):
        task = await admin.finished((await admin.create("account", "csv"))["id"])
        status, in_parts, _ = await admin.download(task["id"])

    assert status == 200
    assert f"copying {ACCOUNTS} csv rows over {PARTS} connections" in caplog.messages
    assert in_parts == whole
    expected = [as_csv(row, ACCOUNT_TEXT_COLUMNS) for row in await account_rows(db)]
    assert csv_rows(in_parts) == [ACCOUNT_HEADER, *expected]
    assert task["row_count"] == len(expected) == ACCOUNTS
    assert len(files_in(settings.storage_dir)) == 2  # the two exports, no part left behind


async def test_a_range_that_fails_fails_the_whole_csv_export_and_leaves_no_file(
    admin: ApiUser, settings: Settings, parts_settings: Settings
) -> None:
    async with running_worker(parts_settings):
        task = await admin.finished((await admin.create("test_fails_midway", "csv"))["id"])
        after = await admin.finished((await admin.create("role", "csv"))["id"])

    assert task["status"] == "failed"
    assert task["error"] == "database error: division by zero"
    assert after["status"] == "completed"
    assert files_in(settings.storage_dir) == [f"{after['id']}.1.csv"]
