"""Run one export task to its end: claim, heartbeat, deadline, cancel, and the final status.

While the export runs, a heartbeat renews the task's lease about twice a second, saves its
progress, and stops the export when the user cancels or when the task is no longer this
worker's (the sweeper gave it to another after a lost lease, or the user deleted it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from exporter.db import DATABASE_ERRORS, Pool, lost_connection, unencodable_argument
from exporter.errors import ExporterError
from exporter.exports.export_file import ExportRequest, Progress, export_to_file
from exporter.exports.formats.base import ParallelEncoding
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.storage.local import FileStorage
from exporter.tasks.models import ExportTask, TaskFailure
from exporter.tasks.repository import TaskRepository

log = logging.getLogger("exporter.worker")

HEARTBEAT_INTERVAL_S = 0.5


class Outcome(StrEnum):
    """How one delivery of a job ended, as arq logs it."""

    SKIPPED = "skipped"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    LOST = "lost"


class _Stop(StrEnum):
    CANCEL = "cancel"
    LOST = "lost"


@dataclass(frozen=True)
class RunnerConfig:
    worker_id: str
    lease_s: float
    max_attempts: int
    max_rows: int
    default_timeout_s: int
    time_zone: str
    parallel: ParallelEncoding | None


def transient_cause(exc: BaseException) -> BaseException | None:
    """What makes a failure worth another attempt: a lost database connection or encoder."""
    return lost_connection(exc, BrokenProcessPool)


def describe_failure(exc: BaseException, timeout_s: int) -> TaskFailure:
    """Why the task failed, as its error fields keep it: something a user can act on."""
    if isinstance(lost := transient_cause(exc), BrokenProcessPool):
        return TaskFailure("encoder_stopped", "an encoding process stopped unexpectedly")
    if lost is not None:
        return TaskFailure("database_unavailable", f"lost the database connection: {lost}")
    if isinstance(exc, TimeoutError):
        return TaskFailure("timed_out", f"timed out after {timeout_s} s", {"seconds": timeout_s})
    if isinstance(exc, ExporterError):
        return TaskFailure(exc.code, exc.message, exc.params)
    if (unencodable := unencodable_argument(exc)) is not None:
        # A filter value that passed validation but not the column's type (an int4 column
        # compared with a value within bigint): the user's to change, not the database's fault.
        return TaskFailure(
            "filter_value_out_of_range",
            f"a filter value does not fit the data it is compared with: {unencodable}",
        )
    if isinstance(exc, asyncpg.PostgresError):
        return TaskFailure("database_error", f"database error: {exc}", {"sqlstate": exc.sqlstate})
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return TaskFailure("storage_error", f"storage error: {exc.strerror or exc}{where}")
    return TaskFailure("export_failed", f"export failed: {type(exc).__name__}: {exc}")


async def _stop_task(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class TaskRunner:
    """Runs export tasks for one worker process."""

    def __init__(
        self,
        tasks: TaskRepository,
        pool: Pool,
        storage: FileStorage,
        handlers: HandlerRegistry,
        config: RunnerConfig,
    ) -> None:
        self._tasks = tasks
        self._pool = pool
        self._storage = storage
        self._handlers = handlers
        self._config = config

    async def run(self, task_id: uuid.UUID) -> Outcome:
        """Claim the task and run it to an end; a no-op if it is not pending."""
        config = self._config
        task = await self._tasks.claim(task_id, config.worker_id, config.lease_s)
        if task is None:
            log.info("task %s: not pending, nothing to do", task_id)
            return Outcome.SKIPPED
        log.info(
            "task %s: running %s as %s, attempt %d", task.id, task.type, task.format, task.attempts
        )
        started = time.monotonic()
        progress = Progress()
        work_dir: list[Path] = []
        export = asyncio.create_task(self._produce(task, progress, work_dir))
        heartbeat = asyncio.create_task(self._heartbeat(task, progress))
        try:
            await asyncio.wait({export, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._hand_back(task, export, heartbeat, work_dir)
            raise
        if heartbeat.done():
            await _stop_task(export)
            await self._discard(work_dir)
            return await self._stopped(task, heartbeat.result())
        await _stop_task(heartbeat)
        try:
            path, rows = export.result()
        except Exception as exc:
            await self._discard(work_dir)
            return await self._failed(task, exc, time.monotonic() - started)
        return await self._publish(task, path, rows, work_dir, time.monotonic() - started)

    def _handler(self, task: ExportTask) -> ExportHandler[Any]:
        return self._handlers.get(task.type)

    def _timeout_s(self, task: ExportTask) -> int:
        handler_timeout = (
            self._handlers.get(task.type).timeout_s if task.type in self._handlers else None
        )
        return handler_timeout or self._config.default_timeout_s

    async def _produce(
        self, task: ExportTask, progress: Progress, work_dir: list[Path]
    ) -> tuple[Path, int]:
        """The finished file and its row count (``work_dir`` names the attempt's directory at
        once, so that it is removed even when the export is stopped midway)."""
        handler = self._handler(task)
        async with asyncio.timeout(self._timeout_s(task)):
            # Claiming the task made it ours: what an earlier, dead attempt left is garbage.
            self._storage.discard_attempts(task.id)
            work_dir.append(self._storage.make_work_dir(task.id))
            path = work_dir[0] / f"export.{task.format}"
            request = ExportRequest(
                handler,
                task.params,
                task.format,
                path,
                self._config.time_zone,
                self._config.max_rows,
                self._config.parallel,
            )
            async with self._pool.acquire() as conn:
                rows = await export_to_file(conn, request, progress)
        return path, rows

    async def _heartbeat(self, task: ExportTask, progress: Progress) -> _Stop:
        config = self._config
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            try:
                cancel = await self._tasks.renew(
                    task.id,
                    config.worker_id,
                    task.attempts,
                    config.lease_s,
                    progress.done,
                    progress.total,
                )
            except DATABASE_ERRORS as exc:
                # Past its lease the sweeper may hand the task to another worker: stop first.
                if time.monotonic() - renewed > config.lease_s:
                    log.error("task %s: cannot renew the lease (%s); stopping", task.id, exc)
                    return _Stop.LOST
                continue
            if cancel is None:
                return _Stop.LOST
            if cancel:
                return _Stop.CANCEL
            renewed = time.monotonic()

    async def _discard(self, work_dir: list[Path]) -> None:
        # In a thread: freeing a work directory of several hundred megabytes takes the kernel
        # a noticeable moment, which the event loop (heartbeats, other exports) must not wait.
        for path in work_dir:
            await asyncio.to_thread(self._storage.discard, path)

    async def _hand_back(
        self,
        task: ExportTask,
        export: asyncio.Task[tuple[Path, int]],
        heartbeat: asyncio.Task[_Stop],
        work_dir: list[Path],
    ) -> None:
        """The worker is shutting down: stop, clean up, and let another delivery run the task."""
        await _stop_task(heartbeat)
        await _stop_task(export)
        await self._discard(work_dir)
        released = await asyncio.shield(
            self._tasks.release(
                task.id,
                self._config.worker_id,
                counts_as_attempt=False,
                note="the worker shut down during the export; queued again",
            )
        )
        if released:
            log.warning("task %s: worker shutting down, handed back to pending", task.id)

    async def _stopped(self, task: ExportTask, reason: _Stop) -> Outcome:
        if reason is _Stop.CANCEL:
            await self._tasks.mark_cancelled(task.id, self._config.worker_id)
            log.info("task %s: cancelled while running; partial file removed", task.id)
            return Outcome.CANCELLED
        log.warning("task %s: no longer this worker's; stopped and cleaned up", task.id)
        return Outcome.LOST

    async def _failed(self, task: ExportTask, exc: Exception, elapsed_s: float) -> Outcome:
        failure = describe_failure(exc, self._timeout_s(task))
        cause = transient_cause(exc)
        if cause is not None and not isinstance(cause, BrokenProcessPool):
            # The server went away: the pool's other connections are suspect as well.
            await self._pool.expire_connections()
        retry = cause is not None and task.attempts < self._config.max_attempts
        log.error(
            "task %s: %s after %.1f s: %s",
            task.id,
            "will retry" if retry else "failed",
            elapsed_s,
            failure.message,
            exc_info=not isinstance(exc, ExporterError | TimeoutError | OSError),
        )
        try:
            if retry:
                await self._tasks.release(
                    task.id,
                    self._config.worker_id,
                    counts_as_attempt=True,
                    note=f"{failure.message}; queued again",
                )
                return Outcome.RETRYING
            await self._tasks.fail(task.id, self._config.worker_id, failure)
        except DATABASE_ERRORS as record_error:
            # The database is gone too; the lease runs out and the sweeper takes over.
            log.error("task %s: could not record the failure: %s", task.id, record_error)
        return Outcome.FAILED

    async def _publish(
        self,
        task: ExportTask,
        path: Path,
        rows: int,
        work_dir: list[Path],
        elapsed_s: float,
    ) -> Outcome:
        final = self._storage.final_path(task.id, task.format)
        try:
            size = self._storage.publish(path, final)
        except OSError as exc:
            await self._discard(work_dir)
            return await self._failed(task, exc, elapsed_s)
        await self._discard(work_dir)
        name = self._file_name(task)
        done = await self._tasks.complete(
            task.id,
            self._config.worker_id,
            file_name=name,
            file_path=str(final),
            file_size=size,
            rows=rows,
        )
        if done is None:
            # Cancelled, deleted or taken over while the file was finished: keep no orphan.
            await self._discard([final])
            cancelled = await self._tasks.mark_cancelled(task.id, self._config.worker_id)
            log.warning("task %s: finished but no longer this worker's to complete", task.id)
            return Outcome.CANCELLED if cancelled else Outcome.LOST
        log.info(
            "task %s: completed, %d rows, %d bytes in %.1f s",
            task.id,
            rows,
            size,
            elapsed_s,
        )
        return Outcome.COMPLETED

    def _file_name(self, task: ExportTask) -> str:
        now = datetime.now(ZoneInfo(self._config.time_zone))
        # The task id's first characters keep two exports of one second apart (curl -OJ refuses
        # to overwrite, and a browser would add "(1)").
        stamp = f"{now:%Y%m%d_%H%M%S}_{task.id.hex[:6]}"
        return f"{self._handler(task).title}_{stamp}.{task.format}"
