"""Exports through the real API and worker: POST, poll until completed, download, check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.databases import BenchUser
from bench.loop_lag import max_loop_lag_ms
from bench.memory import PeakRss
from bench.stack import Stack

EXPORT_TYPE = "account"
# The completion is polled at 2% of the time the export has taken so far (so it is seen at
# most ~2% late), within these bounds: a 1 s csv export is not blurred, and four long xlsx
# exports at once do not load the API and the cores they share.
POLL_SHARE = 0.02
POLL_MIN_S = 0.01
POLL_MAX_S = 0.25
DOWNLOAD_CHUNK_BYTES = 1 << 20


class ExportFailed(Exception):
    """An export did not complete, or its file is not what the task says."""


@dataclass(frozen=True)
class OneExport:
    seconds: float  # POST until the task reads completed
    download_s: float
    file_bytes: int


@dataclass(frozen=True)
class ExportBatch:
    """Exports started together, one per user, each of ``rows`` rows."""

    file_format: str
    rows: int
    encode_processes: int  # the worker's EXPORTER_ENCODE_PROCESSES; 0: single-process path
    rows_in_database: bool  # the worker's EXPORTER_XLSX_ROWS_IN_DATABASE
    exports: tuple[OneExport, ...]
    wall_s: float  # the POSTs until the last task reads completed
    worker_peak_rss_bytes: int
    # The largest single process below the worker (its encoding processes); 0 if none.
    child_peak_rss_bytes: int
    loop_lag_ms: float | None

    @property
    def rows_per_s(self) -> float:
        return self.rows * len(self.exports) / self.wall_s


class ApiUser:
    tasks_path = "/api/export-tasks"

    def __init__(self, session: aiohttp.ClientSession, base_url: str, user: BenchUser) -> None:
        self._session = session
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {user.token}"}

    async def _request(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        """The JSON answer; ``body`` is aiohttp's ``json=`` or ``data=``."""
        async with self._session.request(
            method, self._base_url + path, headers=self._headers, **body
        ) as response:
            answer: dict[str, Any] = await response.json()
            if response.status >= 400:
                raise ExportFailed(f"{method} {path}: {response.status} {answer}")
            return answer

    async def create(self, file_format: str) -> str:
        body = {"type": EXPORT_TYPE, "format": file_format, "params": {}}
        task = await self._request("POST", self.tasks_path, json=body)
        task_id: str = task["id"]
        return task_id

    async def wait_finished(
        self, task_id: str, check: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """The task once it is neither pending nor running; ``check`` (which raises when the
        task can no longer finish: its worker died, say) is called at every poll."""
        started = time.perf_counter()
        while True:
            task = await self._request("GET", f"{self.tasks_path}/{task_id}")
            if task["status"] not in ("pending", "running"):
                return task
            if check is not None:
                check()
            waited = time.perf_counter() - started
            await asyncio.sleep(min(POLL_MAX_S, max(POLL_MIN_S, POLL_SHARE * waited)))

    async def wait_completed(self, task_id: str) -> dict[str, Any]:
        task = await self.wait_finished(task_id)
        if task["status"] != "completed":
            raise ExportFailed(f"task {task_id} ended {task['status']}: {task['error']}")
        return task

    async def delete(self, task_id: str) -> None:
        """Delete the task and its file."""
        url = f"{self._base_url}{self.tasks_path}/{task_id}"
        async with self._session.delete(url, headers=self._headers) as response:
            if response.status != 204:
                raise ExportFailed(f"DELETE of task {task_id}: {response.status}")

    async def download(self, task: dict[str, Any], dest: Path) -> int:
        """Stream the file to ``dest``; the number of bytes written."""
        size = 0
        async with self._session.get(
            self._base_url + task["download_url"], headers=self._headers
        ) as response:
            if response.status != 200:
                raise ExportFailed(f"download of task {task['id']}: {response.status}")
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    size += len(chunk)
        return size


async def timed_export(api: ApiUser, file_format: str, rows: int) -> tuple[dict[str, Any], float]:
    """The completed task of a new export of ``rows`` rows, and the seconds from its POST until
    it read completed."""
    started = time.perf_counter()
    task = await api.wait_completed(await api.create(file_format))
    seconds = time.perf_counter() - started
    if task["row_count"] != rows:
        raise ExportFailed(f"task {task['id']}: {task['row_count']} rows, expected {rows}")
    return task, seconds


async def _export(api: ApiUser, file_format: str, rows: int, work_dir: Path) -> OneExport:
    task, seconds = await timed_export(api, file_format, rows)
    task_id = task["id"]
    dest = work_dir / f"{task_id}.{file_format}"
    started = time.perf_counter()
    try:
        size = await api.download(task, dest)
        download_s = time.perf_counter() - started
    finally:
        dest.unlink(missing_ok=True)  # a million-row file per export would fill the disk
    if size != task["file_size"]:
        raise ExportFailed(
            f"task {task_id}: downloaded {size} bytes, the task says {task['file_size']}"
        )
    return OneExport(seconds, download_s, size)


async def export_batch(
    stack: Stack,
    session: aiohttp.ClientSession,
    users: tuple[BenchUser, ...],
    file_format: str,
    work_dir: Path,
) -> ExportBatch:
    """One export per user, all POSTed at once; the worker's memory sampled throughout."""
    worker = stack.worker
    assert worker is not None, "exports need the worker running"
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = stack.database.rows
    apis = [ApiUser(session, stack.base_url, user) for user in users]
    started_wall = time.time()
    with PeakRss(worker.service.pid) as rss:
        exports = await asyncio.gather(*(_export(api, file_format, rows, work_dir) for api in apis))
    # All are POSTed within milliseconds of each other, so the slowest one spans the batch.
    wall_s = max(export.seconds for export in exports)
    stack.check_running()
    return ExportBatch(
        file_format=file_format,
        rows=rows,
        encode_processes=worker.encode_processes,
        rows_in_database=worker.rows_in_database,
        exports=tuple(exports),
        wall_s=wall_s,
        worker_peak_rss_bytes=rss.peak_bytes,
        child_peak_rss_bytes=rss.peak_child_bytes,
        loop_lag_ms=await max_loop_lag_ms(worker.loop_lag_log, started_wall, started_wall + wall_s),
    )
