"""Helpers of the import tests: files to upload, the upload form, waiting for an import, and the
state of the accounts table that an import may change."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import xlsxwriter
from aiohttp import FormData

from settings import Settings
from tests.support import TERMINAL, ApiUser, wait_until

IMPORTS = "/api/import-tasks"
ACCOUNT_HEADER = ["用户名", "昵称", "邮箱", "手机号", "状态", "角色"]
ACCOUNTS_CSV = "用户名,昵称,状态\r\nzhang,张三,正常\r\nli,李四,禁用\r\n".encode()
# Every column of the accounts table an import may change, in a stable order.
ACCOUNTS_STATE = """
SELECT md5(string_agg(concat_ws('|', id, username, nickname, email, phone, status, role_id),
                      E'\n' ORDER BY id))
FROM accounts
"""


def form(
    content: bytes | None = ACCOUNTS_CSV, file_name: str = "accounts.csv", **fields: str
) -> FormData:
    """The upload form a browser sends: ``type`` (account unless given), the other ``fields``
    and the file."""
    # Multipart even without a file, as a browser sends any FormData.
    data = FormData(default_to_multipart=True)
    for name, value in {"type": "account", **fields}.items():
        data.add_field(name, value)
    if content is not None:
        # A stream, not bytes: aiohttp warns (an error here) of a bytes body past 1 MiB.
        data.add_field("file", io.BytesIO(content), filename=file_name)
    return data


async def upload(
    user: ApiUser, data: FormData, **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await user.client.post(IMPORTS, data=data, headers={**user.headers, **headers})
    return response.status, await response.json(), dict(response.headers)


async def imported(user: ApiUser, data: FormData | None = None, **headers: str) -> dict[str, Any]:
    """A new import of ``data`` (the default form when None), as the API answered 202."""
    status, body, _ = await upload(user, data or form(), **headers)
    assert status == 202, body
    return body


async def import_task(user: ApiUser, task_id: str) -> dict[str, Any]:
    response = await user.client.get(f"{IMPORTS}/{task_id}", headers=user.headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def import_finished(user: ApiUser, task_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The import once it has ended (completed, failed, cancelled or expired)."""

    async def ended() -> dict[str, Any] | None:
        task = await import_task(user, task_id)
        return task if task["status"] in TERMINAL else None

    return await wait_until(ended, timeout_s=timeout_s, what=f"import {task_id} to end")


def stored_files(settings: Settings) -> list[str]:
    """The names of the files the deployment keeps in its storage directory."""
    if not settings.storage_dir.exists():
        return []
    return sorted(
        path.name
        for deployment in settings.storage_dir.iterdir()
        if deployment.is_dir() and not deployment.name.startswith(".")
        for path in deployment.iterdir()
    )


def uploads_in_progress(settings: Settings) -> list[Path]:
    return sorted(settings.scratch_dir.glob("*/uploads/*"))


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8-sig") -> bytes:
    """``rows`` as Excel saves a csv file (CRLF; with a BOM unless ``encoding`` says not)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    """A workbook of one sheet of ``rows``, as openpyxl writes it."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8-sig") -> Path:
    path.write_bytes(csv_bytes(rows, encoding))
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """A workbook of ``sheets`` (name → rows), text kept as text (no formulas)."""
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False})
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        for line, row in enumerate(rows):
            for column, value in enumerate(row):
                if value is not None:
                    sheet.write(line, column, value)
    workbook.close()
    return path


async def accounts_state(db: asyncpg.Connection[Any]) -> str:
    """A hash of every column of the accounts table that an import may change."""
    state: str = await db.fetchval(ACCOUNTS_STATE)
    return state
