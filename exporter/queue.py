"""Delivery of export jobs through arq; the job carries only the task id."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis, RedisSettings

EXPORT_JOB = "run_export_task"


def redis_settings(redis_url: str) -> RedisSettings:
    """arq connection settings from a redis:// URL."""
    return RedisSettings.from_dsn(redis_url)


class TaskQueue:
    """Enqueues export jobs on one arq queue."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(self, task_id: uuid.UUID) -> None:
        await self.redis.enqueue_job(EXPORT_JOB, str(task_id), _queue_name=self.queue_name)
