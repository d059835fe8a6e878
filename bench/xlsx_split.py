"""Where the time of a large xlsx export goes: PostgreSQL rendering, transfer, deflate, splice.

For the account export on the bench database, over the ranges the worker plans for
``processes`` encoding processes, each range in a spawned process of its own as in the worker:

- render: PostgreSQL renders each range's rows, counted and measured on the server only;
- fetch: the same rows rendered and fetched by the process, discarded (transfer = fetch - render);
- deflate: the fetched bytes through the export's DeflateStream (ISA-L), only that timed; the
  slowest range, since each process compresses its own;
- splice: the frame written by xlsxwriter and the parts assembled into the workbook.

Then one range encoded for real (``encode_part``) under cProfile in a process of its own; the
listing goes to the run's folder, the functions with the most own time into the report.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import multiprocessing
import os
import pstats
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench.ceilings import EXPORT_TYPE, TIME_ZONE
from exporter.exports.formats import FORMATS
from exporter.exports.formats.xlsx_parts import (
    RENDERED_BATCH_ROWS,
    PartJob,
    _frame_and_assemble,
    encode_part,
)
from exporter.exports.formats.xlsx_row_sql import rendered_rows_sql
from exporter.exports.formats.xlsx_workbook import MAX_SHEET_DATA_ROWS
from exporter.exports.formats.zip_splice import Deflated, DeflateStream, SheetRows
from exporter.exports.ranges import Range, plan_ranges
from exporter.exports.registry import load_handlers
from exporter.exports.snapshots import connection_in_snapshot, export_snapshot
from exporter.exports.sql import build_export_sql
from exporter.processes import die_with_parent

T = TypeVar("T")

# The worker's own statement setting for a rendered part (xlsx_parts._render_part).
JIT_OFF = "SET LOCAL jit = off"
PROFILE_TOP = 30  # lines of each listing in the file
REPORTED_FUNCTIONS = 6
# Long enough for every process of the pool to have started and imported this module.
WARM_UP_S = 0.5


class SplitFailed(Exception):
    """A range read another number of rows than planned."""


@dataclass(frozen=True)
class RangeJob:
    step: str  # render, fetch or deflate
    dsn: str
    snapshot: str
    sql: str  # the rendered statement; the range's offset, limit and first row after args
    args: tuple[Any, ...]
    range: Range
    deflated: Path  # where the deflate step writes the range's stream


@dataclass(frozen=True)
class RangeResult:
    seconds: float  # the step's own time in its process
    xml_bytes: int
    part: Deflated | None


@dataclass(frozen=True)
class ProfiledFunction:
    name: str
    own_s: float
    cumulative_s: float


@dataclass(frozen=True)
class XlsxSplit:
    rows: int
    ranges: int
    render_s: float  # wall time, the ranges at once
    fetch_s: float  # wall time, the ranges at once
    deflate_s: float  # the slowest range
    splice_s: float
    xml_bytes: int
    deflated_bytes: int
    part_rows: int  # the profiled range's
    part_s: float  # its encode_part, profiled (so slower than without)
    profile_listing: str  # path of the listing
    profile_top: tuple[ProfiledFunction, ...]  # by own time

    @property
    def transfer_s(self) -> float:
        # Two noisy timings: a small data set's transfer can come out below zero.
        return max(0.0, self.fetch_s - self.render_s)


def _warm_up() -> None:
    time.sleep(WARM_UP_S)


def measure_range(job: RangeJob) -> RangeResult:
    """In a pool process: one step over one range."""
    return asyncio.run(_measure_range(job))


async def _measure_range(job: RangeJob) -> RangeResult:
    bounds = (job.range.offset, job.range.limit, job.range.first_row)
    async with connection_in_snapshot(job.dsn, job.snapshot, TIME_ZONE) as conn:
        await conn.execute(JIT_OFF)
        if job.step == "render":
            started = time.perf_counter()
            counted = await conn.fetchrow(
                f"SELECT count(*), sum(octet_length(b)) FROM ({job.sql}) AS x(b)",
                *job.args,
                *bounds,
            )
            assert counted is not None, "an aggregate gives one row"
            rows, size = counted
            result = RangeResult(time.perf_counter() - started, size or 0, None)
        else:
            stream = DeflateStream(job.deflated) if job.step == "deflate" else None
            rows, deflate_s = 0, 0.0
            started = time.perf_counter()
            cursor = await conn.cursor(job.sql, *job.args, *bounds)
            while batch := await cursor.fetch(RENDERED_BATCH_ROWS):
                rows += len(batch)
                if stream is not None:
                    chunk = b"".join(row[0] for row in batch)
                    begun = time.perf_counter()
                    stream.write(chunk)
                    deflate_s += time.perf_counter() - begun
            if stream is None:
                result = RangeResult(time.perf_counter() - started, 0, None)
            else:
                begun = time.perf_counter()
                part = stream.finish()
                deflate_s += time.perf_counter() - begun
                result = RangeResult(deflate_s, part.size, part)
    if rows != job.range.limit:
        raise SplitFailed(f"{job.step}: {rows} rows, expected {job.range.limit}")
    return result


def profile_part(job: PartJob, listing: Path) -> tuple[float, tuple[ProfiledFunction, ...]]:
    """In a pool process: ``encode_part`` under cProfile, its listing written to ``listing``;
    its seconds and the functions with the most own time. (cProfile sees the main thread
    only: the compression, in a thread, shows as the time spent waiting for it.)"""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(encode_part, job)
    seconds = time.perf_counter() - started
    profiler.dump_stats(listing.with_suffix(".prof"))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
    stats.sort_stats("tottime").print_stats(PROFILE_TOP)
    listing.write_text(text.getvalue(), encoding="utf-8")
    functions = stats.get_stats_profile().func_profiles
    top = sorted(functions.items(), key=lambda item: item[1].tottime, reverse=True)
    return seconds, tuple(
        ProfiledFunction(
            # Built-ins have no file ("~"); a Python function is named by its file and line.
            name
            if profile.file_name == "~"
            else f"{Path(profile.file_name).name}:{profile.line_number}({name})",
            profile.tottime,
            profile.cumtime,
        )
        for name, profile in top[:REPORTED_FUNCTIONS]
    )


async def _timed(
    pool: ProcessPoolExecutor, work: Callable[..., T], calls: Sequence[tuple[Any, ...]]
) -> tuple[float, list[T]]:
    """The wall time of the calls run at once in the pool, and their results."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    results = await asyncio.gather(*(loop.run_in_executor(pool, work, *call) for call in calls))
    return time.perf_counter() - started, list(results)


async def measure_split(dsn: str, rows: int, processes: int, run_dir: Path) -> XlsxSplit:
    """The time split of the account export of ``rows`` rows over ``processes`` ranges."""
    handler = load_handlers().get(EXPORT_TYPE)
    sql = build_export_sql(handler.columns, handler.query_for({}), FORMATS["xlsx"].value_sql)
    rendered = rendered_rows_sql(handler.columns, sql.ranged, len(sql.args) + 3)
    ranges = plan_ranges(rows, processes, max_sheet_rows=MAX_SHEET_DATA_ROWS)
    work_dir = run_dir / "work" / "xlsx-split"
    work_dir.mkdir(parents=True, exist_ok=True)
    pool = ProcessPoolExecutor(
        len(ranges),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await export_snapshot(conn)
            await _timed(pool, _warm_up, [()] * len(ranges))

            def jobs(step: str) -> list[tuple[RangeJob]]:
                return [
                    (RangeJob(step, dsn, snapshot, rendered, sql.args, part, work_dir / f"{n}.z"),)
                    for n, part in enumerate(ranges)
                ]

            render_s, rendered_ranges = await _timed(pool, measure_range, jobs("render"))
            fetch_s, _ = await _timed(pool, measure_range, jobs("fetch"))
            _, deflated_ranges = await _timed(pool, measure_range, jobs("deflate"))
            parts = [result.part for result in deflated_ranges if result.part is not None]
            sheets = [SheetRows(rows=rows, parts=parts)]
            frame_call = (work_dir / "frame.xlsx", handler.title, handler.columns, sheets)
            splice_s, _ = await _timed(
                pool,
                _frame_and_assemble,
                [(*frame_call, work_dir / "workbook.xlsx", MAX_SHEET_DATA_ROWS)],
            )
            first = ranges[0]
            part_job = PartJob(
                dsn,
                snapshot,
                rendered,
                sql.args,
                first,
                handler.title,
                handler.columns,
                TIME_ZONE,
                work_dir,
                index=0,
                rendered=True,
            )
            listing = run_dir / "xlsx-part-profile.txt"
            _, [(part_s, top)] = await _timed(pool, profile_part, [(part_job, listing)])
    finally:
        await conn.close()
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work_dir, ignore_errors=True)
    return XlsxSplit(
        rows=rows,
        ranges=len(ranges),
        render_s=render_s,
        fetch_s=fetch_s,
        deflate_s=max(result.seconds for result in deflated_ranges),
        splice_s=splice_s,
        xml_bytes=sum(result.xml_bytes for result in rendered_ranges),
        deflated_bytes=sum(part.compressed_size for part in parts),
        part_rows=first.limit,
        part_s=part_s,
        profile_listing=str(listing),
        profile_top=top,
    )
