"""Exports through the real API and worker, checked cell by cell against the database."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import asyncpg
import pytest

from settings import Settings
from tests.expected import (
    ACCOUNT_HEADER,
    ACCOUNT_TEXT_COLUMNS,
    ROLE_HEADER,
    ROLE_TEXT_COLUMNS,
    account_rows,
    as_csv,
    csv_guard,
    role_rows,
)
from tests.support import ApiUser, csv_rows, xlsx_cell_types, xlsx_rows

pytestmark = pytest.mark.usefixtures("worker")

# Values that break naive exporters: formulas, quotes, commas, line breaks, long digit strings.
AWKWARD_ACCOUNTS = [
    ("inj_eq", "=1+2", "=cmd|' /C calc'!A0", "+8613800138000"),
    ("inj_at", "@SUM(A1:A2)", "x@example.com", "-5"),
    ("inj_plus", '+HYPERLINK("http://evil")', "a@b.c", "-1+2"),
    ("inj_minus", "-2+3", "tab@b.c", "\t=1"),
    ("quotes", 'say "hi", then\nleave', "q@b.c", "123456789012345678901"),
    ("percent", "100%_done", "p@b.c", None),
    ("percent2", "100xxdone", "p2@b.c", None),
]


@pytest.fixture
async def awkward_accounts(db: asyncpg.Connection[Any]) -> None:
    await db.executemany(
        "INSERT INTO accounts (username, nickname, email, phone) VALUES ($1, $2, $3, $4)",
        AWKWARD_ACCOUNTS,
    )


@pytest.mark.usefixtures("awkward_accounts")
async def test_xlsx_export_of_all_accounts_matches_the_database_cell_by_cell(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    rows = xlsx_rows(await admin.export("account", "xlsx"))

    assert rows[0] == ACCOUNT_HEADER
    assert rows[1:] == await account_rows(db)


@pytest.mark.usefixtures("awkward_accounts")
async def test_csv_export_of_all_accounts_matches_the_database_cell_by_cell(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    rows = csv_rows(await admin.export("account", "csv"))

    expected = [as_csv(row, ACCOUNT_TEXT_COLUMNS) for row in await account_rows(db)]
    assert rows[0] == ACCOUNT_HEADER
    assert rows[1:] == expected


@pytest.mark.usefixtures("awkward_accounts")
async def test_formula_like_text_stays_text_in_xlsx_and_is_defused_in_csv(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    xlsx_content = await admin.export("account", "xlsx", keyword="inj_")
    csv_content = await admin.export("account", "csv", keyword="inj_")

    nicknames = [row[2] for row in xlsx_rows(xlsx_content)[1:]]
    assert nicknames == ["=1+2", "@SUM(A1:A2)", '+HYPERLINK("http://evil")', "-2+3"]
    assert set(xlsx_cell_types(xlsx_content, 2)) == {"s"}  # strings, never formulas
    csv_nick_phone = [(row[2], row[4]) for row in csv_rows(csv_content)[1:]]
    assert csv_nick_phone == [
        ("'=1+2", "+8613800138000"),
        ("'@SUM(A1:A2)", "-5"),
        ('\'+HYPERLINK("http://evil")', "'-1+2"),
        ("'-2+3", "'\t=1"),
    ]
    assert csv_guard("-5") == "-5"


@pytest.mark.usefixtures("awkward_accounts")
async def test_long_digit_strings_and_phone_numbers_are_text_cells(admin: ApiUser) -> None:
    content = await admin.export("account", "xlsx", keyword="quotes")

    rows = xlsx_rows(content)
    assert rows[1][4] == "123456789012345678901"
    assert xlsx_cell_types(content, 4) == ["s"]
    assert rows[1][2] == 'say "hi", then\nleave'


async def test_filters_select_exactly_the_matching_accounts(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    role_id = await db.fetchval("SELECT id FROM roles WHERE name = '运营'")
    params = {
        "status": "disabled",
        "role_id": role_id,
        "created_from": "2023-03-01",
        "created_to": "2024-06-30T12:00:00+08:00",
    }
    where = (
        "a.status = 'disabled' AND a.role_id = $1 AND a.created_at >= '2023-03-01 00:00+08'"
        " AND a.created_at < '2024-06-30 12:00+08'"
    )
    expected = await account_rows(db, where, role_id)
    assert expected, "the seed data should hold matching accounts"

    rows = xlsx_rows(await admin.export("account", "xlsx", **params))
    assert rows[1:] == expected
    csv_content = csv_rows(await admin.export("account", "csv", **params))
    assert csv_content[1:] == [as_csv(row, ACCOUNT_TEXT_COLUMNS) for row in expected]


async def test_a_date_as_created_to_includes_that_whole_day(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    expected = await account_rows(
        db, "a.created_at >= '2023-01-05 00:00+08' AND a.created_at < '2023-01-07 00:00+08'"
    )

    rows = xlsx_rows(
        await admin.export("account", "xlsx", created_from="2023-01-05", created_to="2023-01-06")
    )

    assert rows[1:] == expected
    assert len(expected) >= 1


@pytest.mark.usefixtures("awkward_accounts")
async def test_keyword_matches_case_insensitively_and_takes_percent_and_underscore_literally(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    literal = xlsx_rows(await admin.export("account", "xlsx", keyword="0%_D"))
    by_case = xlsx_rows(await admin.export("account", "xlsx", keyword="USER000001"))

    assert [row[1] for row in literal[1:]] == ["percent"]
    expected = await account_rows(db, "a.username ILIKE '%user000001%'")
    assert [row[1] for row in by_case[1:]] == [row[1] for row in expected]
    assert len(expected) == 10  # user0000010 … user0000019


async def test_role_export_matches_the_database(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    xlsx_content = xlsx_rows(await admin.export("role", "xlsx"))
    csv_content = csv_rows(await admin.export("role", "csv"))

    expected = await role_rows(db)
    assert len(expected) == 20
    assert xlsx_content == [ROLE_HEADER, *expected]
    assert csv_content == [ROLE_HEADER, *(as_csv(row, ROLE_TEXT_COLUMNS) for row in expected)]


@pytest.mark.parametrize("file_format", ["xlsx", "csv"])
async def test_an_export_with_no_rows_is_a_valid_file_with_only_the_header(
    admin: ApiUser, file_format: str
) -> None:
    created = await admin.create("account", file_format, keyword="no such account anywhere")
    task = await admin.finished(created["id"])
    status, content, _ = await admin.download(created["id"])

    assert task["status"] == "completed"
    assert task["row_count"] == 0
    assert status == 200
    rows = xlsx_rows(content) if file_format == "xlsx" else csv_rows(content)
    assert rows == [ACCOUNT_HEADER]


async def test_completed_task_reports_its_file_and_counts(admin: ApiUser) -> None:
    created = await admin.create("account", "xlsx")
    assert created["status"] == "pending"

    task = await admin.finished(created["id"])

    assert task["status"] == "completed"
    assert task["row_count"] == task["rows_done"] == task["rows_total"] == 300
    assert task["file_size"] > 0
    assert task["file_name"].startswith("账号列表_") and task["file_name"].endswith(".xlsx")
    assert task["attempts"] == 1
    assert task["started_at"] and task["finished_at"]
    assert task["download_url"] == f"/api/export-tasks/{task['id']}/download"


async def test_a_chinese_file_name_arrives_intact_with_an_ascii_fallback(admin: ApiUser) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])

    status, content, headers = await admin.download(task["id"])

    assert status == 200
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == task["file_name"]
    assert task["file_name"].startswith("角色列表_")
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.isascii() and fallback.startswith("role_") and fallback.endswith(".csv")
    assert int(headers["Content-Length"]) == len(content) == task["file_size"]
    assert headers["Content-Type"] == "text/csv; charset=utf-8"


async def test_two_exports_of_one_second_get_different_download_names(admin: ApiUser) -> None:
    first, second = [
        await admin.finished((await admin.create("role", "csv", keyword=word))["id"])
        for word in ("a", "b")
    ]

    names = []
    for task in (first, second):
        _, _, headers = await admin.download(task["id"])
        names.append(headers["Content-Disposition"].split('filename="', 1)[1].split('"', 1)[0])

    assert names[0] != names[1]
    # The task's own id in the name is what keeps them apart within one second.
    for task, name in zip((first, second), names, strict=True):
        assert name.endswith(f"_{task['id'].replace('-', '')[:6]}.csv"), name


async def test_an_xlsx_download_says_it_is_a_spreadsheet(admin: ApiUser) -> None:
    task = await admin.finished((await admin.create("role", "xlsx"))["id"])

    _, _, headers = await admin.download(task["id"])

    assert headers["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )


async def test_long_text_is_cut_with_a_marker_in_xlsx_and_kept_whole_in_csv(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    long_text = "长" * 40_000
    await db.execute("INSERT INTO accounts (username, nickname) VALUES ('longtext', $1)", long_text)

    xlsx_cell = xlsx_rows(await admin.export("account", "xlsx", keyword="longtext"))[1][2]
    csv_cell = csv_rows(await admin.export("account", "csv", keyword="longtext"))[1][2]

    assert len(xlsx_cell) == 32_767
    assert xlsx_cell.endswith("…[已截断]")
    assert xlsx_cell.startswith("长" * 32_000)
    assert csv_cell == long_text


async def test_a_download_whose_file_is_gone_marks_the_task_expired_and_it_can_be_retried(
    admin: ApiUser, settings: Settings
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    (stored,) = [path for path in settings.storage_dir.rglob("*.csv")]
    stored.unlink()

    status, body, _ = await admin.download(task["id"])
    after = await admin.task(task["id"])
    retry = await admin.client.post(f"/api/export-tasks/{task['id']}/retry", headers=admin.headers)
    retried = await retry.json()

    assert status == 410
    assert json.loads(body)["error"]["code"] == "file_gone"
    assert after["status"] == "expired"
    assert after["history"][-1]["detail"] == "the file was no longer in storage"
    assert retry.status == 202
    assert (await admin.finished(retried["id"]))["status"] == "completed"
