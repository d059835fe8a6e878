"""Delivery of task jobs through arq, whatever the kind; the job carries only the task id.

PostgreSQL decides what runs: a delivery that finds its task no longer pending does nothing,
so a job may be delivered twice, and the sweeper may enqueue a task again whenever its job is lost.
"""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus

TASK_JOB = "run_task"
# Bounded so that a request never hangs on a Redis that is down.
REDIS_TIMEOUT_S = 2.0


def redis_settings(redis_url: str) -> RedisSettings:
    """arq connection settings from a redis:// URL."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = int(REDIS_TIMEOUT_S)
    return settings


def connect_lazily(redis_url: str) -> ArqRedis:
    """A client that connects on first use: the API starts, lists and downloads without Redis."""
    redis: ArqRedis = ArqRedis.from_url(
        redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )
    return redis


def job_id_for(task_id: uuid.UUID, enqueue_count: int) -> str:
    """A fresh arq job id per delivery: arq refuses to reuse an id while its result is kept."""
    return f"task:{task_id}:{enqueue_count}"


class TaskQueue:
    """Enqueues task jobs on one arq queue and says whether a delivery is still alive."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(self, task_id: uuid.UUID, enqueue_count: int) -> None:
        await self.redis.enqueue_job(
            TASK_JOB,
            str(task_id),
            _job_id=job_id_for(task_id, enqueue_count),
            _queue_name=self.queue_name,
        )

    async def waiting(self) -> int:
        """Jobs in the queue, not yet finished: an O(1) count, unlike counting pending rows."""
        waiting: int = await self.redis.zcard(self.queue_name)
        return waiting

    async def job_status(self, task_id: uuid.UUID, enqueue_count: int) -> JobStatus:
        job = Job(job_id_for(task_id, enqueue_count), self.redis, _queue_name=self.queue_name)
        status: JobStatus = await job.status()
        return status
