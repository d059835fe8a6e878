"""The arq side: services per worker process, the job that runs a task of any kind, and the
periodic sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypedDict

from aiohttp import web
from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix as HEALTH_CHECK_KEY_SUFFIX
from arq.worker import func

from exporter import log_context
from exporter.db import DATABASE_ERRORS, Pool, create_pool
from exporter.exports.encoders import EncoderPool
from exporter.exports.formats.base import ParallelEncoding
from exporter.exports.formats.xlsx_workbook import check_xlsxwriter
from exporter.exports.kind import ExportKind, ExportSettings
from exporter.exports.registry import load_handlers
from exporter.exports.row_source import ReplicaSettings
from exporter.imports.engine import ImportSettings
from exporter.imports.kind import ImportKind
from exporter.imports.parallel_rows import ParallelReading
from exporter.imports.readers import ReadLimits
from exporter.imports.registry import import_registry
from exporter.ops.logs import take_over_arq_logging
from exporter.ops.loop_lag import record_loop_lag
from exporter.ops.storage import open_storage
from exporter.ops.webhooks import POLL_INTERVAL_S, webhook_sender
from exporter.ops.worker_metrics import start_worker_metrics
from exporter.storage.deployment import deployment_id
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.kinds import TaskKinds
from exporter.tasks.queue import TASK_JOB, TaskQueue, redis_settings
from exporter.tasks.repository import TaskRepository
from exporter.tasks.retention import Retention
from exporter.tasks.runner import RunnerConfig, TaskRunner
from exporter.tasks.sweeper import Sweeper
from exporter.tasks.workers import WorkerIdentity, WorkerRegistry
from settings import Settings, SettingsError

log = logging.getLogger("exporter.worker")

# arq's own timeout is only a backstop; each task's deadline fails it first.
ARQ_TIMEOUT_MARGIN_S = 60
# How often an idle worker asks Redis for jobs: a job waits half of it on average, which is
# felt in a csv export of a second or two; 20 cheap queries a second cost Redis nothing.
JOB_POLL_DELAY_S = 0.05


class WorkerContext(TypedDict):
    """What arq hands every job: our services, plus arq's own keys."""

    settings: Settings
    redis: ArqRedis
    pool: Pool
    runner: TaskRunner
    maintenance: asyncio.Task[None]
    encoders: EncoderPool | None


def new_worker_id(machine: str | None = None) -> str:
    """Names this process in task rows and logs, on ``machine`` (default: the host name);
    unique across restarts of the same pid."""
    return f"{machine or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def health_check_key(settings: Settings) -> str:
    """The Redis key of arq's health check for this worker name on this queue."""
    return worker_health_check_key(settings.queue_name, settings.worker_name)


def worker_health_check_key(queue_name: str, worker_name: str | None) -> str:
    """The Redis key of arq's health check for worker ``worker_name`` (default: the host's
    name) on ``queue_name``."""
    return f"{queue_name}{HEALTH_CHECK_KEY_SUFFIX}:{worker_name or socket.gethostname()}"


async def _every(interval_s: float, what: str, round_: Callable[[], Awaitable[object]]) -> None:
    """Run ``round_`` forever; a failed round (database, Redis or store away) is logged."""
    while True:
        try:
            await round_()
        except Exception:
            log.exception("%s failed; trying again in %.1f s", what, interval_s)
        await asyncio.sleep(interval_s)


async def maintain(
    sweeper: Sweeper,
    retention: Retention,
    registry: WorkerRegistry,
    sweep_interval_s: float,
    janitor_interval_s: float,
) -> None:
    """Sweep leases and run the janitor forever, each in a loop of its own and at a pace of its
    own: a janitor round lists every object and unfinished upload of the deployment, which in a
    bucket holding many files takes seconds (0.6 s for 3,000 objects on a loopback SeaweedFS)
    and, from every worker every few seconds, would be a steady load of listing requests; the
    sweep that hands a dead worker's tasks to another must not wait for it. The janitor also
    removes the rows of workers long gone."""

    async def janitor_round() -> None:
        await retention.run()
        await registry.prune()

    await asyncio.gather(
        _every(sweep_interval_s, "sweep", sweeper.sweep),
        _every(janitor_interval_s, "janitor round", janitor_round),
    )


async def startup(ctx: dict[str, Any]) -> None:
    take_over_arq_logging()
    # Before any export: an xlsxwriter outside the tested releases stops the worker here, by
    # name, rather than failing exports one by one.
    check_xlsxwriter()
    settings: Settings = ctx["settings"]
    pool = await create_pool(settings.database_url, max_size=settings.worker_concurrency * 2 + 2)
    deployment = await deployment_id(pool)
    resources = AsyncExitStack()
    storage = await resources.enter_async_context(open_storage(settings, deployment))
    scratch = ScratchSpace(settings.scratch_dir, deployment)
    handlers = load_handlers(settings.handler_modules)
    worker_id = new_worker_id(settings.worker_name)
    # Every line of this worker's jobs and sweeps names it (arq's jobs inherit this context).
    log_context.worker_id.set(worker_id)
    encoders = EncoderPool(settings.encode_processes) if settings.encode_processes else None
    parallel = (
        None
        if encoders is None
        else ParallelEncoding(
            encoders, settings.parallel_min_rows, rows_in_database=settings.xlsx_rows_in_database
        )
    )
    # Nothing connects to the replica before an export asks: one that is down stops no worker.
    replica = (
        None
        if settings.replica_database_url is None
        else ReplicaSettings(settings.replica_database_url, settings.replica_max_wait_s)
    )
    config = RunnerConfig(
        worker_id=worker_id,
        lease_s=settings.lease_s,
        max_attempts=settings.max_attempts,
        default_timeout_s=settings.job_timeout_s,
    )
    exports = ExportKind(
        handlers, pool, ExportSettings(settings.time_zone, settings.max_rows, parallel, replica)
    )
    imports = ImportKind(
        import_registry,
        pool,
        storage,
        ImportSettings(
            settings.time_zone,
            ReadLimits(max_rows=settings.max_import_rows),
            ParallelReading(settings.import_processes),
        ),
    )
    queue = TaskQueue(ctx["redis"], settings.queue_name)
    sweeper = Sweeper(pool, queue, lease_s=settings.lease_s, max_attempts=settings.max_attempts)
    retention = Retention(
        pool,
        storage,
        scratch,
        retention_days=settings.retention_days,
        audit_retention_days=settings.audit_retention_days,
        upload_pause_s=settings.body_timeout_s,
    )
    runner = TaskRunner(
        TaskRepository(pool), pool, storage, scratch, TaskKinds(exports, imports), config
    )
    registry = WorkerRegistry(
        pool,
        WorkerIdentity.of_this_process(worker_id, settings.queue_name),
        settings.sweep_interval_s,
    )
    # Before the first job: an operator sees the worker as soon as it takes work.
    await registry.beat(0.0)
    ctx.update(
        encoders=encoders,
        pool=pool,
        resources=resources,
        runner=runner,
        registry=registry,
        maintenance=asyncio.create_task(
            maintain(
                sweeper,
                retention,
                registry,
                settings.sweep_interval_s,
                settings.janitor_interval_s,
            )
        ),
        # Its own task: a long janitor round must not make a healthy worker look stale.
        heartbeat=asyncio.create_task(registry.keep_beating(lambda: runner.rows_reported)),
    )
    if settings.loop_lag_log is not None:
        ctx["loop_lag_probe"] = asyncio.create_task(record_loop_lag(settings.loop_lag_log))
    ctx["metrics_server"] = await start_worker_metrics(settings)
    sender = await webhook_sender(pool, settings)
    if sender is not None:
        ctx["webhook_sender"] = asyncio.create_task(
            _every(POLL_INTERVAL_S, "webhook round", sender.send_due)
        )
    log.info(
        "worker %s ready: queue=%s storage=%s work=%s",
        worker_id,
        settings.queue_name,
        settings.storage_url,
        scratch.root,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    for name in ("maintenance", "heartbeat", "loop_lag_probe", "webhook_sender"):
        background: asyncio.Task[None] | None = ctx.get(name)
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
    registry: WorkerRegistry | None = ctx.get("registry")
    if registry is not None:
        try:
            await registry.stop()
        except DATABASE_ERRORS as exc:
            log.warning("could not record the worker's stop: %s", exc)
    metrics_server: web.AppRunner | None = ctx.get("metrics_server")
    if metrics_server is not None:
        await metrics_server.cleanup()
    encoders: EncoderPool | None = ctx.get("encoders")
    if encoders is not None:
        await asyncio.to_thread(encoders.shutdown)
    resources: AsyncExitStack | None = ctx.get("resources")
    if resources is not None:
        await resources.aclose()
    pool: Pool | None = ctx.get("pool")
    if pool is not None:
        await pool.close()


async def run_task(ctx: WorkerContext, task_id: str) -> str:
    """The arq job: run one task, of any kind, to a terminal state (or back to pending)."""
    return (await ctx["runner"].run(uuid.UUID(task_id))).value


def worker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (and attributes of ``run_worker.WorkerSettings``)."""
    if settings.metrics_dir is not None:
        # Its files would be added up into the API's scrape, counting the worker there too.
        raise SettingsError(
            "PROMETHEUS_MULTIPROC_DIR is for `exporter serve` only: the worker serves its "
            "metrics on EXPORTER_WORKER_METRICS_PORT"
        )
    longest_deadline = max(
        [settings.job_timeout_s]
        + [h.timeout_s for h in load_handlers(settings.handler_modules) if h.timeout_s]
    )
    return {
        "functions": [func(run_task, name=TASK_JOB)],  # type: ignore[arg-type]
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": longest_deadline + ARQ_TIMEOUT_MARGIN_S,
        # On SIGTERM: take no new jobs, let running exports finish within the grace period;
        # what is still running then is cancelled and handed back to pending.
        "job_completion_wait": settings.shutdown_grace_s,
        # arq's 0.5 s would be a third of a million-row csv export's time.
        "poll_delay": JOB_POLL_DELAY_S,
        "keep_result": 60,
        # `arq --check run_worker.WorkerSettings` reads this key: one per worker name (the host
        # name by default), so that a probe in a worker's container answers for that worker,
        # not for any worker of the queue; written on the sweep's rhythm, it lapses soon after
        # the worker dies (arq's default keeps it an hour).
        "health_check_key": health_check_key(settings),
        "health_check_interval": settings.sweep_interval_s,
        "ctx": {"settings": settings},
    }
