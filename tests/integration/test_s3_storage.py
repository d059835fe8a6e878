"""Files in a real S3 store (SeaweedFS): exports and imports kept as objects, downloads streamed
with their headers and ranges or redirected to the store, failures that leave nothing behind."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import openpyxl
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from yarl import URL

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from exporter.ops.seaweedfs import SeaweedFS, s3_client
from exporter.ops.seed import seed
from exporter.ops.storage import open_storage
from exporter.storage.base import StoredFile
from exporter.storage.s3_upload import PART_BYTES, PARTS_IN_FLIGHT
from settings import Settings
from tests.conftest import SECRET, on_s3
from tests.imports import IMPORTS, form, import_finished, imported
from tests.seaweed import TEST_BUCKET, FlakyStore, object_keys, part_upload, unfinished_uploads
from tests.support import ApiUser, wait_until
from tests.workers import janitor_round, running_worker


@pytest.fixture
def settings(settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str) -> Settings:
    """Every stack of these tests keeps its files in the test's own prefix of the bucket."""
    return on_s3(settings, seaweedfs, s3_storage_url)


# A worker's janitor aborts the unfinished upload of any task not running within its interval
# (0.5 s in the tests): asleep, it cannot hide an upload that failed to abort itself.
NO_JANITOR = {"janitor_interval_s": 3600}


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
    key = f"{_prefix(settings)}/{deployment}/{task['id']}.1.{file_format}"
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


async def test_a_range_gets_206_one_past_the_end_416_and_head_the_headers_alone(
    settings: Settings, admin: ApiUser
) -> None:
    url, whole, full = await _downloaded(settings, admin)

    first = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=0-9"})
    last = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=-5"})
    past = await admin.client.get(url, headers={**admin.headers, "Range": f"bytes={len(whole)}-"})
    head = await admin.client.head(url, headers=admin.headers)

    assert (first.status, await first.read()) == (206, whole[:10])
    assert first.headers["Content-Range"] == f"bytes 0-9/{len(whole)}"
    assert (last.status, await last.read()) == (206, whole[-5:])
    assert past.status == 416
    assert past.headers["Content-Range"] == f"bytes */{len(whole)}"
    assert (head.status, await head.read()) == (200, b"")
    for name in ("Content-Type", "Content-Disposition", "Content-Length", "Etag"):
        assert head.headers[name] == full[name], name
    for name in ("Content-Type", "Content-Disposition", "Cache-Control"):
        assert first.headers[name] == full[name], name


async def test_a_range_it_cannot_serve_is_ignored_and_an_empty_suffix_is_416(
    settings: Settings, admin: ApiUser
) -> None:
    url, whole, full = await _downloaded(settings, admin)

    async def get(headers: dict[str, str]) -> tuple[int, bytes]:
        response = await admin.client.get(url, headers={**admin.headers, **headers})
        return response.status, await response.read()

    ignored = [
        await get({"Range": value})
        for value in ("bytes=0-1,3-4", "bytes=10-5", "items=0-1", "bytes=x-")
    ]
    empty_suffix = await get({"Range": "bytes=-0"})
    same_version = await get({"Range": "bytes=0-9", "If-Range": full["Etag"]})
    other_version = await get({"Range": "bytes=0-9", "If-Range": '"another"'})

    assert ignored == [(200, whole)] * 4
    assert empty_suffix == (416, b"")
    assert same_version == (206, whole[:10])
    assert other_version == (200, whole)


async def test_in_redirect_mode_a_get_is_a_303_to_a_short_lived_url_that_names_the_file(
    settings: Settings, admin: ApiUser
) -> None:
    url, whole, streamed = await _downloaded(settings, admin)
    redirecting = settings.model_copy(update={"download_redirect": True})

    async with TestClient(TestServer(create_app(redirecting))) as client:
        get = await client.get(url, headers=admin.headers, allow_redirects=False)
        head = await client.head(url, headers=admin.headers, allow_redirects=False)
    location = get.headers["Location"]
    async with ClientSession() as browser, browser.get(URL(location, encoded=True)) as direct:
        body, direct_headers = await direct.read(), direct.headers

    assert get.status == 303
    assert int(parse_qs(urlsplit(location).query)["X-Amz-Expires"][0]) <= 300
    assert body == whole
    assert direct_headers["Content-Disposition"] == streamed["Content-Disposition"]
    assert direct_headers["Content-Type"] == streamed["Content-Type"]
    # The page asks HEAD before it navigates: answered here, never sent to the store.
    assert head.status == 200
    assert "Location" not in head.headers
    assert head.headers["Content-Length"] == str(len(whole))


async def test_a_store_that_keeps_failing_fails_the_task_after_retries_and_keeps_nothing(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser
) -> None:
    store = FlakyStore(seaweedfs.endpoint_url, refuses=part_upload)
    async with store.running() as endpoint_url:
        flaky = settings.model_copy(update={"s3_endpoint_url": endpoint_url, **NO_JANITOR})
        async with running_worker(flaky):
            task = await admin.finished(
                (await admin.create("test_wide", "csv", rows=250_000))["id"]
            )
            # Right away, the janitor asleep: the upload's own abort left nothing.
            keys = await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings))
            uploads = await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings))

    assert task["status"] == "failed"
    assert task["error"].startswith("storage error: the object store could not store part ")
    assert task["error"].endswith(" after 4 tries: SlowDown: Please reduce your request rate.")
    assert len(store.refused) >= 4
    assert (keys, uploads) == ([], [])


async def test_wrong_credentials_fail_the_task_at_once_saying_so(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser
) -> None:
    wrong = settings.model_copy(update={"aws_secret_access_key": SecretStr("not-the-secret")})
    async with running_worker(wrong):
        task = await admin.finished((await admin.create("account", "csv"))["id"])

    assert task["status"] == "failed"
    assert task["error"].startswith("storage error: the object store could not store ")
    assert "SignatureDoesNotMatch" in task["error"]
    assert await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings)) == []


async def test_a_large_csv_goes_up_in_parts_while_written_and_downloads_whole(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser
) -> None:
    async with running_worker(settings):
        task = await admin.finished((await admin.create("test_wide", "csv", rows=250_000))["id"])
    status, content, _ = await admin.download(task["id"])
    (key,) = await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings))
    async with s3_client(seaweedfs) as client:
        head = await client.head_object(Bucket=TEST_BUCKET, Key=key)

    assert task["status"] == "completed", task
    assert (status, len(content)) == (200, task["file_size"])
    assert content.count(b"\n") == 250_001
    assert head["ETag"].strip('"').endswith(f"-{-(-len(content) // PART_BYTES)}")  # its parts
    assert content == await _stored_bytes(seaweedfs, key)


async def test_the_janitor_aborts_uploads_of_attempts_that_ended_and_nobody_elses(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    async with running_worker(settings):
        task = await admin.finished((await admin.create("role", "csv"))["id"])
    prefix, deployment = _prefix(settings), await db.fetchval("SELECT id FROM deployment")
    dead_attempts = f"{prefix}/{deployment}/{task['id']}.2.csv"  # its worker died mid-upload
    being_received = f"{prefix}/{deployment}/{uuid.uuid4()}.upload.csv"  # no task yet
    anothers = f"{prefix}/{uuid.uuid4()}/{uuid.uuid4()}.csv"  # another deployment's
    async with s3_client(seaweedfs) as client:
        for key in (dead_attempts, being_received, anothers):
            await client.create_multipart_upload(Bucket=TEST_BUCKET, Key=key)

    result = await janitor_round(settings)

    assert result.orphans_removed == 1
    remaining = await unfinished_uploads(seaweedfs, TEST_BUCKET, prefix)
    assert remaining == sorted([being_received, anothers])
    status, _, _ = await admin.download(task["id"])
    assert status == 200


async def test_two_deployments_on_one_bucket_expire_and_clean_only_their_own_objects(
    settings: Settings,
    seaweedfs: SeaweedFS,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    empty_database_url: str,
) -> None:
    await migrate(empty_database_url)
    await seed(empty_database_url, accounts=5, admin_password="other-admin-password")
    other = settings.model_copy(
        update={"database_url": empty_database_url, "queue_name": f"{settings.queue_name}:b"}
    )
    async with TestClient(TestServer(create_app(other))) as other_client:
        other_admin = ApiUser(other_client, issue_token(SECRET, await _admin_id(other)))
        # The workers stop first: their own janitors would expire our tasks before ours does.
        async with running_worker(settings), running_worker(other):
            ours = [await _export(admin, file_format) for file_format in ("csv", "xlsx")]
            theirs = [await _export(other_admin, file_format) for file_format in ("csv", "xlsx")]
        every_key = await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings))
        await db.execute("UPDATE tasks SET finished_at = now() - interval '30 days'")

        rounds = [await janitor_round(stack) for stack in (settings, other)]

        downloads = [await other_admin.download(task["id"]) for task in theirs]
        gone = [(await admin.download(task["id"]))[0] for task in ours]

    assert [(r.expired, r.orphans_removed) for r in rounds] == [(2, 0), (0, 0)]
    assert gone == [410, 410]
    assert [(status, len(content)) for status, content, _ in downloads] == [
        (200, task["file_size"]) for task in theirs
    ]
    theirs_prefix = f"{_prefix(settings)}/{await _deployment(other)}/"
    assert len(every_key) == 4
    assert await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings)) == [
        key for key in every_key if key.startswith(theirs_prefix)
    ]


async def test_an_import_keeps_its_upload_and_report_in_the_bucket(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    rejected_row = "用户名,昵称,状态\r\nzhang,张三,正常\r\nli,李四,不存在\r\n".encode()
    async with running_worker(settings):
        task = await imported(admin, form(rejected_row))
        task = await import_finished(admin, task["id"])
    response = await admin.client.get(f"{IMPORTS}/{task['id']}/report", headers=admin.headers)
    report = await response.read()

    deployment = await db.fetchval("SELECT id FROM deployment")
    names = [
        key.rsplit("/", 1)[-1]
        for key in await object_keys(seaweedfs, TEST_BUCKET, f"{_prefix(settings)}/{deployment}/")
    ]
    assert task["has_report"] is True, task
    assert names == sorted([f"{task['id']}.upload.csv", f"{task['id']}.report-1.xlsx"])
    assert response.status == 200
    sheet = openpyxl.load_workbook(io.BytesIO(report), read_only=True).worksheets[0]
    assert any("不存在" in str(cell) for row in sheet.iter_rows(values_only=True) for cell in row)
    assert await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings)) == []


async def _downloaded(settings: Settings, admin: ApiUser) -> tuple[str, bytes, dict[str, str]]:
    """A csv export's download URL, and its bytes and headers as the API streams them."""
    async with running_worker(settings):
        task = await admin.finished((await admin.create("account", "csv"))["id"])
    status, content, headers = await admin.download(task["id"])
    assert status == 200
    return f"/api/export-tasks/{task['id']}/download", content, headers


async def _export(user: ApiUser, file_format: str) -> dict[str, Any]:
    task = await user.finished((await user.create("role", file_format))["id"])
    assert task["status"] == "completed", task
    return task


async def _deployment(settings: Settings) -> uuid.UUID:
    conn = await asyncpg.connect(settings.database_url)
    try:
        value = await conn.fetchval("SELECT id FROM deployment")
    finally:
        await conn.close()
    assert isinstance(value, uuid.UUID)
    return value


async def _admin_id(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval("SELECT id FROM accounts WHERE username = 'admin'"))
    finally:
        await conn.close()


async def test_cancelling_an_export_mid_upload_aborts_it_and_keeps_nothing(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser
) -> None:
    async with running_worker(settings.model_copy(update=NO_JANITOR)):
        task = await admin.create("test_slow_wide", "csv", rows=20_000)

        async def uploading() -> list[str]:
            return await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings))

        await wait_until(uploading, timeout_s=30, what="the export's upload to begin")
        response = await admin.client.post(
            f"/api/export-tasks/{task['id']}/cancel", headers=admin.headers
        )
        assert response.status == 200, await response.text()
        task = await admin.finished(task["id"])
        # Right away, the janitor asleep: the upload's own abort left nothing.
        keys = await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings))
        uploads = await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings))

    assert task["status"] == "cancelled"
    assert (keys, uploads) == ([], [])


async def test_a_download_while_the_store_fails_is_a_503_and_the_file_stays_kept(
    settings: Settings, seaweedfs: SeaweedFS, admin: ApiUser
) -> None:
    url, _, _ = await _downloaded(settings, admin)
    store = FlakyStore(seaweedfs.endpoint_url, refuses=lambda _: True)
    async with store.running() as endpoint_url:
        failing = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with TestClient(TestServer(create_app(failing))) as client:
            response = await client.get(url, headers=admin.headers)
            body = await response.json()
    status, _, _ = await admin.download(url.split("/")[-2])

    assert response.status == 503
    assert body["error"]["code"] == "service_unavailable"
    assert len(store.refused) == 4  # the HEAD, tried 4 times
    assert status == 200


async def test_a_large_file_goes_up_a_few_parts_at_a_time_and_arrives_whole(
    settings: Settings, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    content = os.urandom(5 * PART_BYTES + 12345)
    source = tmp_path / "large.csv"
    source.write_bytes(content)
    deployment = uuid.uuid4()
    store = FlakyStore(seaweedfs.endpoint_url, refuses=lambda _: False)
    async with store.running() as endpoint_url:
        watched = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with open_storage(watched, deployment) as storage:
            stored = await storage.publish(source, "large.csv")

    assert stored == StoredFile(f"{deployment}/large.csv", len(content))
    assert store.most_parts_in_flight == PARTS_IN_FLIGHT
    assert await _stored_bytes(seaweedfs, f"{_prefix(settings)}/{stored.key}") == content
    assert not source.exists()


def _completes(request: web.BaseRequest) -> bool:
    """The request that completes a multipart upload (its creation carries ``uploads``)."""
    return request.method == "POST" and "uploadId" in request.query


async def test_a_completed_upload_whose_answer_was_lost_is_kept_once_it_checks_out(
    settings: Settings, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    content = os.urandom(PART_BYTES + 4321)
    source = tmp_path / "lost-answer.csv"
    source.write_bytes(content)
    deployment = uuid.uuid4()
    completes = 0

    def first_complete(request: web.BaseRequest) -> bool:
        nonlocal completes
        completes += _completes(request)
        return _completes(request) and completes == 1

    def later_complete(request: web.BaseRequest) -> bool:
        return _completes(request) and completes >= 1

    store = FlakyStore(
        seaweedfs.endpoint_url,
        refuses=lambda _: False,
        loses=first_complete,
        forgets=later_complete,
    )
    async with store.running() as endpoint_url:
        flaky = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with open_storage(flaky, deployment) as storage:
            stored = await storage.publish(source, "lost-answer.csv")

    assert completes == 1
    assert [what.endswith(("answer lost)", "(no such upload)")) for what in store.refused] == [
        True,
        True,
    ]
    assert stored == StoredFile(f"{deployment}/lost-answer.csv", len(content))
    assert await _stored_bytes(seaweedfs, f"{_prefix(settings)}/{stored.key}") == content
    assert await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings)) == []


@pytest.mark.parametrize("size", [1000, PART_BYTES + 1000])
async def test_an_object_that_cannot_be_checked_once_stored_is_removed(
    settings: Settings, seaweedfs: SeaweedFS, tmp_path: Path, size: int
) -> None:
    source = tmp_path / "unchecked.csv"
    source.write_bytes(os.urandom(size))

    def checks(request: web.BaseRequest) -> bool:
        return request.method == "HEAD"

    # A file of one part is checked by its PUT's answer: losing it leaves the object stored.
    def puts_whole(request: web.BaseRequest) -> bool:
        return request.method == "PUT" and "partNumber" not in request.query

    store = FlakyStore(seaweedfs.endpoint_url, refuses=checks, loses=puts_whole)
    async with store.running() as endpoint_url:
        flaky = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with open_storage(flaky, uuid.uuid4()) as storage:
            with pytest.raises(OSError, match="could not"):
                await storage.publish(source, "unchecked.csv")

    assert store.refused
    assert await object_keys(seaweedfs, TEST_BUCKET, _prefix(settings)) == []
    assert await unfinished_uploads(seaweedfs, TEST_BUCKET, _prefix(settings)) == []


@pytest.mark.parametrize("cut_offs", [1, 4])
async def test_a_retrieval_cut_off_mid_way_is_tried_again_then_an_os_error(
    settings: Settings, seaweedfs: SeaweedFS, tmp_path: Path, cut_offs: int
) -> None:
    content = os.urandom(3 * 1024**2)
    deployment = uuid.uuid4()
    async with open_storage(settings, deployment) as storage:
        stored = await storage.publish(_written(tmp_path / "upload.csv", content), "upload.csv")
    gets = 0

    def cuts(request: web.BaseRequest) -> bool:
        nonlocal gets
        gets += request.method == "GET"
        return request.method == "GET" and gets <= cut_offs

    store = FlakyStore(seaweedfs.endpoint_url, refuses=lambda _: False, cuts=cuts)
    target = tmp_path / "retrieved.csv"
    async with store.running() as endpoint_url:
        flaky = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with open_storage(flaky, deployment) as storage:
            if cut_offs < 4:
                assert await storage.retrieve(stored.key, target) is True
                assert target.read_bytes() == content
            else:
                with pytest.raises(OSError, match="after 4 tries: the download was cut off"):
                    await storage.retrieve(stored.key, target)

    assert len(store.refused) == cut_offs


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


async def test_small_files_go_up_whole_in_the_same_few_slots_as_parts(
    settings: Settings, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    contents = [os.urandom(size) for size in (0, 1, *[2 * 1024**2 + n for n in range(8)])]
    deployment = uuid.uuid4()
    store = FlakyStore(seaweedfs.endpoint_url, refuses=lambda _: False)
    async with store.running() as endpoint_url:
        watched = settings.model_copy(update={"s3_endpoint_url": endpoint_url})
        async with open_storage(watched, deployment) as storage:
            stored = await asyncio.gather(
                *(
                    storage.publish(_written(tmp_path / f"{n}.csv", content), f"{n}.csv")
                    for n, content in enumerate(contents)
                )
            )

    assert [file.size for file in stored] == [len(content) for content in contents]
    assert store.most_parts_in_flight == PARTS_IN_FLIGHT
    for file, content in zip(stored, contents, strict=True):
        assert await _stored_bytes(seaweedfs, f"{_prefix(settings)}/{file.key}") == content
