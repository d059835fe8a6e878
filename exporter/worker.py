"""The arq side: claim a task, produce its file, and record how it ended."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any, TypedDict

import asyncpg
from arq.worker import func

from exporter.db import create_pool
from exporter.errors import ExporterError
from exporter.export_file import ExportRequest, export_to_file
from exporter.models import ExportTask
from exporter.queue import EXPORT_JOB, redis_settings
from exporter.registry import HandlerRegistry, load_handlers
from exporter.storage import FileStorage
from exporter.task_repository import TaskRepository
from settings import Settings

log = logging.getLogger("exporter.worker")

# arq's own timeout is only a backstop; the export's deadline fails the task first.
ARQ_TIMEOUT_MARGIN_S = 60


class WorkerContext(TypedDict):
    """What arq hands every job: our services, plus arq's own keys."""

    settings: Settings
    pool: asyncpg.Pool
    tasks: TaskRepository
    storage: FileStorage
    handlers: HandlerRegistry


def describe_failure(exc: BaseException, timeout_s: int) -> str:
    """A message for the task's error field that a user can act on."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s} s"
    if isinstance(exc, ExporterError):
        return exc.message
    if isinstance(exc, asyncpg.PostgresError):
        return f"database error: {exc}"
    if isinstance(exc, OSError):
        return f"storage error: {exc.strerror or exc}"
    return f"export failed: {type(exc).__name__}: {exc}"


def file_name_for(title: str, task: ExportTask, now: datetime) -> str:
    return f"{title}_{now:%Y%m%d_%H%M%S}.{task.format.value}"


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    pool = await create_pool(settings.database_url, max_size=settings.worker_concurrency * 2 + 2)
    storage = FileStorage(settings.storage_dir)
    storage.ensure_root()
    ctx.update(pool=pool, tasks=TaskRepository(pool), storage=storage, handlers=load_handlers())
    log.info("worker ready: queue=%s storage=%s", settings.queue_name, storage.root)


async def shutdown(ctx: dict[str, Any]) -> None:
    pool: asyncpg.Pool | None = ctx.get("pool")
    if pool is not None:
        await pool.close()


async def run_export_task(ctx: WorkerContext, task_id_text: str) -> str:
    """The arq job: run one export task to a terminal state."""
    task_id = uuid.UUID(task_id_text)
    tasks = ctx["tasks"]
    task = await tasks.claim(task_id)
    if task is None:
        log.info("task %s: not pending, nothing to do", task_id)
        return "skipped"
    settings = ctx["settings"]
    started = time.monotonic()
    log.info(
        "task %s: running %s as %s (attempt %d)", task_id, task.type, task.format, task.attempts
    )
    storage = ctx["storage"]
    work_dir = storage.make_work_dir(task.id)
    temp = work_dir / f"export.{task.format.value}"
    try:
        handler = ctx["handlers"].get(task.type)
        request = ExportRequest(handler, task.params, task.format, temp, settings.time_zone)

        async def report(done: int, total: int) -> None:
            await tasks.report_progress(task_id, done, total)

        async with asyncio.timeout(settings.job_timeout_s):
            async with ctx["pool"].acquire() as conn:
                rows = await export_to_file(conn, request, report)
        final = storage.final_path(task.id, task.format)
        size = storage.publish(temp, final)
    except asyncio.CancelledError:
        storage.discard(work_dir)
        await asyncio.shield(tasks.release(task_id))
        log.warning("task %s: worker stopped mid-export, handed back to pending", task_id)
        raise
    except Exception as exc:
        storage.discard(work_dir)
        message = describe_failure(exc, settings.job_timeout_s)
        log.exception(
            "task %s: failed after %.1f s: %s", task_id, time.monotonic() - started, message
        )
        await tasks.fail(task_id, message)
        return "failed"
    storage.discard(work_dir)
    name = file_name_for(handler.title, task, datetime.now(settings.zone))
    if await tasks.complete(
        task_id, file_name=name, file_path=str(final), file_size=size, rows=rows
    ):
        log.info(
            "task %s: completed, %d rows, %d bytes in %.1f s",
            task_id,
            rows,
            size,
            time.monotonic() - started,
        )
        return "completed"
    # The task left "running" while we worked (another process ended it): keep no orphan file.
    storage.discard(final)
    log.warning("task %s: finished but no longer running; file dropped", task_id)
    return "superseded"


def worker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (and attributes of ``run_worker.WorkerSettings``)."""
    return {
        "functions": [func(run_export_task, name=EXPORT_JOB)],  # type: ignore[arg-type]
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": settings.job_timeout_s + ARQ_TIMEOUT_MARGIN_S,
        "keep_result": 3600,
        "ctx": {"settings": settings},
    }
