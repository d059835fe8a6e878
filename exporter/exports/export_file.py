"""Produce the file of one export: read rows in one snapshot, write them, count them."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiofiles

from exporter.db import Connection
from exporter.errors import TooManyRows
from exporter.exports.encoders import EncoderPool
from exporter.exports.parallel_csv import copy_rows, copy_rows_in_parts
from exporter.exports.parallel_xlsx import write_xlsx_in_parts
from exporter.exports.registry import ExportHandler
from exporter.exports.sql import SESSION_SETTINGS, ExportSql, build_export_sql
from exporter.exports.writers.csv import csv_preamble
from exporter.exports.writers.xlsx import XlsxExportWriter
from exporter.tasks.kinds import Progress
from exporter.tasks.models import ExportFormat

FETCH_BATCH_ROWS = 5_000


@dataclass(frozen=True)
class ParallelEncoding:
    """Processes to spread large xlsx exports over, and from what size on to use them; a large
    csv export is copied over as many connections at once."""

    encoders: EncoderPool
    min_rows: int
    dsn: str


@dataclass(frozen=True)
class ExportRequest:
    """What the worker asks for: which handler, with which stored params, into which file."""

    handler: ExportHandler[Any]
    params: dict[str, Any]
    file_format: ExportFormat
    path: Path
    time_zone: str
    max_rows: int
    parallel: ParallelEncoding | None = None


async def export_to_file(conn: Connection, request: ExportRequest, progress: Progress) -> int:
    """Write the export to ``request.path`` and return the number of data rows.

    Everything is read in one read-only, repeatable-read transaction, so the row count
    announced at the start is exactly the number of rows in the file.
    """
    query = request.handler.query_for(request.params)
    sql = build_export_sql(
        request.handler.columns, query, for_csv=request.file_format is ExportFormat.CSV
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(SESSION_SETTINGS, request.time_zone)
        total = int(await conn.fetchval(sql.count, *sql.count_args))
        if total > request.max_rows:
            raise TooManyRows(
                f"the export has {total:,} rows, more than the limit of {request.max_rows:,} "
                "(EXPORTER_MAX_ROWS); narrow the filters",
                params={"rows": total, "limit": request.max_rows},
            )
        progress.total = total
        if request.file_format is ExportFormat.CSV:
            rows = await _copy_csv(conn, request, sql, progress)
        else:
            rows = await _write_xlsx(conn, request, sql, progress)
    progress.done = rows
    return rows


async def _copy_csv(
    conn: Connection, request: ExportRequest, sql: ExportSql, progress: Progress
) -> int:
    parallel, total = request.parallel, progress.total or 0
    async with aiofiles.open(request.path, "wb") as file:
        await file.write(csv_preamble(request.handler.columns))
        if parallel is None or parallel.encoders.processes < 2 or total < parallel.min_rows:
            return await copy_rows(conn, sql.rows, sql.args, file, progress)
        return await copy_rows_in_parts(
            conn,
            dsn=parallel.dsn,
            sql=sql,
            total=total,
            parts=parallel.encoders.processes,
            time_zone=request.time_zone,
            file=file,
            work_dir=request.path.parent,
            progress=progress,
        )


async def _write_xlsx(
    conn: Connection, request: ExportRequest, sql: ExportSql, progress: Progress
) -> int:
    if request.parallel is not None:
        return await _write_xlsx_in_parts(conn, request, sql, progress, request.parallel)
    return await _write_xlsx_here(conn, request, sql, progress)


async def _write_xlsx_in_parts(
    conn: Connection,
    request: ExportRequest,
    sql: ExportSql,
    progress: Progress,
    parallel: ParallelEncoding,
) -> int:
    def report_done(rows: int) -> None:
        progress.done = rows

    try:
        return await write_xlsx_in_parts(
            conn,
            encoders=parallel.encoders.executor,
            parts_per_sheet=parallel.encoders.processes,
            dsn=parallel.dsn,
            sql=sql.ranged,
            args=sql.args,
            total=progress.total or 0,
            title=request.handler.title,
            columns=request.handler.columns,
            time_zone=request.time_zone,
            path=request.path,
            report_done=report_done,
            split=(progress.total or 0) >= parallel.min_rows,
        )
    except BrokenProcessPool:
        parallel.encoders.replace()
        raise


async def _write_xlsx_here(
    conn: Connection, request: ExportRequest, sql: ExportSql, progress: Progress
) -> int:
    writer = XlsxExportWriter(request.path, request.handler.title, request.handler.columns)
    loop = asyncio.get_running_loop()
    # The executor future ends only when its thread does; shielded, a cancel cannot end it early.
    encoding: asyncio.Future[None] | None = None
    try:
        cursor = await conn.cursor(sql.rows, *sql.args)
        batch = await cursor.fetch(FETCH_BATCH_ROWS)
        while batch:
            # Encode this batch in a thread while the next one is read from PostgreSQL.
            encoding = loop.run_in_executor(None, writer.write_rows, batch)
            next_batch = await cursor.fetch(FETCH_BATCH_ROWS)
            await asyncio.shield(encoding)
            progress.advance(len(batch))
            batch = next_batch
        encoding = loop.run_in_executor(None, writer.close)
        await asyncio.shield(encoding)
    except BaseException:
        if encoding is not None:
            await _settle(encoding)
        writer.abandon()
        raise
    return writer.rows_written


async def _settle(encoding: asyncio.Future[None]) -> None:
    """Wait for the thread's batch to end, even when cancelled: the thread cannot be stopped,
    and its scratch files must not be closed under it."""
    while not encoding.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({encoding})
    encoding.exception()  # the first error is the one raised; this one is only retrieved
