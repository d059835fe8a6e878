"""Helpers shared by the tests: talking to the API, waiting for conditions, reading files."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import openpyxl
from aiohttp.test_utils import TestClient

from exporter.ops.migrate import CREATE_LEDGER, bundled_migrations

T = TypeVar("T")

TERMINAL = {"completed", "failed", "cancelled", "expired"}


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval_s: float) -> None:
    """Send ``data`` a byte at a time, as a slow (or malicious) client does."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(interval_s)


class ApiUser:
    """One account talking to the API over real HTTP."""

    def __init__(self, client: TestClient[Any, Any], token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def post_task(self, body: Any) -> tuple[int, dict[str, Any]]:
        response = await self.client.post("/api/export-tasks", json=body, headers=self.headers)
        return response.status, await response.json()

    async def create(self, type_name: str, file_format: str, **params: Any) -> dict[str, Any]:
        status, body = await self.post_task(
            {"type": type_name, "format": file_format, "params": params}
        )
        assert status == 202, body
        return body

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(path, headers=self.headers)
        return response.status, await response.json()

    async def task(self, task_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/api/export-tasks/{task_id}")
        assert status == 200, body
        return body

    async def finished(self, task_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            task = await self.task(task_id)
            return task if task["status"] in TERMINAL else None

        return await wait_until(probe, timeout_s=timeout_s, what=f"task {task_id} to finish")

    async def download(self, task_id: str) -> tuple[int, bytes, dict[str, str]]:
        response = await self.client.get(
            f"/api/export-tasks/{task_id}/download", headers=self.headers
        )
        return response.status, await response.read(), dict(response.headers)

    async def export(self, type_name: str, file_format: str, **params: Any) -> bytes:
        """Create an export, wait for it to complete and return the downloaded file."""
        task = await self.finished((await self.create(type_name, file_format, **params))["id"])
        assert task["status"] == "completed", task
        status, content, _ = await self.download(task["id"])
        assert status == 200
        return content


def xlsx_rows(content: bytes) -> list[list[Any]]:
    """Every row of every sheet, header rows included, as openpyxl reads them."""
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    rows = [list(row) for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows


def xlsx_cell_types(content: bytes, column: int) -> list[str]:
    """openpyxl's data type of each data cell in one column of the first sheet."""
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    sheet = workbook.worksheets[0]
    types = [row[column].data_type for row in sheet.iter_rows(min_row=2)]
    workbook.close()
    return types


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "the csv must start with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(content[3:].decode("utf-8"), newline="")))


def files_in(storage_dir: Path) -> list[str]:
    """What the deployments sharing ``storage_dir`` keep there: their files, and the work
    directories in its ``.work`` (where they are unless EXPORTER_WORK_DIR says otherwise)."""
    if not storage_dir.exists():
        return []
    work = storage_dir / ".work"
    deployments = [*storage_dir.iterdir(), *(work.iterdir() if work.is_dir() else ())]
    return sorted(
        path.name
        for deployment in deployments
        if deployment.is_dir() and deployment != work
        for path in deployment.iterdir()
    )


def statuses(task: dict[str, Any]) -> list[str]:
    """The task's history as its statuses, oldest first."""
    return [event["status"] for event in task["history"]]


async def migrate_before(database_url: str, version: int) -> None:
    """The schema as it was before migration ``version``, recorded as migrate() records it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(CREATE_LEDGER)
        for migration in bundled_migrations():
            if migration.version < version:
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
    finally:
        await conn.close()
