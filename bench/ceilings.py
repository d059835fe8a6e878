"""The ceilings an export is measured against, each in a process of its own.

- ``copy``: PostgreSQL's ``COPY (query) TO STDOUT WITH CSV`` through asyncpg into a file, where
  the query is the account export's columns as stored: its join, its order, no formatting;
- ``copy-csv``: the same for the statement the csv export really runs, with the formatting
  done in SQL (not a ceiling: it shows what that formatting costs);
- ``cursor``: an asyncpg server-side cursor reading the plain query's rows, rows discarded;
- ``xlsx``: xlsxwriter in constant_memory mode, no database, writing the rows the xlsx export
  writes (its statement's values): loaded first, not timed; only writing and closing are timed.

The measuring happens in ``bench.ceiling_process``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.ceiling_process import TEXT_INSTEAD, CeilingJob, CeilingResult
from exporter.exports.columns import ColumnKind
from exporter.exports.formats import FORMATS
from exporter.exports.registry import ExportHandler, load_handlers
from exporter.exports.sql import build_export_sql

EXPORT_TYPE = "account"
TIME_ZONE = "Asia/Shanghai"
MAX_SHEET_DATA_ROWS = 1_048_575  # one sheet: Excel's row limit less the header
ROOT = Path(__file__).resolve().parent.parent

# The values of a row of the xlsx statement, by column kind: a number or a date, else its text.
_CELLS = {
    ColumnKind.INTEGER: ["number", TEXT_INSTEAD],
    ColumnKind.DATETIME: ["datetime", TEXT_INSTEAD],
}


class CeilingFailed(Exception):
    """A ceiling's process failed or saw another number of rows than the data set holds."""


def _statement(kind: str, handler: ExportHandler[Any]) -> tuple[str, list[Any]]:
    query = handler.query_for({})
    if kind in ("copy", "cursor"):
        columns = ", ".join(column.sql for column in handler.columns)
        plain = f"SELECT {columns} FROM {query.source}{query.where_sql} ORDER BY {query.order_by}"
        return plain, list(query.args)
    sql = build_export_sql(
        handler.columns, query, FORMATS["csv" if kind == "copy-csv" else "xlsx"].value_sql
    )
    return sql.rows, list(sql.args)


def ceiling_job(kind: str, dsn: str, work_dir: Path) -> CeilingJob:
    """What the ceiling process needs: the statement to read, and the export's columns."""
    handler = load_handlers().get(EXPORT_TYPE)
    sql, args = _statement(kind, handler)
    return CeilingJob(
        kind=kind,
        dsn=dsn,
        work_dir=str(work_dir),
        sql=sql,
        args=args,
        time_zone=TIME_ZONE,
        labels=[column.label for column in handler.columns],
        cells=[cell for column in handler.columns for cell in _CELLS.get(column.kind, ["string"])],
    )


async def measure_ceiling(
    kind: str, dsn: str, rows: int, work_dir: Path, *, timeout_s: float
) -> CeilingResult:
    """Run one ceiling in a child process; it must see exactly ``rows`` rows."""
    job = json.dumps(asdict(ceiling_job(kind, dsn, work_dir))).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ceiling_process",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await child.communicate(job)
    finally:
        if child.returncode is None:  # timed out or cancelled: it must not outlive the bench
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise CeilingFailed(f"{kind} ceiling exited {child.returncode}: {err.decode()[-2000:]}")
    result = CeilingResult(**json.loads(out))
    if result.rows != rows:
        raise CeilingFailed(f"{kind} ceiling read {result.rows} rows, expected {rows}")
    return result
