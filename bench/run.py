"""``make bench``: the export path measured against its ceilings, in one run.

On fresh databases seeded with the bench data set (``--rows``, a tenth of it, a quarter of it): the
COPY, cursor and xlsxwriter ceilings; csv and xlsx exports through the real API and worker, xlsx
both in one process (the worker with ``EXPORTER_ENCODE_PROCESSES=1``) and in parallel (one encoding
process per core, and 2 as well if there are more cores), its rows rendered by PostgreSQL, and in
one process per core with its rows written by xlsxwriter as before
(``EXPORTER_XLSX_ROWS_IN_DATABASE=false``); where the time of the large xlsx goes
(``bench.xlsx_split``); the same at a tenth of the rows; four concurrent quarter-size xlsx exports
from four users (in parallel) against one alone (in one process); a load test of the API next to a
trivial aiohttp endpoint. Prints one table and writes it under ``bench-results/``. Then imports
(``bench.imports``): the accounts exported as csv and xlsx, and as an xlsb, imported back in each
mode, a csv of new accounts applied, at ``--rows`` and at a tenth of it, against a ``COPY FROM`` of
the csv file. Last, storage (``bench.storage``): csv and xlsx exports stored in an S3 bucket (a
SeaweedFS the bench starts) against the same exports stored in a local directory, and the stored
files downloaded through the API against a GET from the store.
Everything it creates or starts is removed or stopped when it ends, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp

from bench.ceiling_process import CeilingResult
from bench.ceilings import MAX_SHEET_DATA_ROWS, measure_ceiling
from bench.databases import (
    EXPORT_PERMISSIONS,
    IMPORT_PERMISSIONS,
    BenchDatabase,
    BenchUser,
    bench_database,
    server_url,
)
from bench.exports import ExportBatch, export_batch
from bench.import_files import import_files
from bench.imports import ImportApiUser, ImportSize, import_size
from bench.load import LoadResult, Request, load_test
from bench.measurements import Measurements
from bench.report import build_report
from bench.stack import (
    DEFAULT_PARALLEL_MIN_ROWS,
    Stack,
    bench_redis_url,
    forget_jobs,
    running_stack,
    running_trivial_app,
)
from bench.storage import FORMATS as STORAGE_FORMATS
from bench.storage import REPEATS as STORAGE_REPEATS
from bench.storage import compare_storages
from bench.xlsx_split import XlsxSplit, measure_split
from exporter.ops.logs import configure_logging

log = logging.getLogger("bench")

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
INTERRUPTED_EXIT = 130

DEFAULT_ROWS = 1_000_000
MIN_ROWS = 1_000
LIST_TASKS = 10_000
# More than a load test sends in its seconds; past it users come round again (still under quota).
POST_USERS = 20_000
CONCURRENT_USERS = 4
# Users of the main database: the first exports, the second owns the tasks the list pages through.
MAIN_USERS = 2
# The worker's EXPORTER_ENCODE_PROCESSES for the single-process path: one encoding process
# writes each workbook, so the worker's own loop stays free as in the default set-up.
SINGLE_PROCESS = 1
# The parallel target is for 2 processes; a machine with more cores shows both.
TARGET_PROCESSES = 2

# Generous bounds, far above the reference figures, so only a hang trips them.
BOUND_BASE_S = 120.0
BOUND_ROWS_PER_S = 5_000
HTTP_READ_TIMEOUT_S = 120.0


def _bound_s(rows: int) -> float:
    return BOUND_BASE_S + rows / BOUND_ROWS_PER_S


async def _phase(name: str, timeout_s: float, work: Awaitable[T]) -> T:
    log.info("%s …", name)
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        result = await work
    log.info("%s: done in %.1f s", name, time.monotonic() - started)
    return result


class Bench:
    """The phases of one run; each stores what it measured in ``self.m`` as it goes."""

    def __init__(self, options: argparse.Namespace, run_dir: Path) -> None:
        self.clients: int = options.clients
        self.only: str | None = options.only
        self.load_seconds: float = options.load_seconds
        self.run_dir = run_dir
        self.work_dir = run_dir / "work"
        self.redis_url = bench_redis_url()
        self.server = server_url()
        rows: int = options.rows
        cores = os.cpu_count() or 1  # the worker's default EXPORTER_ENCODE_PROCESSES
        small_rows = rows // 10
        self.m = Measurements(
            rows=rows,
            small_rows=small_rows,
            quarter_rows=rows // 4,
            cores=cores,
            parallel_processes=(cores, TARGET_PROCESSES) if cores > TARGET_PROCESSES else (cores,),
            # The default at full size; lower in a quick run, whose smaller exports must still
            # take the parallel path for the rows to measure what their labels say.
            parallel_min_rows=min(DEFAULT_PARALLEL_MIN_ROWS, small_rows),
        )

    async def run(self) -> None:
        # A closed terminal or `kill` must clean up like Ctrl-C (asyncio.run's own SIGINT).
        main_task = asyncio.current_task()
        assert main_task is not None
        for stop_signal in STOP_SIGNALS:
            asyncio.get_running_loop().add_signal_handler(stop_signal, main_task.cancel)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=HTTP_READ_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                if self.only == "api":
                    await self._api_only(session)
                    return
                if self.only == "concurrency":
                    await self._concurrency(session)
                    return
                if self.only == "imports":
                    await self._imports(session)
                    return
                if self.only == "storage":
                    await self._storage(session)
                    return
                if self.only == "xlsx":
                    await self._xlsx_only(session)
                    return
                await self._full_size(session)
                await self._small_size(session)
                await self._concurrency(session)
                await self._imports(session)
                await self._storage(session)
        finally:
            for storage in self.run_dir.glob("storage-*"):
                shutil.rmtree(storage, ignore_errors=True)

    def _database(
        self, rows: int, users: int, permissions: tuple[str, ...] = EXPORT_PERMISSIONS
    ) -> AbstractAsyncContextManager[BenchDatabase]:
        return bench_database(
            self.server, rows, user_count=users, timeout_s=_bound_s(rows), permissions=permissions
        )

    def _stack(
        self, db: BenchDatabase, session: aiohttp.ClientSession, encode_processes: int
    ) -> AbstractAsyncContextManager[Stack]:
        return running_stack(
            db,
            self.redis_url,
            self.run_dir,
            session,
            encode_processes=encode_processes,
            parallel_min_rows=self.m.parallel_min_rows,
        )

    async def _ceiling(self, kind: str, db: BenchDatabase) -> CeilingResult:
        bound = _bound_s(db.rows)
        work = measure_ceiling(kind, db.url, db.rows, self.work_dir, timeout_s=bound)
        return await _phase(f"ceiling {kind}, {db.rows:,} rows", bound, work)

    async def _exports(
        self,
        stack: Stack,
        session: aiohttp.ClientSession,
        users: tuple[BenchUser, ...],
        file_format: str,
        encode_processes: int,
        *,
        rows_in_database: bool = True,
    ) -> ExportBatch:
        """Exports by a worker with ``EXPORTER_ENCODE_PROCESSES=encode_processes`` and
        ``EXPORTER_XLSX_ROWS_IN_DATABASE=rows_in_database``, restarted with them first if the
        running one has others."""
        await stack.use_worker(encode_processes, rows_in_database=rows_in_database)
        rows = stack.database.rows
        work = export_batch(stack, session, users, file_format, self.work_dir)
        name = (
            f"{len(users)} x {file_format} export of {rows:,} rows, "
            f"EXPORTER_ENCODE_PROCESSES={encode_processes}"
        )
        if file_format == "xlsx":
            name += f", EXPORTER_XLSX_ROWS_IN_DATABASE={str(rows_in_database).lower()}"
        return await _phase(name, _bound_s(rows * len(users)), work)

    async def _full_size(self, session: aiohttp.ClientSession) -> None:
        m = self.m
        async with self._database(m.rows, MAIN_USERS) as db:
            m.copy = await self._ceiling("copy", db)
            m.copy_csv = await self._ceiling("copy-csv", db)
            m.cursor = await self._ceiling("cursor", db)
            m.xlsxwriter = await self._ceiling("xlsx", db)
            one = db.users[:1]
            async with self._stack(db, session, m.cores) as stack:
                m.csv = await self._exports(stack, session, one, "csv", m.cores)
                for processes in m.parallel_processes:
                    batch = await self._exports(stack, session, one, "xlsx", processes)
                    m.xlsx_parallel[processes] = batch
                m.xlsx_by_writer = await self._xlsx_by_writer(stack, session, one)
                m.xlsx = await self._exports(stack, session, one, "xlsx", SINGLE_PROCESS)
                m.csv_single = await self._exports(stack, session, one, "csv", SINGLE_PROCESS)
                await stack.stop_worker()  # POSTed tasks must stay queued, not run
                await self._load_tests(stack, db, session)
            m.xlsx_split = await self._xlsx_split(db)

    async def _xlsx_only(self, session: aiohttp.ClientSession) -> None:
        """Issue 16's figures: the xlsxwriter ceiling, csv and xlsx both ways at full size, xlsx
        both ways at the small size, the time split."""
        m = self.m
        async with self._database(m.rows, 1) as db:
            m.xlsxwriter = await self._ceiling("xlsx", db)
            async with self._stack(db, session, m.cores) as stack:
                m.csv = await self._exports(stack, session, db.users, "csv", m.cores)
                batch = await self._exports(stack, session, db.users, "xlsx", m.cores)
                m.xlsx_parallel[m.cores] = batch
                m.xlsx_by_writer = await self._xlsx_by_writer(stack, session, db.users)
            m.xlsx_split = await self._xlsx_split(db)
        async with (
            self._database(m.small_rows, 1) as db,
            self._stack(db, session, m.cores) as stack,
        ):
            await self._small_xlsx(stack, session, db.users)

    async def _xlsx_by_writer(
        self, stack: Stack, session: aiohttp.ClientSession, users: tuple[BenchUser, ...]
    ) -> ExportBatch:
        """xlsx in ``cores`` processes with the rows written by xlsxwriter: the previous path."""
        return await self._exports(
            stack, session, users, "xlsx", self.m.cores, rows_in_database=False
        )

    async def _small_xlsx(
        self, stack: Stack, session: aiohttp.ClientSession, users: tuple[BenchUser, ...]
    ) -> None:
        m = self.m
        m.xlsx_small_parallel = await self._exports(stack, session, users, "xlsx", m.cores)
        m.xlsx_small_by_writer = await self._xlsx_by_writer(stack, session, users)

    async def _xlsx_split(self, db: BenchDatabase) -> XlsxSplit:
        work = measure_split(db.url, db.rows, self.m.cores, self.run_dir)
        # Three passes over the rows, a splice and a profiled range.
        return await _phase(f"xlsx time split, {db.rows:,} rows", _bound_s(4 * db.rows), work)

    async def _api_only(self, session: aiohttp.ClientSession) -> None:
        """The load tests alone, on a data set just large enough for their users."""
        async with (
            self._database(2 * POST_USERS, MAIN_USERS) as db,
            self._stack(db, session, SINGLE_PROCESS) as stack,
        ):
            await stack.stop_worker()
            await self._load_tests(stack, db, session)

    async def _load_tests(
        self, stack: Stack, db: BenchDatabase, session: aiohttp.ClientSession
    ) -> None:
        async with running_trivial_app(self.run_dir, session) as ping_url:
            ping = Request("GET", ping_url, 200, lambda _: ({}, None))
            self.m.trivial = await self._load("trivial GET /ping", ping)
        # Each POST from another user, as when many people click Export: a user's own
        # unfinished tasks are capped, and an identical unfinished one is handed back instead.
        posters = await db.active_users(POST_USERS)
        post = Request.json(
            "POST",
            f"{stack.base_url}/api/export-tasks",
            [user.token for user in posters],
            lambda number: {
                "type": "account",
                "format": "csv",
                "params": {"keyword": f"load-{number}"},
            },
            expected_status=202,
        )
        try:
            self.m.post = await self._load("POST /api/export-tasks", post)
        finally:
            deleted = await db.delete_pending_tasks()
            keys = await forget_jobs(self.redis_url, stack.queue_name, deleted)
            log.info(
                "deleted the %d tasks the POST load created, %d Redis keys", len(deleted), keys
            )
        lister = db.users[-1]
        await db.add_finished_tasks(lister, LIST_TASKS)
        listing = Request.json("GET", f"{stack.base_url}/api/export-tasks", [lister.token])
        self.m.listing = await self._load("GET /api/export-tasks", listing)

    async def _load(self, name: str, request: Request) -> LoadResult:
        work = load_test(name, request, clients=self.clients, duration_s=self.load_seconds)
        return await _phase(f"load test {name}", self.load_seconds + BOUND_BASE_S, work)

    async def _small_size(self, session: aiohttp.ClientSession) -> None:
        m = self.m
        async with (
            self._database(m.small_rows, 1) as db,
            self._stack(db, session, m.cores) as stack,
        ):
            m.csv_small = await self._exports(stack, session, db.users, "csv", m.cores)
            await self._small_xlsx(stack, session, db.users)
            m.xlsx_small = await self._exports(stack, session, db.users, "xlsx", SINGLE_PROCESS)

    async def _concurrency(self, session: aiohttp.ClientSession) -> None:
        m = self.m
        async with (
            self._database(m.quarter_rows, CONCURRENT_USERS) as db,
            self._stack(db, session, SINGLE_PROCESS) as stack,
        ):
            # The baseline, one after another on a single core, is 4 x this one.
            m.xlsx_quarter = await self._exports(
                stack, session, db.users[:1], "xlsx", SINGLE_PROCESS
            )
            m.xlsx_quarter_concurrent = await self._exports(
                stack, session, db.users, "xlsx", m.cores
            )

    async def _imports(self, session: aiohttp.ClientSession) -> None:
        m = self.m
        m.imports = await self._import_size(session, m.rows)
        m.imports_small = await self._import_size(session, m.small_rows)

    async def _storage(self, session: aiohttp.ClientSession) -> None:
        m = self.m
        async with self._database(m.rows, 1) as db:
            work = compare_storages(
                db,
                self.redis_url,
                self.run_dir,
                session,
                encode_processes=m.cores,
                parallel_min_rows=m.parallel_min_rows,
            )
            # Each format, both storages, REPEATS times, each S3 file downloaded twice.
            bound = _bound_s(2 * len(STORAGE_FORMATS) * STORAGE_REPEATS * db.rows)
            m.storage = await _phase(f"storages, {db.rows:,} rows", bound, work)

    async def _import_size(self, session: aiohttp.ClientSession, rows: int) -> ImportSize:
        """The files exported, then imported (by a fresh worker per format: what exporting or
        another format left in the worker's memory is not charged to the imports)."""
        async with (
            self._database(rows, 1, IMPORT_PERMISSIONS) as db,
            # The xlsx written whole by one process: a parallel export repeats the header row
            # (the first part writes one too), which an import reads as a row of data.
            running_stack(
                db,
                self.redis_url,
                self.run_dir,
                session,
                encode_processes=SINGLE_PROCESS,
                parallel_min_rows=rows + 1,
            ) as stack,
        ):
            work_dir = self.work_dir / f"imports-{rows}"
            try:
                files = await _phase(
                    f"import files of {rows:,} rows",
                    _bound_s(4 * rows),
                    import_files(stack, session, db.users[0], work_dir),
                )
                api = ImportApiUser(session, stack.base_url, db.users[0])
                # Seven imports: three formats validated and applied, and the new accounts.
                return await _phase(
                    f"imports of {rows:,} rows",
                    _bound_s(7 * rows),
                    import_size(stack, files, api),
                )
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="accounts in the main data set"
    )
    parser.add_argument(
        "--clients", type=int, default=50, help="concurrent HTTP clients of the load test"
    )
    parser.add_argument(
        "--load-seconds", type=float, default=10.0, help="measured seconds of each load test"
    )
    parser.add_argument(
        "--only",
        choices=["api", "concurrency", "imports", "storage", "xlsx"],
        help="run only these measurements: the API load tests, the concurrent exports, the "
        "imports, the exports to S3 against a local directory, or the large xlsx export's "
        "figures (issue 16)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="where results are written"
    )
    options = parser.parse_args(argv)
    if not MIN_ROWS <= options.rows <= MAX_SHEET_DATA_ROWS:
        parser.error(f"--rows must be between {MIN_ROWS:,} and {MAX_SHEET_DATA_ROWS:,} (one sheet)")
    return options


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    configure_logging()
    started = datetime.now(UTC)
    run_dir = options.out / f"{started:%Y%m%dT%H%M%SZ}-{options.rows}"
    bench = Bench(options, run_dir)
    error = None
    try:
        asyncio.run(bench.run())
    except Exception as exc:
        log.exception("bench failed")
        error = f"{type(exc).__name__}: {exc}"
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.warning("bench interrupted; what was started is stopped")
        error = "interrupted"
    meta = {
        "command": shlex.join(["python", "-m", "bench.run", *(argv or sys.argv[1:])]),
        "started": started.isoformat(),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "rows": options.rows,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.platform(),
    }
    report = build_report(
        bench.m, clients=options.clients, meta=meta, error=error, only=options.only
    )
    markdown, data = report.write(run_dir)
    print(report.markdown())
    print(f"written: {markdown} and {data}")
    return 0 if error is None else INTERRUPTED_EXIT if error == "interrupted" else 1


if __name__ == "__main__":
    sys.exit(main())
