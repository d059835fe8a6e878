"""xlsx: dates as Excel dates, enum labels, and the workbook written in this process (a thread
encodes while the next batch is read) or, with encoding processes, by them in parts."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from exporter.db import Connection
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats.base import FileJob, ParallelEncoding, RowProgress
from exporter.exports.formats.xlsx_parts import FETCH_BATCH_ROWS, write_xlsx_in_parts
from exporter.exports.formats.xlsx_workbook import XlsxExportWriter
from exporter.exports.sql import label_sql, local_datetime_sql

# Excel counts a 1900-02-29 that never was, so only from 1900-03-01 on does a date's serial
# number name the same day in Excel as in other readers; Excel's dates end at 9999-12-31. The
# first test, on the stored value, is cheap and holds for nearly every row: no zone is a day
# from UTC, so a value two days inside the range is inside it in any zone. Only the rest pay
# for the exact test on the wall time that is written. (The account export's statement over
# 200,000 rows, 9 runs each on a busy 2-core machine: 801 → 618 ms at best, 935 → 1064 ms
# median; within the noise.)
_IN_EXCEL_RANGE = (
    "({v} > '1900-03-03' AND {v} < '9999-12-29'"
    " OR {v}::timestamp >= '1900-03-01' AND {v}::timestamp < '10000-01-01')"
)


def _datetime_sql(value: str) -> str:
    # Two values, as the workbook writer takes them: the date Excel can hold, else its text, in
    # the form csv has (infinity and -infinity included).
    in_range, local = _IN_EXCEL_RANGE.format(v=value), local_datetime_sql(value)
    return (
        f"CASE WHEN {in_range} THEN {local} END,"
        f" CASE WHEN {in_range} THEN NULL ELSE {local}::text END"
    )


# Excel keeps 15 significant digits: a number from 10**15 on, or with a fraction, is text.
MAX_EXACT_INTEGER = 10**15


def _integer_sql(value: str) -> str:
    # Two values, as the workbook writer takes them: the number Excel holds exactly, else its
    # text. ``value`` may be of any number type (a sum of bigints is numeric): settled here, it
    # reaches the writer, and the rows the database renders, as a bigint or a text alone.
    exact = (
        f"{value} > -{MAX_EXACT_INTEGER} AND {value} < {MAX_EXACT_INTEGER}"
        f" AND {value} = trunc({value})"
    )
    return (
        f"CASE WHEN {exact} THEN {value}::bigint END,"
        f" CASE WHEN NOT ({exact}) THEN {value}::text END"
    )


class XlsxFormat:
    """xlsx through xlsxwriter; a new sheet past Excel's row limit."""

    name = "xlsx"
    # Not left to the mimetypes table of the host, which may not know xlsx.
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    # The zip is put together once every sheet is written: nothing to send before the end.
    grows_at_end = False

    def value_sql(self, column: Column, value: str, args: list[Any]) -> str:
        if column.kind is ColumnKind.INTEGER:
            return _integer_sql(value)
        if column.kind is ColumnKind.DATETIME:
            return _datetime_sql(value)
        if column.kind is ColumnKind.ENUM:
            return label_sql(column, value, args, value)
        return value

    async def write(self, conn: Connection, job: FileJob, progress: RowProgress) -> int:
        if job.parallel is not None:
            return await _write_in_parts(conn, job, progress, job.parallel)
        return await _write_here(conn, job, progress)


async def _write_in_parts(
    conn: Connection, job: FileJob, progress: RowProgress, parallel: ParallelEncoding
) -> int:
    def report_done(rows: int) -> None:
        progress.done = rows

    try:
        return await write_xlsx_in_parts(
            conn,
            encoders=parallel.encoders.executor,
            parts_per_sheet=parallel.encoders.processes,
            dsn=job.dsn,
            sql=job.sql.ranged,
            args=job.sql.args,
            total=job.total,
            title=job.title,
            columns=job.columns,
            time_zone=job.time_zone,
            path=job.path,
            report_done=report_done,
            split=job.total >= parallel.min_rows,
            rows_in_database=parallel.rows_in_database,
        )
    except BrokenProcessPool:
        parallel.encoders.replace()
        raise


async def _write_here(conn: Connection, job: FileJob, progress: RowProgress) -> int:
    writer = XlsxExportWriter(job.path, job.title, job.columns)
    loop = asyncio.get_running_loop()
    # The executor future ends only when its thread does; shielded, a cancel cannot end it early.
    encoding: asyncio.Future[None] | None = None
    try:
        cursor = await conn.cursor(job.sql.rows, *job.sql.args)
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


XLSX = XlsxFormat()
