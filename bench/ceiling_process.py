"""One ceiling, measured in a process of its own that imports nothing of the project.

Reads a job as JSON on stdin (what to measure, the statement and its arguments, the cell kind of
each column), prints a ``CeilingResult`` as one JSON line. Staying clear of the project's imports
keeps the process's memory to what the measured work itself needs.
``python -m bench.ceiling_process < job.json``
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import xlsxwriter

from bench.memory import PeakRss

CURSOR_BATCH_ROWS = 5_000


@dataclass(frozen=True)
class CeilingJob:
    kind: str  # copy or copy-csv, cursor, xlsx
    dsn: str
    work_dir: str
    sql: str
    args: list[Any]
    time_zone: str
    labels: list[str]  # column headers
    # number, datetime or string, per value of a row; a number or datetime is followed by
    # "text-instead", the text of a value Excel cannot hold, written in the same cell instead.
    cells: list[str]


@dataclass(frozen=True)
class CeilingResult:
    kind: str
    rows: int
    seconds: float
    peak_rss_bytes: int
    file_bytes: int | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


async def _snapshot(job: CeilingJob) -> asyncpg.Connection:
    """A connection inside the read-only snapshot an export reads in, in the export's zone."""
    conn = await asyncpg.connect(job.dsn)
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    await conn.execute("SELECT set_config('TimeZone', $1, true)", job.time_zone)
    return conn


def _peak_rss_bytes() -> int:
    """This process's high-water mark (Linux). Not getrusage's ru_maxrss: that one keeps the
    peak of the forked copy of the parent from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def copy_ceiling(job: CeilingJob) -> CeilingResult:
    out = Path(job.work_dir) / "ceiling.csv"
    conn = await _snapshot(job)
    try:
        started = time.perf_counter()
        status = await conn.copy_from_query(job.sql, *job.args, output=out, format="csv")
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    size = out.stat().st_size
    out.unlink()
    return CeilingResult(job.kind, int(status.split()[-1]), seconds, _peak_rss_bytes(), size)


async def cursor_ceiling(job: CeilingJob) -> CeilingResult:
    conn = await _snapshot(job)
    try:
        started = time.perf_counter()
        cursor = await conn.cursor(job.sql, *job.args)
        rows = 0
        while batch := await cursor.fetch(CURSOR_BATCH_ROWS):
            rows += len(batch)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return CeilingResult(job.kind, rows, seconds, _peak_rss_bytes(), None)


CellWriter = tuple[Callable[..., int], Any]
TEXT_INSTEAD = "text-instead"


def _cell_writer(sheet: Any, cell: str, date_format: Any) -> CellWriter:
    """The worksheet method for a column's values and the format it passes with each."""
    if cell == "number":
        return sheet.write_number, None
    if cell == "datetime":
        return sheet.write_datetime, date_format
    return sheet.write_string, None


def write_workbook(
    path: Path, labels: Sequence[str], cells: Sequence[str], rows: Iterable[Iterable[Any]]
) -> None:
    """The rows as one sheet: the least work xlsxwriter needs for the export's cells."""
    # The export's strings_to_* options only steer xlsxwriter's generic write(), never used here.
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "tmpdir": str(path.parent)})
    sheet = workbook.add_worksheet("accounts")
    bold = workbook.add_format({"bold": True})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for col, label in enumerate(labels):
        sheet.write_string(0, col, label, bold)
    writers = []
    col = -1
    for cell in cells:
        col += cell != TEXT_INSTEAD
        writers.append((col, *_cell_writer(sheet, cell, date_format)))
    for row_number, values in enumerate(rows, start=1):
        for (col, write, cell_format), value in zip(writers, values, strict=True):
            if value is not None:
                write(row_number, col, value, cell_format)
    workbook.close()


async def _load_rows(job: CeilingJob) -> list[asyncpg.Record]:
    conn = await _snapshot(job)
    try:
        return await conn.fetch(job.sql, *job.args)
    finally:
        await conn.close()


def xlsx_ceiling(job: CeilingJob) -> CeilingResult:
    """Only the writing is timed; its memory is reported as if the rows had been streamed.

    The peak RSS is this process's size before loading plus what the writing added on top of
    the loaded rows, which is what a writer fed batch by batch would need.
    """
    out = Path(job.work_dir) / "ceiling.xlsx"
    process = psutil.Process()
    before_load = process.memory_info().rss
    rows = asyncio.run(_load_rows(job))
    # A million loaded rows would otherwise be rescanned by every full collection the writer's
    # garbage triggers, a cost no streaming export pays.
    gc.freeze()
    loaded = process.memory_info().rss
    with PeakRss(os.getpid(), children=False) as peak:
        started = time.perf_counter()
        write_workbook(out, job.labels, job.cells, rows)
        seconds = time.perf_counter() - started
    size = out.stat().st_size
    out.unlink()
    writer_rss = max(0, peak.peak_bytes - loaded)
    return CeilingResult(job.kind, len(rows), seconds, before_load + writer_rss, size)


def measure(job: CeilingJob) -> CeilingResult:
    if job.kind.startswith("copy"):
        return asyncio.run(copy_ceiling(job))
    if job.kind == "cursor":
        return asyncio.run(cursor_ceiling(job))
    return xlsx_ceiling(job)


if __name__ == "__main__":
    print(json.dumps(asdict(measure(CeilingJob(**json.load(sys.stdin))))))
