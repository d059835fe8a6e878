"""csv rows copied out of PostgreSQL, by one connection or by several at once into one file.

COPY shapes and quotes every row on the server, one core per statement. A large export is cut
into ranges of one exported snapshot instead; each range is copied on its own connection, the
first straight into the file, the others into files of their own appended in order after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import aiofiles.threadpool
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from exporter.db import Connection
from exporter.errors import ExportFailed
from exporter.exports.formats.base import RowProgress
from exporter.exports.ranges import plan_copy_ranges
from exporter.exports.snapshots import connection_in_snapshot, export_snapshot
from exporter.exports.sql import ExportSql

log = logging.getLogger("exporter.worker")

APPEND_CHUNK_BYTES = 64 * 1024 * 1024
# PostgreSQL sends COPY data in 8 kB pieces, and asyncpg hands each piece that has arrived to
# the output callback through a task and a future of its own: about 70 µs a piece, a core's
# worth for a 1M-row csv. Pausing a moment after each piece lets the next arrive as a bigger
# one (~150 kB at PostgreSQL's pace; far below the socket's buffer, so the server never
# waits): measured on 1M rows, 14,000 pieces and 0.95 s of the CPU became 700 and 0.15 s.
COALESCE_PAUSE_S = 0.002


async def copy_rows(
    conn: Connection,
    statement: str,
    args: tuple[Any, ...],
    file: AsyncBufferedIOBase,
    progress: RowProgress,
) -> int:
    """COPY the rows of ``statement`` as csv into ``file``; the number of rows copied."""
    write_error: list[OSError] = []

    async def write_chunk(chunk: bytes) -> None:
        # An error raised here makes asyncpg send a cancel request, and when the server has
        # already sent the last row, that request is never answered and the connection hangs.
        # So the error is kept, the rest of the stream dropped.
        if write_error:
            return
        try:
            await file.write(chunk)
        except OSError as exc:
            write_error.append(exc)
        progress.advance(chunk.count(b"\n"))
        await asyncio.sleep(COALESCE_PAUSE_S)

    status = await conn.copy_from_query(statement, *args, output=write_chunk, format="csv")
    if write_error:
        raise write_error[0]
    return int(status.split()[-1])


async def copy_rows_in_parts(
    conn: Connection,
    *,
    dsn: str,
    sql: ExportSql,
    total: int,
    parts: int,
    time_zone: str,
    file: AsyncBufferedIOBase,
    work_dir: Path,
    progress: RowProgress,
) -> int:
    """Copy ``total`` rows of ``sql`` into ``file`` over ``parts`` connections at once.

    ``conn`` must be inside the export's repeatable-read transaction; it copies the first
    range itself, and new connections to ``dsn`` read the others in its snapshot.
    """
    snapshot = await export_snapshot(conn)
    ranges = plan_copy_ranges(total, parts)
    part_paths = [work_dir / f"part-{index}.csv" for index in range(1, len(ranges))]
    log.info("copying %d csv rows over %d connections", total, len(ranges))

    async def copy_range(index: int) -> int:
        bounds = (ranges[index].offset, ranges[index].limit)
        if index == 0:
            return await copy_rows(conn, sql.ranged, sql.args + bounds, file, progress)
        async with connection_in_snapshot(dsn, snapshot, time_zone) as part_conn:
            # Opened here, not in a thread: a cancel arriving while a thread opens the file
            # would leave it open with nobody to close it.
            with part_paths[index - 1].open("wb") as part_file:
                wrapped = aiofiles.threadpool.wrap(part_file)
                return await copy_rows(part_conn, sql.ranged, sql.args + bounds, wrapped, progress)

    copies = [asyncio.create_task(copy_range(index)) for index in range(len(ranges))]
    try:
        copied = await asyncio.gather(*copies)
    except BaseException:
        # The first failure ends the export: stop the other ranges and wait for them (each
        # closes its connection and file) before the error goes on.
        for copy in copies:
            copy.cancel()
        await asyncio.gather(*copies, return_exceptions=True)
        raise
    expected = [part.limit for part in ranges]
    if copied != expected:
        raise ExportFailed(f"the parts held {copied} rows, expected {expected}")
    await file.flush()
    # The part files stay in the work directory, which the task runner removes in a thread:
    # freeing tens of megabytes takes the kernel a moment the event loop must not wait.
    await asyncio.to_thread(_append_files, file.fileno(), part_paths)
    return total


def _append_files(destination: int, sources: list[Path]) -> None:
    # Copied by the kernel, file to file, without passing through this process.
    for source in sources:
        with source.open("rb") as part:
            remaining = os.fstat(part.fileno()).st_size
            while remaining:
                count = min(remaining, APPEND_CHUNK_BYTES)
                sent = os.sendfile(destination, part.fileno(), None, count)
                if sent == 0:
                    raise ExportFailed(f"{source.name} ended before its size")
                remaining -= sent
