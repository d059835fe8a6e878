"""Run one task of any kind to its end: claim, heartbeat, deadline, cancel, and the final status.

While the kind does its work, a heartbeat renews the task's lease about twice a second, saves its
progress, and stops the work when the user cancels or when the task is no longer this worker's
(the sweeper gave it to another after a lost lease, or the user deleted it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from exporter import log_context
from exporter.db import DATABASE_ERRORS, Pool, lost_connection
from exporter.errors import ExporterError
from exporter.storage.base import Storage, StoredFile
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.failures import describe_failure, transient_cause
from exporter.tasks.kinds import (
    Attempt,
    FailedWithResult,
    Progress,
    TaskKind,
    TaskKinds,
    TaskResult,
    published_name,
)
from exporter.tasks.models import Task
from exporter.tasks.repository import TaskRepository
from exporter.tasks.task_metrics import count_finished, count_started

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
    default_timeout_s: int


async def _stop_task(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class TaskRunner:
    """Runs tasks of every registered kind for one worker process."""

    def __init__(
        self,
        tasks: TaskRepository,
        pool: Pool,
        storage: Storage,
        scratch: ScratchSpace,
        kinds: TaskKinds,
        config: RunnerConfig,
    ) -> None:
        self._tasks = tasks
        self._pool = pool
        self._storage = storage
        self._scratch = scratch
        self._kinds = kinds
        self._config = config
        # Rows its tasks reported in heartbeats, all tasks together: the worker's rows/s.
        self.rows_reported = 0

    async def run(self, task_id: uuid.UUID) -> Outcome:
        """Claim the task and run it to an end; a no-op if it is not pending."""
        config = self._config
        # arq runs each job in a task of its own: these stay with this task's lines.
        log_context.task_id.set(task_id)
        task = await self._tasks.claim(task_id, config.worker_id, config.lease_s)
        if task is None:
            log.info("task %s: not pending, nothing to do", task_id)
            return Outcome.SKIPPED
        log_context.request_id.set(task.request_id)
        count_started(task)
        log.info(
            "task %s: running %s %s as %s, attempt %d",
            task.id,
            task.kind,
            task.type,
            task.format,
            task.attempts,
        )
        started = time.monotonic()
        progress = Progress()
        work_dir: list[Path] = []
        work = asyncio.create_task(self._produce(task, progress, work_dir))
        heartbeat = asyncio.create_task(self._heartbeat(task, progress))
        try:
            await asyncio.wait({work, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._hand_back(task, work, heartbeat, work_dir)
            raise
        if heartbeat.done():
            await _stop_task(work)
            await self._discard(work_dir)
            return await self._stopped(task, heartbeat.result())
        await _stop_task(heartbeat)
        try:
            result, stored = work.result()
        except FailedWithResult as refused:
            return await self._refused(task, refused, work_dir)
        except Exception as exc:
            await self._discard(work_dir)
            return await self._failed(task, exc, time.monotonic() - started)
        await self._discard(work_dir)
        return await self._record(task, result, stored, time.monotonic() - started)

    def _kind(self, task: Task) -> TaskKind:
        return self._kinds.get(task.kind)

    def _timeout_s(self, task: Task) -> int:
        return self._kind(task).timeout_s(task) or self._config.default_timeout_s

    async def _produce(
        self, task: Task, progress: Progress, work_dir: list[Path]
    ) -> tuple[TaskResult, StoredFile | None]:
        """What the kind made of the task, and its file as stored (``work_dir`` names the
        attempt's directory at once, so that it is removed even when the work is stopped
        midway)."""
        async with asyncio.timeout(self._timeout_s(task)):
            # Claiming the task made it ours: what an earlier, dead attempt left is garbage.
            await self._scratch.discard_attempts(task.id)
            work_dir.append(self._scratch.make_work_dir(task.id))
            attempt = Attempt(task, work_dir[0], progress, self._storage)
            result = await self._kind(task).run(attempt)
        # Stored while the heartbeat still runs: an upload takes a while, and the task stays
        # this worker's, and cancellable, until its file is durable.
        return result, await self._store(task, result)

    async def _heartbeat(self, task: Task, progress: Progress) -> _Stop:
        config = self._config
        renewed = time.monotonic()
        reported = 0
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            self.rows_reported += max(progress.done - reported, 0)
            reported = max(progress.done, reported)
            try:
                # Bounded: a renewal hanging on a connection that lost its server (no error,
                # no answer) must count as failed, or the lease would run out unnoticed.
                async with asyncio.timeout(config.lease_s / 2):
                    cancel = await self._tasks.renew(
                        task.id,
                        config.worker_id,
                        task.attempts,
                        config.lease_s,
                        progress.done,
                        progress.total,
                    )
            except DATABASE_ERRORS as exc:  # TimeoutError is an OSError
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
        # a noticeable moment, which the event loop (heartbeats, other tasks) must not wait.
        for path in work_dir:
            await self._scratch.discard(path)

    async def _hand_back(
        self,
        task: Task,
        work: asyncio.Task[tuple[TaskResult, StoredFile | None]],
        heartbeat: asyncio.Task[_Stop],
        work_dir: list[Path],
    ) -> None:
        """The worker is shutting down: stop, clean up, and let another delivery run the task."""
        await _stop_task(heartbeat)
        await _stop_task(work)
        await self._discard(work_dir)
        released = await asyncio.shield(
            self._tasks.release(
                task.id,
                self._config.worker_id,
                counts_as_attempt=False,
                note=f"the worker shut down during the {self._kind(task).noun}; queued again",
            )
        )
        if released:
            log.warning("task %s: worker shutting down, handed back to pending", task.id)

    async def _stopped(self, task: Task, reason: _Stop) -> Outcome:
        if reason is _Stop.CANCEL:
            cancelled = await self._tasks.mark_cancelled(task.id, self._config.worker_id)
            if cancelled is not None:
                count_finished(cancelled)
            log.info("task %s: cancelled while running; partial file removed", task.id)
            return Outcome.CANCELLED
        log.warning("task %s: no longer this worker's; stopped and cleaned up", task.id)
        return Outcome.LOST

    async def _ended_elsewhere(self, task: Task) -> Outcome:
        """The attempt ended but could not record its end: its user asked to cancel it
        meanwhile (it ends cancelled, whatever else stopped it), or it is no longer ours."""
        cancelled = await self._tasks.mark_cancelled(task.id, self._config.worker_id)
        log.warning("task %s: ended but no longer this worker's to record", task.id)
        if cancelled is None:
            return Outcome.LOST
        count_finished(cancelled)
        return Outcome.CANCELLED

    async def _failed(self, task: Task, exc: Exception, elapsed_s: float) -> Outcome:
        failure = describe_failure(exc, self._kind(task), self._timeout_s(task))
        if lost_connection(exc) is not None:
            # The server went away: the pool's other connections are suspect as well.
            await self._pool.expire_connections()
        retry = transient_cause(exc) is not None and task.attempts < self._config.max_attempts
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
                released = await self._tasks.release(
                    task.id,
                    self._config.worker_id,
                    counts_as_attempt=True,
                    note=f"{failure.message}; queued again",
                )
                return Outcome.RETRYING if released else await self._ended_elsewhere(task)
            failed = await self._tasks.fail(
                task.id, self._config.worker_id, failure, attempt=task.attempts
            )
            if failed is None:
                return await self._ended_elsewhere(task)
            count_finished(failed)
        except DATABASE_ERRORS as record_error:
            # The database is gone too; the lease runs out and the sweeper takes over.
            log.error("task %s: could not record the failure: %s", task.id, record_error)
        return Outcome.FAILED

    async def _refused(
        self, task: Task, refused: FailedWithResult, work_dir: list[Path]
    ) -> Outcome:
        """The kind failed the task with a result to keep (its file stays with the failure)."""
        result = refused.result
        try:
            stored = await self._store(task, result)
        except OSError as exc:
            await self._discard(work_dir)
            return await self._failed(task, exc, 0.0)
        await self._discard(work_dir)
        log.error("task %s: failed: %s", task.id, refused.failure.message)
        done = await self._tasks.fail(
            task.id,
            self._config.worker_id,
            refused.failure,
            attempt=task.attempts,
            file_name=result.file_name,
            kept=stored,
            outcome=result.outcome,
        )
        if done is None:
            if stored is not None:
                await self._storage.delete(stored.key)
            return await self._ended_elsewhere(task)
        count_finished(done)
        return Outcome.FAILED

    async def _store(self, task: Task, result: TaskResult) -> StoredFile | None:
        if result.file is None:
            return result.published
        return await self._storage.publish(result.file, published_name(task, result.file))

    async def _record(
        self, task: Task, result: TaskResult, stored: StoredFile | None, elapsed_s: float
    ) -> Outcome:
        done = await self._tasks.complete(
            task.id,
            self._config.worker_id,
            attempt=task.attempts,
            file_name=result.file_name,
            file_key=None if stored is None else stored.key,
            file_size=None if stored is None else stored.size,
            rows=result.rows,
            outcome=result.outcome,
            note=result.note,
        )
        if done is None:
            # Cancelled, deleted or taken over while the file was finished: keep no orphan.
            if stored is not None:
                await self._storage.delete(stored.key)
            return await self._ended_elsewhere(task)
        count_finished(done)
        log.info(
            "task %s: completed, %d rows, %s bytes in %.1f s",
            task.id,
            result.rows,
            None if stored is None else stored.size,
            elapsed_s,
        )
        return Outcome.COMPLETED
