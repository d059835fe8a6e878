"""Recovery of tasks whose worker died or whose job was lost; run periodically by every worker.

Each step is a conditional update, so several workers sweeping at once never act twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from arq.jobs import JobStatus

from exporter import metrics
from exporter.db import Pool
from exporter.tasks.models import TASK_COLUMNS, task_from_record
from exporter.tasks.queue import TaskQueue
from exporter.tasks.task_metrics import count_finished

log = logging.getLogger("exporter.sweeper")

# A task just created is enqueued by the API within milliseconds; only later is it looked at.
ENQUEUE_GRACE_S = 2.0
SWEEP_BATCH = 500

# A task past its attempts fails, unless its work is already committed (an applied import records
# so in the same transaction): then only its end is left to record, and it runs again.
GIVE_UP = "(attempts >= $1 AND NOT coalesce((outcome ->> 'applied')::boolean, false))"
EXPIRE_LEASES = f"""
UPDATE tasks
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN {GIVE_UP} THEN 'failed'
                  ELSE 'pending' END,
    error = CASE WHEN NOT cancel_requested AND {GIVE_UP}
                 THEN format('the worker running this %s stopped (no heartbeat for its '
                             'lease) on each of %s attempts; giving up', kind, attempts)
                 ELSE error END,
    error_code = CASE WHEN NOT cancel_requested AND {GIVE_UP} THEN 'worker_lost'
                      ELSE error_code END,
    error_params = CASE WHEN NOT cancel_requested AND {GIVE_UP}
                        THEN jsonb_build_object('attempts', attempts)
                        ELSE error_params END,
    status_note = CASE WHEN cancel_requested THEN 'cancelled; its worker had stopped'
                       WHEN {GIVE_UP} THEN NULL
                       ELSE format('worker %s stopped renewing its lease; queued again',
                                   worker_id) END,
    finished_at = CASE WHEN cancel_requested OR {GIVE_UP} THEN now() END,
    worker_id = NULL, lease_expires_at = NULL, rows_done = 0, enqueued_at = NULL
WHERE status = 'running' AND lease_expires_at < now()
RETURNING {TASK_COLUMNS}
"""

# Pending tasks whose delivery may be lost: never enqueued (or released), or enqueued a while ago.
PENDING_TO_CHECK = """
SELECT id, enqueue_count, enqueued_at IS NULL AS unqueued,
       enqueued_at < now() - make_interval(secs => $1) AS delivery_overdue
FROM tasks
WHERE status = 'pending' AND NOT cancel_requested
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $2))
ORDER BY created_at
LIMIT $3
"""

NEXT_DELIVERY = """
UPDATE tasks SET enqueue_count = enqueue_count + 1, enqueued_at = now()
WHERE id = $1 AND status = 'pending' AND enqueue_count = $2
RETURNING enqueue_count
"""


@dataclass(frozen=True)
class SweepResult:
    requeued_after_lost_worker: int
    failed_after_attempts: int
    enqueued_again: int


class Sweeper:
    """Puts tasks of dead workers back to pending (or fails them) and re-enqueues lost jobs."""

    def __init__(self, pool: Pool, queue: TaskQueue, *, lease_s: float, max_attempts: int) -> None:
        self._pool = pool
        self._queue = queue
        self._lease_s = lease_s
        self._max_attempts = max_attempts

    async def sweep(self) -> SweepResult:
        expired = [
            task_from_record(record)
            for record in await self._pool.fetch(EXPIRE_LEASES, self._max_attempts)
        ]
        for task in expired:
            log.warning(
                "task %s: lease expired on attempt %d, now %s", task.id, task.attempts, task.status
            )
            metrics.lease_takeovers.labels(task.status.value).inc()
            count_finished(task)
        enqueued = await self._enqueue_lost()
        return SweepResult(
            requeued_after_lost_worker=sum(t.status == "pending" for t in expired),
            failed_after_attempts=sum(t.status == "failed" for t in expired),
            enqueued_again=enqueued,
        )

    async def _enqueue_lost(self) -> int:
        candidates = await self._pool.fetch(
            PENDING_TO_CHECK, self._lease_s, ENQUEUE_GRACE_S, SWEEP_BATCH
        )
        enqueued = 0
        for record in candidates:
            task_id: uuid.UUID = record["id"]
            count: int = record["enqueue_count"]
            if not record["unqueued"] and not await self._delivery_lost(
                task_id, count, overdue=record["delivery_overdue"]
            ):
                continue
            new_count = await self._pool.fetchval(NEXT_DELIVERY, task_id, count)
            if new_count is None:  # claimed, cancelled or re-enqueued meanwhile
                continue
            await self._queue.enqueue(task_id, new_count)
            log.info("task %s: enqueued again (delivery %d)", task_id, new_count)
            metrics.sweeper_enqueued.inc()
            enqueued += 1
        return enqueued

    async def _delivery_lost(self, task_id: uuid.UUID, count: int, *, overdue: bool) -> bool:
        status = await self._queue.job_status(task_id, count)
        if status in (JobStatus.queued, JobStatus.deferred):
            return False
        # A worker that took the job claims the task at once; still pending a lease later,
        # that worker died between the two.
        if status is JobStatus.in_progress:
            return overdue
        return True
