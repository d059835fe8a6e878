"""The ceilings an export is measured against, each in a process of its own.

- ``copy``: PostgreSQL's ``COPY (export query) TO STDOUT WITH CSV`` through asyncpg into a file;
- ``cursor``: an asyncpg server-side cursor reading the xlsx-shaped rows, rows discarded;
- ``xlsx``: xlsxwriter in constant_memory mode writing those rows with no database: they are
  loaded first (not timed), then only writing and closing the workbook are timed.

The statements are the account export's own, built by the project for each format; the
measuring happens in ``bench.ceiling_process``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from bench.ceiling_process import CeilingJob, CeilingResult
from exporter.registry import ColumnKind, load_handlers
from exporter.sql_select import build_export_sql

EXPORT_TYPE = "account"
TIME_ZONE = "Asia/Shanghai"
MAX_SHEET_DATA_ROWS = 1_048_575  # one sheet: Excel's row limit less the header
ROOT = Path(__file__).resolve().parent.parent

_CELLS = {ColumnKind.INTEGER: "number", ColumnKind.DATETIME: "datetime"}


class CeilingFailed(Exception):
    """A ceiling's process failed or saw another number of rows than the data set holds."""


def ceiling_job(kind: str, dsn: str, work_dir: Path) -> CeilingJob:
    """What the ceiling process needs: the export's statement for the format, and its columns."""
    handler = load_handlers().get(EXPORT_TYPE)
    sql = build_export_sql(handler.columns, handler.query_for({}), for_csv=kind == "copy")
    return CeilingJob(
        kind=kind,
        dsn=dsn,
        work_dir=str(work_dir),
        sql=sql.rows,
        args=list(sql.args),
        time_zone=TIME_ZONE,
        labels=[column.label for column in handler.columns],
        cells=[_CELLS.get(column.kind, "string") for column in handler.columns],
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
