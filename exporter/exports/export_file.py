"""Produce the file of one export: read rows in one snapshot, write them, count them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.errors import ExportFailed, TooManyRows
from exporter.exports.formats import FORMATS
from exporter.exports.formats.base import FileFormat, FileJob, ParallelEncoding
from exporter.exports.registry import ExportHandler
from exporter.exports.row_source import RowSource
from exporter.exports.sql import SESSION_SETTINGS, build_export_sql
from exporter.tasks.kinds import Progress


@dataclass(frozen=True)
class ExportRequest:
    """What the worker asks for: which handler, with which stored params, into which file."""

    handler: ExportHandler[Any]
    params: dict[str, Any]
    file_format: str
    path: Path
    time_zone: str
    max_rows: int
    parallel: ParallelEncoding | None = None


async def export_to_file(source: RowSource, request: ExportRequest, progress: Progress) -> int:
    """Write the export to ``request.path`` and return the number of data rows.

    Everything is read from ``source`` in one read-only, repeatable-read transaction (parts on
    connections of their own, in its snapshot), so the row count announced at the start is
    exactly the number of rows in the file.
    """
    conn = source.conn
    handler = request.handler
    file_format = _format_named(request.file_format)
    sql = build_export_sql(
        handler.columns, handler.query_for(request.params), file_format.value_sql
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
        job = FileJob(
            sql,
            total,
            handler.title,
            tuple(handler.columns),
            request.path,
            request.time_zone,
            source.dsn,
            request.parallel,
        )
        rows = await file_format.write(conn, job, progress)
    progress.done = rows
    return rows


def _format_named(name: str) -> FileFormat:
    try:
        return FORMATS[name]
    except KeyError:
        # Stored by an API that knows more formats than this worker (a deployment under way).
        raise ExportFailed(f"this worker cannot write {name!r} files") from None
