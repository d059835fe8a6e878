"""Large xlsx exports encoded by several processes at once, joined into one workbook.

xlsxwriter is pure Python, so one workbook on one core is the ceiling of a single process.
Here the ordered rows are cut into ranges of one exported snapshot; each process reads its
range in that snapshot and compresses its share of the sheet XML; the parent splices the parts
into one workbook (see :mod:`exporter.exports.formats.zip_splice`) with no second compression.

A part's rows are rendered by PostgreSQL in the very bytes xlsxwriter would write
(:mod:`exporter.exports.formats.xlsx_row_sql`) and only compressed here: no Python runs per
cell, and the part costs the database's time. With ``rows_in_database`` off, xlsxwriter writes
them here instead, at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from exporter.db import Connection, lost_connection
from exporter.errors import ExportFailed
from exporter.exports.columns import Column
from exporter.exports.formats.xlsx_row_sql import rendered_rows_sql
from exporter.exports.formats.xlsx_workbook import MAX_SHEET_DATA_ROWS, XlsxExportWriter
from exporter.exports.formats.zip_splice import (
    COPY_CHUNK_BYTES,
    Deflated,
    DeflateStream,
    SheetRows,
    assemble_workbook,
)
from exporter.exports.ranges import Range, plan_ranges
from exporter.exports.snapshots import connection_in_snapshot, export_snapshot

FETCH_BATCH_ROWS = 5_000
PROGRESS_POLL_S = 0.5
# How often a rendering part records its progress: a write and a rename each time, which for
# every batch was 5 % of a part's time.
PROGRESS_SAVE_S = 0.1
# Rendered rows are about 500 bytes: a batch is some 1 MB, compressed while the next is read;
# progress moves by as much.
RENDERED_BATCH_ROWS = 2_000


@dataclass(frozen=True)
class PartJob:
    """What one encoding process needs; everything in it crosses a process boundary."""

    dsn: str
    snapshot: str
    sql: str
    args: tuple[Any, ...]
    range: Range
    title: str
    columns: tuple[Column, ...]
    time_zone: str
    work_dir: Path
    index: int
    # Set for an export too small to split: the one job writes the whole workbook here.
    output: Path | None = None
    # Whether ``sql`` renders the rows (rendered_rows_sql), or yields their values (the ranged
    # statement) for xlsxwriter.
    rendered: bool = False

    @property
    def progress_file(self) -> Path:
        return self.work_dir / f"part-{self.index}.rows"


class PartAbandoned(Exception):
    """The export this part belongs to ended (its work directory is gone)."""


def encode_part(job: PartJob) -> Deflated | None:
    """Run in an encoding process: compress one range's rows as the database renders them
    (or, for a whole export, write the finished workbook with xlsxwriter)."""
    try:
        return asyncio.run(_encode_part_while_wanted(job))
    except Exception as exc:
        # Pickled back to the worker, an exception loses its chain, and with it the lost
        # connection behind an InterfaceError: the attempt would not be retried.
        if (lost := lost_connection(exc)) is not None:
            raise ConnectionError(f"{type(lost).__name__}: {lost}") from None
        raise


async def _encode_part_while_wanted(job: PartJob) -> Deflated | None:
    # The parent removes the work directory when the export ends early (cancel, failure,
    # deadline); noticing it here stops a query that may be in the middle of a long fetch.
    part = asyncio.create_task(_encode_part(job))
    while not part.done():
        await asyncio.wait({part}, timeout=PROGRESS_POLL_S)
        if not part.done() and not job.work_dir.exists():
            part.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await part
            raise PartAbandoned(job.work_dir.name)
    return part.result()


async def _encode_part(job: PartJob) -> Deflated | None:
    if job.rendered:
        return await _render_part(job)
    part_dir = job.work_dir / f"part-{job.index}"
    part_dir.mkdir()
    # A part's rows go after the frame's header; only a whole workbook writes its own.
    writer = XlsxExportWriter(
        job.output or part_dir / "part.xlsx",
        job.title,
        job.columns,
        first_row=job.range.first_row,
        header=job.output is not None,
    )
    try:
        async with connection_in_snapshot(job.dsn, job.snapshot, job.time_zone) as conn:
            args = (*job.args, job.range.offset, job.range.limit)
            cursor = await conn.cursor(job.sql, *args)
            while batch := await cursor.fetch(FETCH_BATCH_ROWS):
                writer.write_rows(batch)
                save_rows_done(job.progress_file, writer.rows_written)
        _check_rows(job, writer.rows_written)
        if job.output is not None:
            writer.close()
            return None
        return await asyncio.to_thread(_deflate_file, writer.finish_part(), job)
    finally:
        writer.abandon()
        # The part's row XML is the largest file of an export; it goes here, in parallel.
        shutil.rmtree(part_dir, ignore_errors=True)


def _deflate_file(source: Path, job: PartJob) -> Deflated:
    stream = DeflateStream(job.work_dir / f"part-{job.index}.deflate")
    try:
        with source.open("rb") as rows:
            while chunk := rows.read(COPY_CHUNK_BYTES):
                stream.write(chunk)
        return stream.finish()
    finally:
        stream.close()


async def _render_part(job: PartJob) -> Deflated:
    """Compress the range's rows as the database renders them, each batch in a thread while
    the next is read."""
    stream = DeflateStream(job.work_dir / f"part-{job.index}.deflate")
    loop = asyncio.get_running_loop()
    compressing: asyncio.Future[None] | None = None
    rows = 0
    try:
        async with connection_in_snapshot(job.dsn, job.snapshot, job.time_zone) as conn:
            # The statement is long: compiling it took PostgreSQL's JIT 5.6 s. Its literals
            # hold backslashes and U& escapes, read as such only with standard strings.
            await conn.execute("SET LOCAL jit = off")
            await conn.execute("SET LOCAL standard_conforming_strings = on")
            bounds = (job.range.offset, job.range.limit, job.range.first_row)
            cursor = await conn.cursor(job.sql, *job.args, *bounds)
            save_at = loop.time()
            while batch := await cursor.fetch(RENDERED_BATCH_ROWS):
                if compressing is not None:
                    await asyncio.shield(compressing)
                # Joined in the thread too, so that the next fetch goes out at once.
                compressing = loop.run_in_executor(None, _compress_rows, stream, batch)
                rows += len(batch)
                if loop.time() >= save_at:
                    save_rows_done(job.progress_file, rows)
                    save_at = loop.time() + PROGRESS_SAVE_S
            if compressing is not None:
                await asyncio.shield(compressing)
        _check_rows(job, rows)
        save_rows_done(job.progress_file, rows)
        return stream.finish()
    finally:
        if compressing is not None and not compressing.done():
            # The thread cannot be stopped; the file is not closed under it.
            with contextlib.suppress(BaseException):
                await asyncio.shield(compressing)
        stream.close()


def _compress_rows(stream: DeflateStream, rows: Sequence[asyncpg.Record]) -> None:
    stream.write(b"".join(row[0] for row in rows))


def _check_rows(job: PartJob, rows: int) -> None:
    if rows != job.range.limit:
        raise ExportFailed(f"part {job.index} read {rows} rows, expected {job.range.limit}")


def save_rows_done(path: Path, rows: int) -> None:
    """Record a part's progress for the worker, which reads it at any moment."""
    # Written aside and renamed over it: rewritten in place, the file reads empty between its
    # truncation and the write, and the export's progress fell back (165,000 → 85,000 rows).
    scratch = path.with_suffix(".saving")
    scratch.write_text(str(rows))
    scratch.replace(path)


def read_rows_done(path: Path) -> int:
    """A part's progress: 0 before its first batch."""
    try:
        return int(path.read_text())
    except FileNotFoundError:
        return 0


def _rows_done(jobs: Sequence[PartJob]) -> int:
    return sum(read_rows_done(job.progress_file) for job in jobs)


async def write_xlsx_in_parts(
    conn: Connection,
    *,
    encoders: Executor,
    parts_per_sheet: int,
    dsn: str,
    sql: str,
    args: tuple[Any, ...],
    total: int,
    title: str,
    columns: Sequence[Column],
    time_zone: str,
    path: Path,
    report_done: Callable[[int], None],
    split: bool,
    rows_in_database: bool = True,
    max_sheet_rows: int = MAX_SHEET_DATA_ROWS,
) -> int:
    """Write ``total`` rows of ``sql`` to ``path`` using the encoding processes: split into
    ranges (their rows rendered by the database, or with ``rows_in_database`` false written by
    xlsxwriter), or (``split`` false) as one workbook written by xlsxwriter in one process.
    ``sql`` is the xlsx statement of ``columns`` that takes the range's OFFSET and LIMIT as its
    two parameters after ``args`` (``ExportSql.ranged``).

    Either way xlsxwriter never runs in the worker, whose event loop stays free. ``conn`` must
    be inside the export's repeatable-read transaction: its snapshot is the one every part
    reads, so the parts together hold exactly the rows counted.
    """
    snapshot = await export_snapshot(conn)
    work_dir = path.parent
    ranges = (
        plan_ranges(total, parts_per_sheet, max_sheet_rows=max_sheet_rows)
        if split
        else [Range(1, 1, 0, total)]
    )
    output = None if split else path
    rendered = split and rows_in_database
    part_sql = rendered_rows_sql(columns, sql, len(args) + 3) if rendered else sql
    jobs = [
        PartJob(
            dsn,
            snapshot,
            part_sql,
            args,
            part,
            title,
            tuple(columns),
            time_zone,
            work_dir,
            index,
            output,
            rendered,
        )
        for index, part in enumerate(ranges)
    ]
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(encoders, encode_part, job) for job in jobs]
    for future in futures:
        # A part still running when the export is abandoned ends with an error nobody awaits.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
    try:
        pending = set(futures)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=PROGRESS_POLL_S)
            report_done(_rows_done(jobs))
        parts = [part for future in futures if (part := future.result()) is not None]
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    if not split:
        return total
    frame = work_dir / "frame.xlsx"
    sheets = [
        SheetRows(
            rows=sum(job.range.limit for job in jobs if job.range.sheet == number),
            parts=[
                part for job, part in zip(jobs, parts, strict=True) if job.range.sheet == number
            ],
        )
        for number in range(1, max((job.range.sheet for job in jobs), default=1) + 1)
    ]
    # In an encoding process too: joining reads and writes the whole file.
    await loop.run_in_executor(
        encoders, _frame_and_assemble, frame, title, columns, sheets, path, max_sheet_rows
    )
    return total


def _frame_and_assemble(
    frame: Path,
    title: str,
    columns: Sequence[Column],
    sheets: Sequence[SheetRows],
    path: Path,
    max_sheet_rows: int,
) -> None:
    writer = XlsxExportWriter(frame, title, columns, max_sheet_rows=max_sheet_rows)
    for _ in sheets[1:]:
        writer.add_sheet()
    writer.close()
    assemble_workbook(frame, sheets, path)
