"""Files in a real S3 store (SeaweedFS): exports and imports kept as objects, downloads streamed
with their headers and ranges or redirected to the store, failures that leave nothing behind."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from exporter.ops.seaweedfs import SeaweedFS, s3_client
from settings import Settings
from tests.conftest import on_s3
from tests.seaweed import TEST_BUCKET, object_keys, unfinished_uploads
from tests.support import ApiUser
from tests.workers import running_worker


@pytest.fixture
def settings(settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str) -> Settings:
    """Every stack of these tests keeps its files in the test's own prefix of the bucket."""
    return on_s3(settings, seaweedfs, s3_storage_url)


def _prefix(settings: Settings) -> str:
    location = settings.s3_location
    assert location is not None
    return location.prefix


async def _stored_bytes(server: SeaweedFS, key: str) -> bytes:
    async with s3_client(server) as client:
        got = await client.get_object(Bucket=TEST_BUCKET, Key=key)
        return await got["Body"].read()


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
async def test_an_export_is_kept_as_one_object_and_downloads_byte_identical(
    settings: Settings,
    seaweedfs: SeaweedFS,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    file_format: str,
) -> None:
    async with running_worker(settings):
        task = await admin.finished((await admin.create("account", file_format))["id"])

    status, content, headers = await admin.download(task["id"])

    deployment = await db.fetchval("SELECT id FROM deployment")
    key = f"{_prefix(settings)}/{deployment}/{task['id']}.{file_format}"
    assert task["status"] == "completed", task
    assert await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings)) == [key]
    assert await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings)) == []
    assert status == 200
    assert content == await _stored_bytes(seaweedfs, key)
    assert len(content) == task["file_size"] == int(headers["Content-Length"])
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "Etag" in headers and "Last-Modified" in headers
    assert [path for path in settings.scratch_dir.rglob("*") if path.is_file()] == []
