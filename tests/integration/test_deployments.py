"""Deployments sharing one storage directory: each keeps its files apart, removes only its own."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from exporter.ops.seed import seed
from settings import Settings
from tests.conftest import SECRET
from tests.support import ApiUser
from tests.workers import janitor_round, running_worker

HOUR_AGO = time.time() - 3600


def _age_everything(storage_dir: Path) -> None:
    """Older than the janitor's minimum age, so it judges every entry."""
    for path in storage_dir.rglob("*"):
        os.utime(path, (HOUR_AGO, HOUR_AGO))


async def _exports(user: ApiUser) -> list[dict[str, Any]]:
    return [
        await user.finished((await user.create("role", file_format))["id"])
        for file_format in ("csv", "xlsx")
    ]


async def test_two_stacks_on_one_storage_directory_both_keep_every_file(
    settings: Settings, admin: ApiUser, empty_database_url: str
) -> None:
    await migrate(empty_database_url)
    await seed(empty_database_url, accounts=5, admin_password="other-admin-password")
    other = settings.model_copy(
        update={"database_url": empty_database_url, "queue_name": f"{settings.queue_name}:b"}
    )
    other_admin_id = await _admin_id(empty_database_url)
    async with (
        running_worker(settings),
        running_worker(other),
        TestClient(TestServer(create_app(other))) as other_client,
    ):
        other_admin = ApiUser(other_client, issue_token(SECRET, other_admin_id))
        ours, theirs = await _exports(admin), await _exports(other_admin)
        _age_everything(settings.storage_dir)

        removed = [(await janitor_round(stack)).orphans_removed for stack in (settings, other)]

        for user, tasks in ((admin, ours), (other_admin, theirs)):
            for task in tasks:
                status, content, _ = await user.download(task["id"])
                assert (status, len(content)) == (200, task["file_size"]), task

    assert removed == [0, 0]


async def test_a_file_kept_before_deployments_had_directories_still_downloads_and_stays(
    settings: Settings, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    async with running_worker(settings):
        task = await admin.finished((await admin.create("role", "csv"))["id"])
    key = await db.fetchval("SELECT file_key FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    stored = settings.storage_dir / key
    legacy = settings.storage_dir / stored.name
    stored.rename(legacy)
    await db.execute(
        "UPDATE tasks SET file_key = $2 WHERE id = $1", uuid.UUID(task["id"]), legacy.name
    )
    _age_everything(settings.storage_dir)

    removed = (await janitor_round(settings)).orphans_removed
    status, content, _ = await admin.download(task["id"])

    assert removed == 0
    assert legacy.exists()
    assert (status, len(content)) == (200, task["file_size"])


async def test_a_janitor_never_touches_another_deployments_files_nor_work_directories(
    settings: Settings,
) -> None:
    another = str(uuid.uuid4())
    theirs = [
        settings.storage_dir / another / f"{uuid.uuid4()}.csv",
        settings.scratch_dir / another / f"{uuid.uuid4()}-aaaa" / "export.csv",
    ]
    for path in theirs:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"theirs")
    _age_everything(settings.storage_dir)

    removed = (await janitor_round(settings)).orphans_removed

    assert removed == 0
    assert all(path.exists() for path in theirs)


async def _admin_id(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT id FROM accounts WHERE username = 'admin'"))
    finally:
        await conn.close()
