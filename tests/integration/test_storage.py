"""Files behind the storage seam: keys in rows, ranges, other disks, what the janitor keeps."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from exporter.storage.scratch import ScratchSpace
from settings import Settings
from tests.conftest import SECRET
from tests.support import ApiUser, files_in, migrate_before
from tests.workers import janitor_round, running_worker

HOUR_AGO = time.time() - 3600
FILE_KEYS = 11  # the migration that turned stored paths into keys


async def test_files_recorded_by_path_before_keys_still_download_after_migrating(
    settings: Settings, empty_database_url: str
) -> None:
    await migrate_before(empty_database_url, FILE_KEYS)
    storage_dir = settings.storage_dir.resolve()
    conn = await asyncpg.connect(empty_database_url)
    try:
        deployment = await conn.fetchval("SELECT id FROM deployment")
        owner = await conn.fetchval("INSERT INTO accounts (username) VALUES ('old') RETURNING id")
        current, legacy = uuid.uuid4(), uuid.uuid4()
        files = {
            current: storage_dir / str(deployment) / f"{current}.csv",
            legacy: storage_dir / f"{legacy}.csv",  # before deployments had their own folder
        }
        for task_id, path in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"\ufeffid\r\n{task_id}\r\n".encode())
            await conn.execute(
                "INSERT INTO export_tasks (id, type, status, format, file_name, file_path,"
                " file_size, created_by_id, finished_at)"
                " VALUES ($1, 'role', 'completed', 'csv', 'roles.csv', $2, $3, $4, now())",
                task_id,
                str(path),
                path.stat().st_size,
                owner,
            )

        await migrate(empty_database_url)

        keys = dict(await conn.fetch("SELECT id, file_key FROM tasks"))
    finally:
        await conn.close()
    assert keys == {current: f"{deployment}/{current}.csv", legacy: f"{legacy}.csv"}
    migrated = settings.model_copy(update={"database_url": empty_database_url})
    async with TestClient(TestServer(create_app(migrated))) as client:
        user = ApiUser(client, issue_token(SECRET, int(owner)))
        for task_id, path in files.items():
            status, content, _ = await user.download(str(task_id))
            assert (status, content) == (200, path.read_bytes())


@pytest.mark.usefixtures("worker")
async def test_a_range_request_gets_206_with_the_parts_bytes_and_the_full_downloads_headers(
    admin: ApiUser,
) -> None:
    task = await admin.finished((await admin.create("account", "csv"))["id"])
    _, whole, full_headers = await admin.download(task["id"])
    url = f"/api/export-tasks/{task['id']}/download"

    first = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=0-9"})
    last = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=-5"})

    assert first.status == 206
    assert await first.read() == whole[:10]
    assert first.headers["Content-Range"] == f"bytes 0-9/{len(whole)}"
    assert last.status == 206
    assert await last.read() == whole[-5:]
    for name in ("Content-Type", "Content-Disposition", "Cache-Control"):
        assert first.headers[name] == full_headers[name], name


@pytest.mark.usefixtures("worker")
async def test_a_key_that_leads_out_of_the_storage_is_served_as_a_gone_file(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    outside = settings.storage_dir.parent / "outside.csv"
    outside.write_bytes(b"not an export")
    await db.execute(
        "UPDATE tasks SET file_key = '../outside.csv' WHERE id = $1", uuid.UUID(task["id"])
    )

    status, _, _ = await admin.download(task["id"])

    assert status == 410
    assert (await admin.task(task["id"]))["status"] == "expired"
    assert outside.exists()


@pytest.fixture
def other_disk() -> Iterator[Path]:
    """A directory on another filesystem than the tests' temporary files."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as path:
        if os.stat(path).st_dev == os.stat(tempfile.gettempdir()).st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the temporary files")
        yield Path(path)


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
async def test_exports_written_on_another_disk_are_published_whole_and_leave_no_work_behind(
    settings: Settings, admin: ApiUser, other_disk: Path, file_format: str
) -> None:
    elsewhere = settings.model_copy(update={"work_dir": other_disk})
    async with running_worker(elsewhere):
        task = await admin.finished((await admin.create("account", file_format))["id"])

    status, content, _ = await admin.download(task["id"])

    assert task["status"] == "completed"
    assert (status, len(content)) == (200, task["file_size"])
    assert files_in(settings.storage_dir) == [f"{task['id']}.1.{file_format}"]
    assert [path.name for path in other_disk.rglob("*") if path.is_file()] == []


async def test_the_janitor_keeps_a_tasks_own_file_and_removes_what_no_task_owns(
    settings: Settings, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    async with running_worker(settings):
        task = await admin.finished((await admin.create("role", "csv"))["id"])
    own = settings.storage_dir / await db.fetchval(
        "SELECT file_key FROM tasks WHERE id = $1", uuid.UUID(task["id"])
    )
    strays = [
        own.with_name(f"{task['id']}.xlsx"),  # not the file the task has
        own.with_name(f"{own.name}.partial-0a1b2c3d"),  # a copy cut short
        own.with_name(f"{uuid.uuid4()}.csv"),  # of no task at all
    ]
    for path in [own, *strays]:
        path.touch()
        os.utime(path, (HOUR_AGO, HOUR_AGO))

    result = await janitor_round(settings)

    assert result.orphans_removed == len(strays)
    assert files_in(settings.storage_dir) == [own.name]


async def test_the_janitor_removes_uploads_an_api_stopped_receiving_and_keeps_live_ones(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    deployment = await db.fetchval("SELECT id FROM deployment")
    uploads = ScratchSpace(settings.scratch_dir, deployment).upload_dir
    uploads.mkdir(parents=True)
    abandoned, receiving = uploads / "abandoned.part", uploads / "receiving.part"
    for path in (abandoned, receiving):
        path.write_bytes(b"half an upload")
    os.utime(abandoned, (HOUR_AGO, HOUR_AGO))

    result = await janitor_round(settings)

    assert result.orphans_removed == 1
    assert sorted(path.name for path in uploads.iterdir()) == ["receiving.part"]
