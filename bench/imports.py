"""Imports through the real API and worker: POST the file, poll until finished, check the
counts; and the baseline a csv import is measured against, a plain ``COPY FROM`` of the file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.exports import ApiUser, ExportFailed
from bench.import_files import ImportFiles
from bench.loop_lag import max_loop_lag_ms
from bench.memory import PeakRss
from bench.stack import Stack, StackFailed
from bench.statement_split import StatementSampler, StatementSplit

log = logging.getLogger("bench")

IMPORT_TYPE = "account"
IMPORTED_TABLE = "accounts"
# The csv export's 9 columns, all text, in a temporary table as the import's staging is.
BARE_TABLE = "bare_accounts"
BARE_COLUMNS = tuple(f"c_{position}" for position in range(9))
FIRST_ERRORS_LOGGED = 5


@dataclass(frozen=True)
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class ImportRun:
    """One import, POST to finished, and what the worker did meanwhile."""

    file_format: str
    mode: str  # validate or apply
    rows: int
    file_bytes: int
    seconds: float  # the POST (upload included) until the task reads completed
    counts: ImportCounts
    expected: ImportCounts
    worker_peak_rss_bytes: int
    loop_lag_ms: float | None
    split: StatementSplit | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class ImportCrash:
    """An import during which the worker died."""

    file_format: str
    mode: str
    expected: ImportCounts
    reason: str  # the process's exit, and where its log is


@dataclass(frozen=True)
class ImportSize:
    """Every import of one size of data set, and the COPY baseline of its csv file."""

    rows: int
    copy_s: float
    runs: tuple[ImportRun, ...]
    crashes: tuple[ImportCrash, ...]

    @property
    def copy_rows_per_s(self) -> float:
        return self.rows / self.copy_s


class ImportApiUser(ApiUser):
    tasks_path = "/api/import-tasks"

    async def upload(self, path: Path, mode: str) -> str:
        form = aiohttp.FormData()
        form.add_field("type", IMPORT_TYPE)
        form.add_field("mode", mode)
        form.add_field("on_error", "abort")
        with path.open("rb") as file:
            form.add_field("file", file, filename=path.name)
            answer = await self._request("POST", self.tasks_path, data=form)
        task_id: str = answer["id"]
        return task_id

    async def delete(self, task_id: str) -> None:
        """Deleted once measured: each task keeps its upload, and the uploads count against
        the user's quota of kept bytes."""
        async with self._session.delete(
            f"{self._base_url}{self.tasks_path}/{task_id}", headers=self._headers
        ) as response:
            if response.status != 204:
                raise ExportFailed(f"DELETE import {task_id}: {response.status}")


def _counts(task: dict[str, Any]) -> ImportCounts:
    return ImportCounts(**task["counts"])


@dataclass(frozen=True)
class PlannedImport:
    file_format: str
    path: Path
    mode: str
    expected: ImportCounts


async def run_import(
    stack: Stack,
    api: ImportApiUser,
    planned: PlannedImport,
) -> ImportRun | ImportCrash:
    """One import, timed from the POST to completion, the worker sampled; an ``ImportCrash``
    if the worker died meanwhile (its task deleted: the sweeper would run it again beside the
    next import)."""
    path, mode, expected = planned.path, planned.mode, planned.expected
    worker = stack.worker
    assert worker is not None, "imports need the worker running"
    rows = stack.database.rows
    started_wall = time.time()
    sampler = StatementSampler(stack.database.url, IMPORTED_TABLE, worker.service.pid)
    with PeakRss(worker.service.pid, children=False) as rss:
        async with sampler:
            started = time.perf_counter()
            task_id = await api.upload(path, mode)
            try:
                task = await api.wait_finished(task_id, stack.check_running)
            except StackFailed as exc:
                await api.delete(task_id)
                return ImportCrash(planned.file_format, mode, expected, str(exc))
            seconds = time.perf_counter() - started
    # An apply that rejects rows fails, and says what it found: that is measured too.
    if task["counts"] is None:
        raise ExportFailed(f"import {task_id} ended {task['status']}: {task['error']}")
    await api.delete(task_id)
    counts = _counts(task)
    if counts != expected:
        log.warning(
            "import of %s (%s): counts %s, expected %s; first errors: %s",
            path.name,
            mode,
            counts,
            expected,
            task["errors"][:FIRST_ERRORS_LOGGED],
        )
    return ImportRun(
        file_format=task["format"],
        mode=mode,
        rows=rows,
        file_bytes=path.stat().st_size,
        seconds=seconds,
        counts=counts,
        expected=expected,
        worker_peak_rss_bytes=rss.peak_bytes,
        loop_lag_ms=await max_loop_lag_ms(
            worker.loop_lag_log, started_wall, started_wall + seconds
        ),
        split=sampler.split,
    )


async def copy_baseline(url: str, csv_file: Path) -> float:
    """Seconds to COPY the csv file into a bare temporary table of text columns."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE {BARE_TABLE} ("
                + ", ".join(f"{column} text" for column in BARE_COLUMNS)
                + ") ON COMMIT DROP"
            )
            started = time.perf_counter()
            await conn.copy_to_table(
                BARE_TABLE, source=csv_file, columns=BARE_COLUMNS, format="csv", header=True
            )
            return time.perf_counter() - started
    finally:
        await conn.close()


async def _fresh_worker(stack: Stack, files: ImportFiles, api: ImportApiUser) -> None:
    """A worker started afresh, so that its peak memory is the next format's own, and warmed up
    by a small import (its first task opens connections and plans statements)."""
    await stack.restart_worker()
    task_id = await api.upload(files.warm_up_csv, "validate")
    task = await api.wait_finished(task_id, stack.check_running)
    if task["status"] != "completed":
        raise ExportFailed(f"warm-up import {task['id']} ended {task['status']}: {task['error']}")
    await api.delete(task["id"])


def planned_imports(files: ImportFiles, rows: int) -> list[list[PlannedImport]]:
    """By format, each with a fresh worker: every file validated and applied (every row
    unchanged), and after the csv the csv of new usernames applied (every row created)."""
    unchanged, created = ImportCounts(unchanged=rows), ImportCounts(created=rows)
    plan = [
        [PlannedImport(file_format, path, mode, unchanged) for mode in ("validate", "apply")]
        for file_format, path in files.by_format().items()
    ]
    plan[0].append(PlannedImport("csv", files.new_csv, "apply", created))
    return plan


async def import_size(stack: Stack, files: ImportFiles, api: ImportApiUser) -> ImportSize:
    """The COPY baseline, then the planned imports; a worker that dies is started again and
    the next import measured."""
    rows = stack.database.rows
    copy_s = await copy_baseline(stack.database.url, files.csv)
    runs: list[ImportRun] = []
    crashes: list[ImportCrash] = []
    for imports in planned_imports(files, rows):
        await _fresh_worker(stack, files, api)
        for planned in imports:
            result = await run_import(stack, api, planned)
            if isinstance(result, ImportCrash):
                log.error("import %s %s: %s", planned.file_format, planned.mode, result.reason)
                crashes.append(result)
                await stack.restart_worker()
                continue
            log.info(
                "import %s %s: %.1f s, %s",
                planned.path.name,
                planned.mode,
                result.seconds,
                result.counts,
            )
            runs.append(result)
    return ImportSize(rows, copy_s, tuple(runs), tuple(crashes))
