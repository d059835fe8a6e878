"""In-process arq workers on a test's queue: real arq, real Redis, this event loop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.worker import Worker

from exporter.db import create_pool
from exporter.ops.storage import open_storage
from exporter.ops.worker import worker_options
from exporter.storage.deployment import deployment_id
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.retention import Retention, RetentionResult
from settings import Settings


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker that takes jobs until the block ends."""
    arq_worker = Worker(**worker_options(settings), handle_signals=False)
    running = asyncio.create_task(arq_worker.async_run())
    try:
        yield arq_worker
    finally:
        # close() cancels the jobs still running, then gathers them and re-raises their
        # CancelledError: a job finishing its bookkeeping as the test ended failed the teardown
        # and left the worker's pool open. Cancelled and gathered here, close() finds none.
        arq_worker.handle_sig(signal.SIGUSR1)
        await asyncio.gather(*arq_worker.tasks.values(), return_exceptions=True)
        arq_worker.tasks.clear()
        await arq_worker.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def janitor_round(settings: Settings) -> RetentionResult:
    """One round of the janitor of the deployment whose database ``settings`` names."""
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        deployment = await deployment_id(pool)
        scratch = ScratchSpace(settings.scratch_dir, deployment)
        async with open_storage(settings, deployment) as storage:
            return await Retention(
                pool,
                storage,
                scratch,
                retention_days=7,
                audit_retention_days=settings.audit_retention_days,
                upload_pause_s=settings.body_timeout_s,
            ).run()
    finally:
        await pool.close()


async def drain_queue(settings: Settings) -> None:
    """Run every job queued now with a worker of these settings, then stop it."""
    options = worker_options(settings) | {"poll_delay": 0}
    arq_worker = Worker(**options, handle_signals=False, burst=True)
    await arq_worker.async_run()
    await arq_worker.close()
