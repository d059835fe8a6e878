"""Uploading a file to import over real HTTP: what is stored, what is refused, what is listed."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from exporter.api.import_schemas import ImportTaskOut
from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from settings import Settings
from tests.conftest import SECRET, add_account
from tests.imports import (
    ACCOUNTS_CSV,
    IMPORTS,
    form,
    imported,
    stored_files,
    upload,
    uploads_in_progress,
    xlsx_bytes,
)
from tests.support import ApiUser, statuses, wait_until


async def test_an_upload_is_a_pending_import_at_its_location_with_its_file_stored_under_its_id(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    status, task, headers = await upload(
        admin, form(mode="apply", on_error="skip", file_name="C:\\fakepath\\账号.csv")
    )

    assert status == 202, task
    assert headers["Location"] == f"{IMPORTS}/{task['id']}"
    assert task["type"] == "account"
    assert task["format"] == "csv"
    assert task["status"] == "pending"
    assert (task["mode"], task["on_error"]) == ("apply", "skip")
    assert (task["file_name"], task["file_size"]) == ("账号.csv", len(ACCOUNTS_CSV))
    assert (task["counts"], task["errors"], task["has_report"]) == (None, [], False)
    assert task["report_url"] is None
    assert stored_files(settings) == [f"{task['id']}.upload.csv"]
    assert uploads_in_progress(settings) == []
    kind = await db.fetchval("SELECT kind FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert kind == "import"


async def test_the_format_is_judged_from_the_bytes_not_the_name(admin: ApiUser) -> None:
    workbook = xlsx_bytes([["用户名", "昵称"], ["zhang", "张三"]])

    task = await imported(admin, form(workbook, file_name="accounts.csv"))

    assert task["format"] == "xlsx"


async def test_a_shown_import_has_its_history_and_the_list_shows_it_without(
    admin: ApiUser,
) -> None:
    task = await imported(admin)

    status, shown = await admin.get(f"{IMPORTS}/{task['id']}")
    listed_status, page = await admin.get(IMPORTS)

    assert status == 200
    assert statuses(shown) == ["pending"]
    assert listed_status == 200
    assert page["total"] == 1
    assert page["items"][0]["id"] == task["id"]
    assert page["items"][0]["history"] is None


async def test_imports_and_exports_are_listed_apart(admin: ApiUser) -> None:
    export = await admin.create("account", "csv")
    task = await imported(admin)

    _, imports = await admin.get(IMPORTS)
    _, exports = await admin.get("/api/export-tasks")
    import_as_export, _ = await admin.get(f"/api/export-tasks/{task['id']}")
    export_as_import, _ = await admin.get(f"{IMPORTS}/{export['id']}")

    assert [item["id"] for item in imports["items"]] == [task["id"]]
    assert [item["id"] for item in exports["items"]] == [export["id"]]
    assert (import_as_export, export_as_import) == (404, 404)


async def test_the_list_filters_by_status_and_type(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    accounts = await imported(admin)
    roles = await imported(admin, form("名称,描述\r\nops,运维\r\n".encode(), type="role"))
    await db.execute("UPDATE tasks SET status = 'failed' WHERE id = $1", uuid.UUID(roles["id"]))

    _, failed = await admin.get(f"{IMPORTS}?status=failed")
    _, account_imports = await admin.get(f"{IMPORTS}?type=account")
    unknown, refused = await admin.get(f"{IMPORTS}?type=no_such_type")

    assert [item["id"] for item in failed["items"]] == [roles["id"]]
    assert [item["id"] for item in account_imports["items"]] == [accounts["id"]]
    assert unknown == 422
    assert refused["error"]["details"][0]["field"] == "type"


# One import in each state, with what the worker writes in that state.
OUTCOME = (
    '{"counts": {"created": 1, "updated": 0, "unchanged": 0, "rejected": 1},'
    ' "errors": [{"sheet": null, "row": 3, "column": "状态", "code": "not_allowed",'
    ' "message": "not one of 正常, 禁用, 锁定", "params": {"value": "x \\"y\\""}}],'
    ' "applied": true}'
)
STATES = {
    "pending": "",
    "running": "status = 'running', started_at = now(), attempts = 1, rows_done = 1,"
    " rows_total = 2, worker_id = 'w-1', cancel_requested = true",
    "completed": "status = 'completed', started_at = now(), finished_at = now(), attempts = 1,"
    f" file_name = '账号 \"导入\"报告.xlsx', file_key = 'a/b.xlsx', file_size = 10,"
    f" outcome = '{OUTCOME}'",
    "failed": "status = 'failed', started_at = now(), finished_at = now(), attempts = 3,"
    " error = E'1 rows rejected;\\n nothing was imported', error_code = 'rows_rejected',"
    f" error_params = '{{\"rejected\": 1}}', outcome = '{OUTCOME}'",
}


async def test_each_listed_import_equals_its_own_answer_in_every_state(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    ids = {}
    for number, (state, changes) in enumerate(STATES.items()):
        task = await imported(admin, form(f"用户名\r\nuser{number}\r\n".encode()))
        if changes:
            await db.execute(f"UPDATE tasks SET {changes} WHERE id = $1", uuid.UUID(task["id"]))
        ids[state] = task["id"]

    status, page = await admin.get(IMPORTS)

    assert status == 200
    assert page["total"] == len(STATES)
    for item in page["items"]:
        own = (await admin.get(f"{IMPORTS}/{item['id']}"))[1]
        assert list(item) == list(ImportTaskOut.model_fields)
        assert ImportTaskOut.model_validate(item) == ImportTaskOut.model_validate(
            {**own, "history": None, "webhooks": None}
        )
    completed = next(item for item in page["items"] if item["id"] == ids["completed"])
    assert completed["has_report"] is True
    assert completed["report_url"] == f"{IMPORTS}/{ids['completed']}/report"
    assert completed["counts"] == {"created": 1, "updated": 0, "unchanged": 0, "rejected": 1}
    assert completed["errors"][0]["row"] == 3
    assert completed["file_name"] == "accounts.csv"


@pytest.fixture
async def small_uploads(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The API with uploads capped at 100 KiB (and request bodies at 64 KiB, the default)."""
    capped = settings.model_copy(update={"max_upload_bytes": 100 * 1024})
    async with TestClient(TestServer(create_app(capped))) as test_client:
        yield test_client


async def test_an_upload_past_the_limit_is_refused_with_413_and_nothing_kept(
    small_uploads: TestClient[Any, Any], admin: ApiUser, settings: Settings
) -> None:
    user = ApiUser(small_uploads, admin.headers["Authorization"].removeprefix("Bearer "))
    too_large = "用户名\r\n".encode() + b"someone\r\n" * 12_000

    status, body, _ = await upload(user, form(too_large))

    assert status == 413, body
    assert body["error"]["code"] == "upload_too_large"
    assert body["error"]["params"] == {"limit": 100 * 1024}
    assert not settings.storage_dir.exists() or stored_files(settings) == []
    assert uploads_in_progress(settings) == []


async def test_an_upload_larger_than_a_request_body_may_be_is_taken(
    small_uploads: TestClient[Any, Any], admin: ApiUser, settings: Settings
) -> None:
    user = ApiUser(small_uploads, admin.headers["Authorization"].removeprefix("Bearer "))
    larger_than_a_body = "用户名\r\n".encode() + b"someone\r\n" * 9_000
    assert settings.max_body_bytes < len(larger_than_a_body) < 100 * 1024

    status, body, _ = await upload(user, form(larger_than_a_body))

    assert status == 202, body
    assert body["file_size"] == len(larger_than_a_body)


async def test_binary_garbage_named_xlsx_is_refused_with_415(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    garbage = bytes(range(256)) * 64

    status, body, _ = await upload(admin, form(garbage, file_name="accounts.xlsx"))

    assert status == 415, body
    assert body["error"]["code"] == "unsupported_file"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    assert uploads_in_progress(settings) == []


async def test_a_zip_that_is_no_workbook_is_refused_with_415(admin: ApiUser) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")

    status, body, _ = await upload(admin, form(buffer.getvalue(), file_name="a.xlsx"))

    assert status == 415, body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (form(None), "file"),
        (form(type=""), "type"),
        (form(type="no_such_type"), "type"),
        (form(mode="dry-run"), "mode"),
        (form(on_error="ignore"), "on_error"),
        (form(colour="red"), "colour"),
    ],
    ids=["no-file", "empty-type", "unknown-type", "bad-mode", "bad-on-error", "unknown-field"],
)
async def test_a_missing_or_bad_field_is_refused_with_422_naming_it(
    admin: ApiUser, settings: Settings, data: FormData, field: str
) -> None:
    status, body, _ = await upload(admin, data)

    assert status == 422, body
    assert [detail["field"] for detail in body["error"]["details"]] == [field]
    assert uploads_in_progress(settings) == []


async def test_a_form_without_a_type_is_refused_naming_the_type(admin: ApiUser) -> None:
    data = FormData()
    data.add_field("file", ACCOUNTS_CSV, filename="a.csv")

    status, body, _ = await upload(admin, data)

    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "type"


async def test_a_field_sent_twice_is_refused(admin: ApiUser) -> None:
    data = form()
    data.add_field("file", ACCOUNTS_CSV, filename="again.csv")

    status, body, _ = await upload(admin, data)

    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "file"


async def test_a_body_that_is_not_a_form_is_refused_with_415(admin: ApiUser) -> None:
    response = await admin.client.post(
        IMPORTS, json={"type": "account", "file": "x"}, headers=admin.headers
    )

    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_a_form_that_breaks_off_is_refused_and_its_file_removed(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\naccount\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    ).encode() + ACCOUNTS_CSV  # and no closing boundary

    response = await admin.client.post(
        IMPORTS,
        data=body,
        headers={**admin.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status == 400
    assert "incomplete" in (await response.json())["error"]["message"]
    assert uploads_in_progress(settings) == []
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_client_that_leaves_mid_upload_leaves_no_file_behind(
    client: TestClient[Any, Any], admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    boundary = "b0undary"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\naccount\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        "用户名\r\n"
    ).encode() + b"someone\r\n" * 50_000
    head = (
        f"POST {IMPORTS} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {admin.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(start) * 4}\r\n\r\n"
    ).encode()
    port = client.server.port
    assert port is not None
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + start)
    await writer.drain()

    async def receiving() -> bool:
        return bool(uploads_in_progress(settings))

    await wait_until(receiving, what="the server to receive the upload")
    writer.close()
    await writer.wait_closed()

    async def removed() -> bool:
        return not uploads_in_progress(settings)

    await wait_until(removed, what="the partial upload to be removed")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


@pytest.fixture
async def impatient(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The API waiting at most half a second for the next chunk of a body."""
    quick = settings.model_copy(update={"body_timeout_s": 0.5})
    async with TestClient(TestServer(create_app(quick))) as test_client:
        yield test_client


async def test_an_upload_that_pauses_too_long_gets_408_and_leaves_no_file(
    impatient: TestClient[Any, Any], admin: ApiUser, settings: Settings
) -> None:
    boundary = "b0undary"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\naccount\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    ).encode() + ACCOUNTS_CSV
    head = (
        f"POST {IMPORTS} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {admin.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(start) + 100}\r\n\r\n"
    ).encode()
    port = impatient.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + start)  # and nothing more
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert uploads_in_progress(settings) == []


@pytest.mark.parametrize(
    "permissions",
    [["account:read", "import:create"], ["account:write"], ["role:write", "import:create"]],
    ids=["read-only", "no-import-create", "other-type"],
)
async def test_an_import_needs_the_types_write_permission_and_import_create(
    client: TestClient[Any, Any],
    db: asyncpg.Connection[Any],
    settings: Settings,
    permissions: list[str],
) -> None:
    user = ApiUser(client, issue_token(SECRET, await add_account(db, "clerk", permissions)))

    status, body, _ = await upload(user, form())

    assert status == 403, body
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0
    assert uploads_in_progress(settings) == []


async def test_an_account_with_both_permissions_may_import(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    clerk = await add_account(db, "clerk", ["account:write", "import:create"])
    user = ApiUser(client, issue_token(SECRET, clerk))

    status, body, _ = await upload(user, form())

    assert status == 202, body


async def test_an_idempotency_key_replays_its_import_and_refuses_another_file(
    admin: ApiUser, settings: Settings
) -> None:
    first = await imported(admin, **{"Idempotency-Key": "k-1"})

    again, replayed, _ = await upload(admin, form(), **{"Idempotency-Key": "k-1"})
    other, refused, _ = await upload(
        admin, form("用户名\r\nwang\r\n".encode()), **{"Idempotency-Key": "k-1"}
    )

    assert (again, replayed["id"]) == (200, first["id"])
    assert other == 422
    assert refused["error"]["code"] == "idempotency_key_reused"
    assert stored_files(settings) == [f"{first['id']}.upload.csv"]


async def test_the_same_file_sent_twice_while_unfinished_is_one_import(
    admin: ApiUser, settings: Settings
) -> None:
    first = await imported(admin)

    status, second, headers = await upload(admin, form(file_name="renamed.csv"))
    other_mode = await imported(admin, form(mode="apply"))

    assert (status, second["id"]) == (200, first["id"])
    assert headers["Location"] == f"{IMPORTS}/{first['id']}"
    assert other_mode["id"] != first["id"]
    assert stored_files(settings) == sorted(
        [f"{first['id']}.upload.csv", f"{other_mode['id']}.upload.csv"]
    )


async def test_the_quota_of_unfinished_tasks_counts_imports_and_keeps_no_upload(
    admin: ApiUser, settings: Settings
) -> None:
    for number in range(settings.max_active_per_user):
        await imported(admin, form(f"用户名\r\nuser{number}\r\n".encode()))

    status, body, headers = await upload(admin, form("用户名\r\nlast\r\n".encode()))

    assert status == 429, body
    assert "Retry-After" in headers
    assert len(stored_files(settings)) == settings.max_active_per_user


async def test_deleting_an_import_removes_its_upload(admin: ApiUser, settings: Settings) -> None:
    task = await imported(admin)

    response = await admin.client.delete(f"{IMPORTS}/{task['id']}", headers=admin.headers)
    status, _ = await admin.get(f"{IMPORTS}/{task['id']}")

    assert response.status == 204
    assert status == 404
    assert stored_files(settings) == []


async def test_a_cancelled_import_retried_gets_an_upload_of_its_own(
    admin: ApiUser, settings: Settings
) -> None:
    task = await imported(admin, form(mode="apply"))
    cancelled = await admin.client.post(f"{IMPORTS}/{task['id']}/cancel", headers=admin.headers)
    cancelled_again = await admin.client.post(
        f"{IMPORTS}/{task['id']}/cancel", headers=admin.headers
    )

    retried = await admin.client.post(f"{IMPORTS}/{task['id']}/retry", headers=admin.headers)
    new = await retried.json()
    await admin.client.delete(f"{IMPORTS}/{task['id']}", headers=admin.headers)

    assert (await cancelled.json())["status"] == "cancelled"
    assert cancelled_again.status == 409
    assert retried.status == 202, new
    assert retried.headers["Location"] == f"{IMPORTS}/{new['id']}"
    assert (new["mode"], new["format"], new["file_name"]) == ("apply", "csv", "accounts.csv")
    assert new["file_size"] == len(ACCOUNTS_CSV)
    assert stored_files(settings) == [f"{new['id']}.upload.csv"]
    stored = next(settings.storage_dir.glob(f"*/{new['id']}.upload.csv"))
    assert stored.read_bytes() == ACCOUNTS_CSV


async def test_a_pending_import_cannot_be_retried(admin: ApiUser) -> None:
    task = await imported(admin)

    response = await admin.client.post(f"{IMPORTS}/{task['id']}/retry", headers=admin.headers)

    assert response.status == 409


async def test_an_import_whose_upload_expired_is_retried_with_410(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    task = await imported(admin)
    await db.execute(
        "UPDATE tasks SET status = 'failed', finished_at = now(), upload_key = NULL WHERE id = $1",
        uuid.UUID(task["id"]),
    )

    response = await admin.client.post(f"{IMPORTS}/{task['id']}/retry", headers=admin.headers)

    assert response.status == 410
    assert (await response.json())["error"]["code"] == "file_gone"


async def test_an_import_whose_upload_is_gone_from_storage_is_retried_with_410(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    task = await imported(admin)
    await db.execute(
        "UPDATE tasks SET status = 'failed', finished_at = now() WHERE id = $1",
        uuid.UUID(task["id"]),
    )
    next(settings.storage_dir.glob(f"*/{task['id']}.upload.csv")).unlink()

    response = await admin.client.post(f"{IMPORTS}/{task['id']}/retry", headers=admin.headers)

    assert response.status == 410
    assert uploads_in_progress(settings) == []


async def report(user: ApiUser, task_id: str) -> tuple[int, bytes, dict[str, str]]:
    response = await user.client.get(f"{IMPORTS}/{task_id}/report", headers=user.headers)
    return response.status, await response.read(), dict(response.headers)


async def test_a_report_is_not_ready_until_the_import_finished(admin: ApiUser) -> None:
    task = await imported(admin)

    status, body, _ = await report(admin, task["id"])

    assert status == 409, body


async def test_a_finished_import_without_rejected_rows_has_no_report(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    task = await imported(admin)
    await db.execute(
        "UPDATE tasks SET status = 'completed', finished_at = now() WHERE id = $1",
        uuid.UUID(task["id"]),
    )

    status, body, _ = await report(admin, task["id"])

    assert status == 404, body


async def test_a_report_downloads_as_an_xlsx_attachment(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    task = await imported(admin)
    workbook = xlsx_bytes([["用户名", "错误原因"], ["zhang", "状态: not allowed"]])
    deployment = next(settings.storage_dir.glob(f"*/{task['id']}.upload.csv")).parent
    (deployment / f"{task['id']}.report.xlsx").write_bytes(workbook)
    await db.execute(
        "UPDATE tasks SET status = 'failed', finished_at = now(), file_name = '账号导入报告.xlsx',"
        " file_key = $2, file_size = $3 WHERE id = $1",
        uuid.UUID(task["id"]),
        f"{deployment.name}/{task['id']}.report.xlsx",
        len(workbook),
    )

    status, content, headers = await report(admin, task["id"])

    assert status == 200
    assert content == workbook
    assert headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%E8%B4%A6" in headers["Content-Disposition"]
    assert "no-store" in headers["Cache-Control"]


async def test_another_users_import_is_not_found(admin: ApiUser, other_user: ApiUser) -> None:
    task = await imported(admin)

    shown, _ = await other_user.get(f"{IMPORTS}/{task['id']}")
    deleted = await other_user.client.delete(f"{IMPORTS}/{task['id']}", headers=other_user.headers)
    status, page = await other_user.get(IMPORTS)

    assert (shown, deleted.status) == (404, 404)
    assert (status, page["total"]) == (200, 0)


RAW_BODY = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="type"\r\n'
    b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n"
    b"account\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    b"username\r\nzz\r\n"
    b"--XyZ--\r\n"
)


async def test_a_multipart_content_type_without_a_boundary_is_a_client_error(
    admin: ApiUser,
) -> None:
    response = await admin.client.post(
        "/api/import-tasks",
        data=RAW_BODY,
        headers={**admin.headers, "Content-Type": "multipart/form-data"},
    )
    assert 400 <= response.status < 500, (response.status, await response.text())


async def test_a_form_field_in_an_unknown_charset_is_a_client_error(admin: ApiUser) -> None:
    response = await admin.client.post(
        "/api/import-tasks",
        data=RAW_BODY,
        headers={**admin.headers, "Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert 400 <= response.status < 500, (response.status, await response.text())
