"""Produce the file of one export task: read rows in one snapshot, write them, count them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiofiles

from exporter.db import Connection
from exporter.models import ExportFormat
from exporter.registry import ExportHandler
from exporter.sql_select import ExportSql, build_export_sql
from exporter.writers.csv import csv_preamble
from exporter.writers.xlsx import XlsxExportWriter

FETCH_BATCH_ROWS = 5_000
PROGRESS_INTERVAL_S = 1.0

ProgressCallback = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class ExportRequest:
    """What the worker asks for: which handler, with which stored params, into which file."""

    handler: ExportHandler[Any]
    params: dict[str, Any]
    file_format: ExportFormat
    path: Path
    time_zone: str


class Progress:
    """Reports rows done at most about once a second, so the task row is not rewritten per batch."""

    def __init__(self, report: ProgressCallback, total: int) -> None:
        self._report = report
        self.total = total
        self.done = 0
        self._last = time.monotonic()

    async def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            await self._report(min(self.done, self.total), self.total)


async def export_to_file(conn: Connection, request: ExportRequest, report: ProgressCallback) -> int:
    """Write the export to ``request.path`` and return the number of data rows.

    Everything is read in one read-only, repeatable-read transaction, so the row count
    announced at the start is exactly the number of rows in the file.
    """
    query = request.handler.query_for(request.params)
    sql = build_export_sql(
        request.handler.columns, query, for_csv=request.file_format is ExportFormat.CSV
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SELECT set_config('TimeZone', $1, true)", request.time_zone)
        total = int(await conn.fetchval(sql.count, *sql.count_args))
        progress = Progress(report, total)
        await report(0, total)
        if request.file_format is ExportFormat.CSV:
            rows = await _copy_csv(conn, request, sql, progress)
        else:
            rows = await _write_xlsx(conn, request, sql, progress)
    await report(rows, total)
    return rows


async def _copy_csv(
    conn: Connection, request: ExportRequest, sql: ExportSql, progress: Progress
) -> int:
    async with aiofiles.open(request.path, "wb") as file:
        await file.write(csv_preamble(request.handler.columns))

        async def write_chunk(chunk: bytes) -> None:
            await file.write(chunk)
            # Line breaks inside quoted values make this an upper bound, capped by the total.
            await progress.advance(chunk.count(b"\n"))

        status = await conn.copy_from_query(sql.rows, *sql.args, output=write_chunk, format="csv")
    return int(status.split()[-1])


async def _write_xlsx(
    conn: Connection, request: ExportRequest, sql: ExportSql, progress: Progress
) -> int:
    writer = XlsxExportWriter(request.path, request.handler.title, request.handler.columns)
    try:
        cursor = await conn.cursor(sql.rows, *sql.args)
        batch = await cursor.fetch(FETCH_BATCH_ROWS)
        while batch:
            # Encode this batch in a thread while the next one is read from PostgreSQL.
            written = asyncio.create_task(asyncio.to_thread(writer.write_rows, batch))
            try:
                next_batch = await cursor.fetch(FETCH_BATCH_ROWS)
            finally:
                await written
            await progress.advance(len(batch))
            batch = next_batch
        await asyncio.to_thread(writer.close)
    except BaseException:
        writer.abandon()
        raise
    return writer.rows_written
