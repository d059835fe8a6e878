"""Bad input always gets a 4xx JSON error that names the problem; never a 500."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from exporter.auth.tokens import issue_session_token
from exporter.ops.app import create_app
from exporter.ops.serving import listening
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.support import ApiUser
from tests.workers import drain_queue

BIGINT_MAX = 2**63 - 1


def error_fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["error"]["details"]]


async def test_unknown_type_is_rejected_naming_the_type_field(admin: ApiUser) -> None:
    status, body = await admin.post_task({"type": "invoices", "format": "xlsx", "params": {}})

    assert status == 422
    assert body["error"]["code"] == "unknown_type"
    assert error_fields(body) == ["type"]
    assert "account" in body["error"]["details"][0]["message"]


async def test_unknown_format_is_rejected_naming_the_format_field(admin: ApiUser) -> None:
    status, body = await admin.post_task({"type": "account", "format": "pdf", "params": {}})

    assert status == 422
    assert error_fields(body) == ["format"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "deleted"}, "params.status"),
        ({"role_id": "abc"}, "params.role_id"),
        ({"role_id": 0}, "params.role_id"),
        ({"created_from": "yesterday"}, "params.created_from"),
        ({"colour": "red"}, "params.colour"),
        ({"keyword": "x" * 201}, "params.keyword"),
        ({"created_from": "2024-02-01", "created_to": "2024-01-01"}, "params.created_from"),
    ],
)
async def test_bad_params_are_rejected_at_post_naming_the_field(
    admin: ApiUser, params: dict[str, Any], field: str
) -> None:
    status, body = await admin.post_task({"type": "account", "format": "csv", "params": params})

    assert status == 422
    assert body["error"]["code"] == "invalid_params"
    assert error_fields(body) == [field]


async def test_params_are_stored_normalised(admin: ApiUser) -> None:
    task = await admin.create(
        "account", "csv", keyword="  张  ", status="", role_id="3", created_to=None
    )

    assert task["params"] == {"keyword": "张", "role_id": 3}


async def test_params_must_be_an_object(admin: ApiUser) -> None:
    status, body = await admin.post_task({"type": "account", "format": "csv", "params": [1]})

    assert status == 422
    assert error_fields(body) == ["params"]


async def test_a_body_without_type_names_the_missing_field(admin: ApiUser) -> None:
    status, body = await admin.post_task({"format": "csv"})

    assert status == 422
    assert error_fields(body) == ["type"]


async def test_malformed_json_is_a_400_json_error(
    admin: ApiUser, client: TestClient[Any, Any]
) -> None:
    response = await client.post(
        "/api/export-tasks", data=b'{"type": "account",', headers=admin.headers
    )

    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_request"
    assert "JSON" in body["error"]["message"]


async def test_a_json_array_body_is_a_400(admin: ApiUser) -> None:
    status, body = await admin.post_task(["account"])

    assert status == 400
    assert body["error"]["code"] == "invalid_request"


async def test_an_oversized_body_is_a_413_json_error(
    admin: ApiUser, client: TestClient[Any, Any]
) -> None:
    huge = b'{"type": "account", "params": {"keyword": "' + b"x" * 200_000 + b'"}}'

    response = await client.post("/api/export-tasks", data=huge, headers=admin.headers)

    assert response.status == 413
    body = await response.json()
    assert body["error"]["code"] == "request_entity_too_large"


async def test_unknown_route_is_a_404_json_error(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/nothing-here")

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_wrong_method_is_a_405_json_error(
    admin: ApiUser, client: TestClient[Any, Any]
) -> None:
    response = await client.put("/api/export-tasks", headers=admin.headers)

    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "query",
    ["status=done", "page=0", "page_size=1000", "page=abc", "colour=red"],
)
async def test_bad_list_query_is_a_422_naming_the_parameter(admin: ApiUser, query: str) -> None:
    status, body = await admin.get(f"/api/export-tasks?{query}")

    assert status == 422
    assert error_fields(body) == [query.split("=")[0]]


async def test_a_bad_date_says_what_a_date_looks_like(admin: ApiUser) -> None:
    status, body = await admin.post_task(
        {"type": "account", "format": "csv", "params": {"created_to": "31/01/2026"}}
    )

    assert status == 422
    assert body["error"]["details"] == [
        {
            "field": "params.created_to",
            "message": "must be an ISO 8601 date (2026-01-31) or date-time",
            "code": "date_format",
            "params": {"example": "2026-01-31"},
        }
    ]


async def test_a_reversed_date_range_in_a_list_query_is_one_error_on_its_start_field(
    admin: ApiUser,
) -> None:
    status, body = await admin.get("/api/accounts?created_from=2024-02-01&created_to=2024-01-01")

    assert status == 422
    assert body["error"]["code"] == "invalid_params"
    assert body["error"]["details"] == [
        {
            "field": "created_from",
            "message": "must not be after created_to",
            "code": "date_range_reversed",
            "params": {"end_field": "created_to"},
        }
    ]


@pytest.mark.parametrize(
    ("params", "code", "code_params"),
    [
        ({"keyword": "x" * 201}, "string_too_long", {"max_length": 200}),
        ({"role_id": 0}, "greater_than_equal", {"ge": 1}),
        ({"status": "deleted"}, "literal_error", {"expected": "'active', 'disabled' or 'locked'"}),
        ({"colour": "red"}, "extra_forbidden", {}),
        ({"keyword": "a\x00b"}, "text_has_nul", {}),
        (
            {"role_id": BIGINT_MAX + 1},
            "number_out_of_range",
            {"min": str(-BIGINT_MAX - 1), "max": str(BIGINT_MAX)},
        ),
        (
            {"created_to": "9999-12-31"},
            "date_out_of_range",
            {"min": "0001-01-02", "max": "9999-12-30"},
        ),
        (
            {"created_from": "2024-02-01", "created_to": "2024-01-01"},
            "date_range_reversed",
            {"end_field": "created_to"},
        ),
    ],
)
async def test_each_bad_param_has_a_stable_code_and_the_values_its_message_names(
    admin: ApiUser, params: dict[str, Any], code: str, code_params: dict[str, Any]
) -> None:
    status, body = await admin.post_task({"type": "account", "format": "csv", "params": params})

    assert status == 422
    [detail] = body["error"]["details"]
    assert (detail["code"], detail["params"]) == (code, code_params)


async def test_an_unknown_type_lists_the_known_ones_in_its_params(admin: ApiUser) -> None:
    _, body = await admin.post_task({"type": "invoices", "format": "xlsx", "params": {}})

    [detail] = body["error"]["details"]
    assert detail["code"] == "unknown_type"
    assert "account" in detail["params"]["expected"].split(", ")


async def test_a_quota_error_carries_its_limit_and_when_to_retry(
    admin: ApiUser, settings: Settings
) -> None:
    for number in range(settings.max_active_per_user):
        await admin.create("account", "csv", keyword=str(number))

    status, body = await admin.post_task({"type": "role", "format": "csv", "params": {}})

    assert status == 429
    assert body["error"]["code"] == "quota_exceeded"
    assert body["error"]["params"] == {
        "active": settings.max_active_per_user,
        "limit": settings.max_active_per_user,
        "retry_after": 10,
    }


async def test_a_task_failed_for_too_many_rows_keeps_the_code_and_numbers_in_both_answers(
    admin: ApiUser, settings: Settings
) -> None:
    task = await admin.create("account", "csv")
    await drain_queue(settings.model_copy(update={"max_rows": 100}))

    own = await admin.task(task["id"])
    _, page = await admin.get("/api/export-tasks")

    assert own["status"] == "failed"
    assert (own["error_code"], own["error_params"]) == (
        "too_many_rows",
        {"rows": 300, "limit": 100},
    )
    assert "EXPORTER_MAX_ROWS" in own["error"]
    [listed] = page["items"]
    assert (listed["error_code"], listed["error_params"]) == ("too_many_rows", own["error_params"])


def _signed(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/accounts?keyword=a%00b", "keyword"),
        ("/api/roles?keyword=%00", "keyword"),
        ("/api/export-tasks?type=%00", "type"),
        (f"/api/accounts?role_id={BIGINT_MAX + 1}", "role_id"),
        ("/api/accounts?created_to=9999-12-31", "created_to"),
        ("/api/accounts?created_from=0001-01-01T00:00:00%2B14:00", "created_from"),
        ("/api/accounts?created_from=2026-01-01T00:00:00%2B16:00", "created_from"),
        ("/api/accounts?page=" + "9" * 5000, "page"),
        ("/api/export-tasks?page_size=" + "9" * 30, "page_size"),
    ],
)
async def test_a_bad_query_value_is_a_4xx_naming_the_parameter(
    admin: ApiUser, path: str, field: str
) -> None:
    status, body = await admin.get(path)

    assert 400 <= status < 500, body
    assert field in error_fields(body), body


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b'{"type": "account", "params": {"keyword": "a\\u0000b"}}', 422, "params.keyword"),
        (b'{"type": "account\\u0000", "params": {}}', 422, "type"),
        (
            b'{"type": "account", "params": {"role_id": %d}}' % (BIGINT_MAX + 1),
            422,
            "params.role_id",
        ),
        (b'{"type": "account", "params": {"role_id": 1e400}}', 422, "params.role_id"),
        (b'{"type": "account", "params": {"created_to": "9999-12-31"}}', 422, "params.created_to"),
        (
            b'{"type": "account", "params": {"created_from": "2026-01-01T00:00:00-16:00"}}',
            422,
            "params.created_from",
        ),
        (b'{"type": "account", "params": {"keyword": %s}}' % _nested(30_000), 400, "body"),
        (b'{"type": "account", "params": {"role_id": 1%s}}' % (b"0" * 5_000), 400, "body"),
        (b'{"type": "account", "params": {"keyword": "\\ud800"}}', 400, "body"),
    ],
)
async def test_a_bad_export_body_is_a_4xx_naming_the_field(
    admin: ApiUser, client: TestClient[Any, Any], raw: bytes, status: int, field: str
) -> None:
    response = await client.post("/api/export-tasks", data=raw, headers=admin.headers)

    assert response.status == status
    body = await response.json()
    assert error_fields(body) == [field], body


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b'{"username": "\\u0000", "password": "x"}', 422, "username"),
        (b'{"username": "admin", "password": "a\\u0000"}', 422, "password"),
        (b'{"username": %s, "password": "x"}' % _nested(30_000), 400, "body"),
        (b'{"username": "admin", "password": %s}' % (b"9" * 5_000), 400, "body"),
    ],
)
async def test_a_bad_sign_in_body_is_a_4xx_naming_the_field(
    client: TestClient[Any, Any], raw: bytes, status: int, field: str
) -> None:
    response = await client.post(
        "/api/session", data=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status == status
    body = await response.json()
    assert error_fields(body) == [field], body


@pytest.mark.parametrize("sub", ["9" * 40, "²", "١٢", str(BIGINT_MAX + 1), "-1", "1" * 5_000])
async def test_a_token_naming_no_possible_account_is_a_401(
    client: TestClient[Any, Any], sub: str
) -> None:
    response = await client.get(
        "/api/export-tasks", headers={"Authorization": f"Bearer {_signed(sub)}"}
    )

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


EDGES = {
    "keyword": "%_\\ 😀",
    "role_id": BIGINT_MAX,
    "created_from": "0001-01-02T00:00:00+15:59",
    "created_to": "9999-12-30",
}


async def test_the_edges_of_what_validation_accepts_work_in_the_list_and_the_export(
    admin: ApiUser, worker: Worker
) -> None:
    status, page = await admin.get(f"/api/accounts?{urlencode(EDGES)}")
    assert status == 200, page
    assert page["total"] == 0

    task = await admin.finished((await admin.create("account", "csv", **EDGES))["id"])
    assert task["status"] == "completed", task
    assert task["row_count"] == 0

    widest = {"created_from": EDGES["created_from"], "created_to": EDGES["created_to"]}
    status, page = await admin.get(f"/api/accounts?{urlencode(widest)}")
    task = await admin.finished((await admin.create("account", "csv", **widest))["id"])
    assert task["status"] == "completed", task
    assert task["row_count"] == page["total"] > 0


async def test_a_value_too_large_for_the_column_it_filters_fails_with_a_plain_message(
    admin: ApiUser, worker: Worker
) -> None:
    # Within bigint, so it passes validation; the handler compares it with an integer column.
    task = await admin.finished(
        (await admin.create("test_int4_filter", "csv", at_most=2**40))["id"]
    )

    assert task["status"] == "failed"
    assert task["error"] == (
        "a filter value does not fit the data it is compared with: value out of int32 range"
    )
    assert (task["error_code"], task["error_params"]) == ("filter_value_out_of_range", {})


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is to 127.0.0.1; the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    finally:
        writer.close()
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def _session_cookie(account: int = 1) -> tuple[str, str]:
    # A session id that names no row: the header checks come before the session lookup.
    return issue_session_token(SECRET, account, uuid.uuid4(), ttl_s=600)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Authorization: Bearer \xff\xfe", 401),
        (b"Cookie: exporter_session=\xc3\xa9\xff", 401),
        (b"Cookie: exporter_session=%s\r\nX-CSRF-Token: \xff", 403),
    ],
)
async def test_a_credential_header_that_is_not_utf8_is_a_4xx_json_error(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any], headers: bytes, status: int
) -> None:
    cookie, _ = _session_cookie(await account_id(db, "admin"))
    head = headers.replace(b"%s", cookie.encode())

    answer, answer_headers, body = await raw_exchange(
        client.port,
        b"POST /api/export-tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + head
        + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )

    assert answer == status, body
    assert answer_headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] in ("unauthorized", "forbidden")


@pytest.fixture
async def served_port(settings: Settings) -> AsyncIterator[int]:
    """The API served as `exporter serve` serves it, with its own connection handler."""
    async with listening(create_app(settings), "127.0.0.1", 0) as port:
        yield port


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid method encountered"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\n\r\n", "Invalid header value char"),
        (
            b"GET /api/export-tasks HTTP/1.1\r\nHost: x\r\nX-Note: " + b"a" * 9_000 + b"\r\n\r\n",
            "Got more than 8190 bytes",
        ),
    ],
)
async def test_an_unparsable_request_is_a_400_json_error_logged_without_a_traceback(
    served_port: int, caplog: pytest.LogCaptureFixture, request_bytes: bytes, problem: str
) -> None:
    with caplog.at_level(logging.INFO):
        status, headers, body = await raw_exchange(served_port, request_bytes)

    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert "aiohttp" not in headers.get("Server", "")
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert problem in error["message"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert problem in warning.getMessage()
    assert warning.exc_info is None


async def test_the_served_api_still_answers_a_well_formed_request(served_port: int) -> None:
    status, headers, body = await raw_exchange(
        served_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )

    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert "Server" not in headers
