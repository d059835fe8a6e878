"""The audit trail over real HTTP: each action's row and its fields, the bytes a download sent
(whole, a range, cut short by its client), the count a task shows, and GET /api/audit-events."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.seaweedfs import SeaweedFS
from settings import Settings
from tests.conftest import SECRET, account_id, add_account, on_s3
from tests.imports import form, import_finished, imported
from tests.support import ApiUser, wait_until
from tests.workers import running_worker

EVENTS = "/api/audit-events"
BROWSER = "Mozilla/5.0 (audit test)"


async def rows(db: asyncpg.Connection[Any], action: str) -> list[dict[str, Any]]:
    """The events of ``action``, oldest first."""
    records = await db.fetch("SELECT * FROM audit_events WHERE action = $1 ORDER BY id", action)
    # Task ids as the API writes them, to compare with its answers.
    return [
        {
            **record,
            "task_id": record["task_id"] and str(record["task_id"]),
            "detail": json.loads(record["detail"]),
        }
        for record in records
    ]


async def recorded(db: asyncpg.Connection[Any], action: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` events of ``action`` once they are all there: a download's row is appended
    after its body is sent, so its client may ask before it is."""

    async def probe() -> list[dict[str, Any]] | None:
        found = await rows(db, action)
        assert len(found) <= count, found
        return found if len(found) == count else None

    return await wait_until(probe, what=f"{count} {action} events")


async def completed_export(admin: ApiUser) -> dict[str, Any]:
    task = await admin.finished((await admin.create("account", "csv"))["id"])
    assert task["status"] == "completed", task
    return task


async def test_a_download_is_recorded_with_who_where_what_and_the_bytes_sent(
    admin: ApiUser, db: asyncpg.Connection[Any], worker: Worker
) -> None:
    task = await completed_export(admin)
    url = f"/api/export-tasks/{task['id']}/download"

    response = await admin.client.get(
        url, headers={**admin.headers, "User-Agent": BROWSER + "x" * 500, "X-Request-ID": "dl-1"}
    )
    content = await response.read()
    head = await admin.client.head(url, headers=admin.headers)

    assert response.status == 200 and head.status == 200
    assert len(await rows(db, "export.download")) == 1  # a HEAD downloads nothing: no row
    [event] = await recorded(db, "export.download", 1)
    assert event["account_id"] == await account_id(db, "admin")
    assert event["outcome"] == "ok" and event["error_code"] is None
    assert event["address"] == "127.0.0.1"
    assert event["user_agent"] == (BROWSER + "x" * 500)[:256]
    assert (event["task_id"], event["task_kind"], event["task_type"]) == (
        task["id"],
        "export",
        "account",
    )
    assert event["bytes_sent"] == len(content) > 0
    assert event["request_id"] == "dl-1"
    assert event["detail"] == {"status": 200}
    shown = await admin.task(task["id"])
    assert shown["download_count"] == 1
    assert datetime.fromisoformat(shown["last_download_at"]) == event["at"]
    _, page = await admin.get("/api/export-tasks")
    [listed] = [item for item in page["items"] if item["id"] == task["id"]]
    assert listed["download_count"] == 1
    assert datetime.fromisoformat(listed["last_download_at"]) == event["at"]


async def test_a_range_request_records_the_bytes_of_its_range_and_one_past_the_end_is_refused(
    admin: ApiUser, db: asyncpg.Connection[Any], worker: Worker
) -> None:
    task = await completed_export(admin)
    url = f"/api/export-tasks/{task['id']}/download"

    first = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=0-9"})
    past = await admin.client.get(url, headers={**admin.headers, "Range": "bytes=99999999-"})

    assert (first.status, len(await first.read()), past.status) == (206, 10, 416)
    # The 206's row is written once its body has gone, which may be after the 416's: taken by
    # outcome ("ok" < "refused"), not by order.
    ranged, refused = sorted(await recorded(db, "export.download", 2), key=lambda r: r["outcome"])
    assert ranged["outcome"] == "ok" and ranged["bytes_sent"] == 10
    assert ranged["detail"] == {"status": 206, "range": "bytes=0-9"}
    assert refused["outcome"] == "refused" and refused["error_code"] == "range_not_satisfiable"
    assert refused["bytes_sent"] == 0
    assert (await admin.task(task["id"]))["download_count"] == 1


async def test_a_download_its_client_cuts_short_records_what_was_sent(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    worker: Worker,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = await completed_export(admin)
    # The export's file replaced by a large one, so that the client leaves long before its end.
    key = await db.fetchval("SELECT file_key FROM tasks WHERE id = $1", task["id"])
    assert settings.storage_dir is not None
    size = 64 * 1024**2
    (settings.storage_dir / key).write_bytes(os.urandom(size))
    url = admin.client.make_url(f"/api/export-tasks/{task['id']}/download")

    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"GET {url.path} HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Authorization: {admin.headers['Authorization']}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    received = len(await reader.readexactly(1024**2))
    writer.transport.abort()  # a reset, as a closed tab or a killed curl leaves it

    [event] = await recorded(db, "export.download", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert event["outcome"] == "aborted"
    assert received <= event["bytes_sent"] < size
    assert (await admin.task(task["id"]))["download_count"] == 0
    # The client's leaving is no error of the server's.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_cancel_retry_and_delete_of_an_export_are_recorded_allowed_or_refused(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    task_id = (await admin.create("account", "xlsx"))["id"]  # no worker: it stays pending
    base = f"/api/export-tasks/{task_id}"
    client, headers = admin.client, admin.headers

    cancelled = await client.post(f"{base}/cancel", headers=headers)
    again = await client.post(f"{base}/cancel", headers=headers)
    retried = await client.post(f"{base}/retry", headers=headers)
    deleted = await client.delete(base, headers=headers)
    gone = await client.delete(base, headers=headers)

    new_id = (await retried.json())["id"]
    assert [r.status for r in (cancelled, again, retried, deleted, gone)] == [
        200,
        409,
        202,
        204,
        404,
    ]
    ok_cancel, refused_cancel = await rows(db, "export.cancel")
    [retry] = await rows(db, "export.retry")
    ok_delete, refused_delete = await rows(db, "export.delete")
    assert (ok_cancel["outcome"], ok_cancel["task_type"]) == ("ok", "account")
    assert (refused_cancel["outcome"], refused_cancel["error_code"]) == ("refused", "invalid_state")
    assert retry["outcome"] == "ok" and retry["detail"] == {"retried_as": new_id}
    assert (ok_delete["outcome"], ok_delete["task_type"]) == ("ok", "account")
    assert (refused_delete["outcome"], refused_delete["error_code"]) == ("refused", "not_found")
    every = [ok_cancel, refused_cancel, retry, ok_delete, refused_delete]
    assert {(e["task_id"], e["task_kind"]) for e in every} == {(task_id, "export")}
    assert {e["account_id"] for e in every} == {await account_id(db, "admin")}


async def test_an_import_apply_is_recorded_where_it_was_asked_and_where_its_rows_were_written(
    admin: ApiUser, db: asyncpg.Connection[Any], worker: Worker
) -> None:
    checked = await imported(admin, form(mode="validate"))  # a validation writes nothing
    applied = await imported(admin, form(mode="apply"), **{"X-Request-ID": "apply-1"})
    await import_finished(admin, checked["id"])
    task = await import_finished(admin, applied["id"])
    report = await admin.client.get(
        f"/api/import-tasks/{applied['id']}/report", headers=admin.headers
    )
    deleted = await admin.client.delete(f"/api/import-tasks/{applied['id']}", headers=admin.headers)

    [asked] = await rows(db, "import.apply")
    [written] = await rows(db, "import.applied")
    [refused_report] = await rows(db, "import.report_download")
    [delete] = await rows(db, "import.delete")
    admin_id = await account_id(db, "admin")
    assert task["status"] == "completed", task
    assert (report.status, deleted.status) == (404, 204)
    assert asked["outcome"] == "ok" and asked["address"] == "127.0.0.1"
    assert (asked["task_id"], asked["task_kind"], asked["task_type"]) == (
        applied["id"],
        "import",
        "account",
    )
    assert written["outcome"] == "ok" and written["address"] is None
    assert written["task_id"] == applied["id"] and written["account_id"] == admin_id
    assert written["detail"] == {"counts": task["counts"]}
    assert asked["request_id"] == written["request_id"] == "apply-1"
    assert refused_report["error_code"] == "not_found"
    assert delete["outcome"] == "ok" and delete["task_type"] == "account"


async def test_sign_ins_are_recorded_the_failed_ones_with_the_username_tried_and_no_account(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    await add_account(db, "signer", [], password="right-password")
    # One failed attempt from an address, and the next is refused.
    limited = settings.model_copy(update={"sign_ins_per_address": 1})
    async with TestClient(TestServer(create_app(limited))) as client:
        statuses = []
        for password in ("right-password", "wrong-password", "right-password"):
            response = await client.post(
                "/api/session",
                json={"username": "signer", "password": password},
                headers={"User-Agent": BROWSER},
            )
            statuses.append(response.status)

    signed_in, wrong, throttled = await rows(db, "sign_in")
    assert statuses == [200, 401, 429]
    assert signed_in["outcome"] == "ok"
    assert signed_in["account_id"] == await account_id(db, "signer")
    assert (wrong["outcome"], wrong["error_code"]) == ("refused", "unauthorized")
    assert (throttled["outcome"], throttled["error_code"]) == ("refused", "too_many_sign_ins")
    for failed in (wrong, throttled):
        assert failed["username"] == "signer" and failed["account_id"] is None
    assert {e["user_agent"] for e in (signed_in, wrong, throttled)} == {BROWSER}
    assert {e["address"] for e in (signed_in, wrong, throttled)} == {"127.0.0.1"}


async def test_the_client_address_is_the_one_a_trusted_proxy_forwards(
    settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    behind_proxy = settings.model_copy(update={"trusted_proxies": (ip_network("127.0.0.1/32"),)})
    async with TestClient(TestServer(create_app(behind_proxy))) as client:
        await client.post(
            "/api/session",
            json={"username": "nobody", "password": "x"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )

    [event] = await rows(db, "sign_in")
    assert event["address"] == "203.0.113.9" and event["username"] == "nobody"


def _iso(moment: datetime) -> str:
    return quote(moment.isoformat())


async def _auditor(admin: ApiUser, db: asyncpg.Connection[Any]) -> ApiUser:
    return ApiUser(
        admin.client, issue_token(SECRET, await add_account(db, "reader", ["audit:read"]))
    )


async def test_audit_events_are_listed_newest_first_filtered_and_paged(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    auditor = await _auditor(admin, db)
    first = (await admin.create("account", "xlsx"))["id"]
    second = (await admin.create("account", "csv"))["id"]
    for task_id in (first, second, first):
        await admin.client.post(f"/api/export-tasks/{task_id}/cancel", headers=admin.headers)
    await admin.client.delete(f"/api/export-tasks/{second}", headers=admin.headers)
    admin_id = await account_id(db, "admin")
    ids = [r["id"] for r in await db.fetch("SELECT id FROM audit_events ORDER BY id DESC")]

    status, everything = await auditor.get(f"{EVENTS}?account={admin_id}")
    _, of_first = await auditor.get(f"{EVENTS}?task={first}&action=export.cancel")
    _, page_one = await auditor.get(f"{EVENTS}?limit=3")
    _, page_two = await auditor.get(f"{EVENTS}?limit=3&before={page_one['next_before']}")
    now = datetime.now(UTC)
    earlier, later = _iso(now - timedelta(hours=1)), _iso(now + timedelta(hours=1))
    _, in_range = await auditor.get(f"{EVENTS}?from={earlier}&to={later}")
    _, none_yet = await auditor.get(f"{EVENTS}?from={later}")

    assert status == 200
    assert [e["id"] for e in everything["items"]] == ids and everything["next_before"] is None
    assert [(e["action"], e["outcome"]) for e in everything["items"]] == [
        ("export.delete", "ok"),
        ("export.cancel", "refused"),
        ("export.cancel", "ok"),
        ("export.cancel", "ok"),
    ]
    assert [e["outcome"] for e in of_first["items"]] == ["refused", "ok"]
    assert {e["task_id"] for e in of_first["items"]} == {first}
    assert [e["id"] for e in page_one["items"]] == ids[:3] and page_one["next_before"] == ids[2]
    assert [e["id"] for e in page_two["items"]] == ids[3:] and page_two["next_before"] is None
    assert [e["id"] for e in in_range["items"]] == ids
    assert none_yet == {"items": [], "next_before": None}


async def test_audit_events_need_audit_read_and_refuse_bad_filters_by_name(
    admin: ApiUser, other_user: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    no_role = ApiUser(admin.client, issue_token(SECRET, await add_account(db, "plain", [])))
    auditor = await _auditor(admin, db)

    forbidden, body = await no_role.get(EVENTS)
    allowed, _ = await other_user.get(EVENTS)  # "*" grants audit:read too
    problems = {}
    for query in (
        "action=export.peek",
        "task=not-a-uuid",
        "from=2026-01-01T00:00:00",  # no offset: which zone would be a guess
        "to=1700000000",  # seconds since 1970: no ISO 8601
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "limit=0",
        "before=0",
        "account=x",
        "user=admin",
    ):
        status, answer = await auditor.get(f"{EVENTS}?{query}")
        assert status == 422, (query, answer)
        [detail] = answer["error"]["details"]
        problems[query.split("=")[0] if "&" not in query else "range"] = (
            detail["field"],
            detail["code"],
        )

    assert (forbidden, body["error"]["code"], allowed) == (403, "forbidden", 200)
    assert body["error"]["params"] == {"permission": "audit:read"}
    assert problems == {
        "action": ("action", "enum"),
        "task": ("task", "uuid_parsing"),
        "from": ("from", "timezone_aware"),
        "to": ("to", "value_error"),
        "range": ("to", "range_reversed"),
        "limit": ("limit", "greater_than_equal"),
        "before": ("before", "greater_than_equal"),
        "account": ("account", "int_parsing"),
        "user": ("user", "extra_forbidden"),
    }


async def test_a_failed_audit_write_is_logged_and_the_action_still_answers(
    admin: ApiUser, db: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    task_id = (await admin.create("account", "xlsx"))["id"]
    # The table gone from under the API: every insert fails.
    await db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
    try:
        response = await admin.client.post(
            f"/api/export-tasks/{task_id}/cancel", headers=admin.headers
        )
    finally:
        await db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")

    assert response.status == 200
    [logged] = [r for r in caplog.records if r.name == "exporter.audit"]
    assert logged.levelname == "ERROR" and "export.cancel" in logged.getMessage()


async def test_an_import_cancelled_and_retried_in_apply_mode_records_the_retry_and_its_apply(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    first = await imported(admin, form(mode="apply"))  # no worker: it stays pending
    base = f"/api/import-tasks/{first['id']}"
    cancelled = await admin.client.post(f"{base}/cancel", headers=admin.headers)
    retried = await admin.client.post(f"{base}/retry", headers=admin.headers)

    second = await retried.json()
    [cancel] = await rows(db, "import.cancel")
    [retry] = await rows(db, "import.retry")
    created, again = await rows(db, "import.apply")
    assert (cancelled.status, retried.status) == (200, 202)
    assert (cancel["outcome"], cancel["task_id"], cancel["task_kind"]) == (
        "ok",
        first["id"],
        "import",
    )
    assert retry["task_id"] == first["id"] and retry["detail"] == {"retried_as": second["id"]}
    assert created["task_id"] == first["id"] and created["detail"] == {}
    assert again["task_id"] == second["id"] and again["detail"] == {"retry_of": first["id"]}


async def test_downloads_from_the_store_record_bytes_streamed_and_a_redirect_records_none(
    settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str, db: asyncpg.Connection[Any]
) -> None:
    on_store = on_s3(settings, seaweedfs, s3_storage_url)
    redirecting = on_store.model_copy(update={"download_redirect": True})
    token = issue_token(SECRET, await account_id(db, "admin"))
    async with (
        running_worker(on_store),
        TestClient(TestServer(create_app(on_store))) as streaming,
        TestClient(TestServer(create_app(redirecting))) as redirected,
    ):
        user = ApiUser(streaming, token)
        task = await completed_export(user)
        url = f"/api/export-tasks/{task['id']}/download"
        streamed = await streaming.get(url, headers={**user.headers, "Range": "bytes=5-"})
        content = await streamed.read()
        answer = await redirected.get(url, headers=user.headers, allow_redirects=False)
        through_api, to_store = await recorded(db, "export.download", 2)
        shown = await user.task(task["id"])

    assert (streamed.status, answer.status) == (206, 303)
    assert through_api["bytes_sent"] == len(content) == task["file_size"] - 5
    assert to_store["outcome"] == "ok" and to_store["bytes_sent"] is None
    assert to_store["detail"] == {"status": 303}
    assert shown["download_count"] == 2
