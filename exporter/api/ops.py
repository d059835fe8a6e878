"""The operators' API: workers, queue depth and every account's tasks (``ops:read``), and cancel
or retry of any account's task (``ops:write``) through the same actions as the owner's own."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from exporter.api import import_tasks, tasks
from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.services import Services, services_of
from exporter.api.task_actions import TASK_ID_PATTERN, cancel, task_audited, task_id_of
from exporter.auth.accounts import Account, require_permissions
from exporter.errors import TaskNotFound
from exporter.input_model import InputModel
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.overview import OpsTask, OpsWorker, Overview, TaskCount
from exporter.validation import validate

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

OPS_PATH = "/api/ops"
OPS_TASK_PATH = f"{OPS_PATH}/tasks/{TASK_ID_PATTERN}"
OPS_READ = "ops:read"
OPS_WRITE = "ops:write"
# How many of the slowest and of the failed tasks the summary shows.
SUMMARY_LIMIT = 10


class OpsTasksQuery(InputModel):
    """Query string of GET /api/ops/tasks."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    kind: Literal["export", "import"] | None = None
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(20, ge=1, le=100)


class QueueOut(BaseModel):
    name: str
    waiting: int | None = Field(description="jobs in arq's queue; null when Redis does not answer")


class OpsSummaryOut(BaseModel):
    """Everything the operators' page shows, in one answer."""

    at: datetime = Field(description="the database's time of the answer")
    workers: list[OpsWorker]
    queue: QueueOut
    counts: list[TaskCount] = Field(description="tasks of every account by kind and status")
    slowest: list[OpsTask] = Field(description="running and last day's tasks, longest first")
    failed: list[OpsTask] = Field(description="the last failed tasks, newest first")


class OpsWorkersOut(BaseModel):
    items: list[OpsWorker]


class OpsTaskPageOut(BaseModel):
    """One page of every account's tasks, newest first."""

    items: list[OpsTask]
    total: int
    page: int
    page_size: int


async def _operator(request: web.Request, *permissions: str) -> Account:
    account = await current_account(request)
    require_permissions(account, *permissions)
    return account


async def _queue_depth(services: Services) -> int | None:
    try:
        return await services.queue.waiting()
    except (RedisError, OSError) as exc:
        log.warning("queue length unavailable: %s", exc)
        return None


@routes.get(f"{OPS_PATH}/summary")
async def summary(request: web.Request) -> web.Response:
    await _operator(request, OPS_READ)
    services = services_of(request)
    overview = Overview(services.pool)
    body = OpsSummaryOut(
        at=await services.pool.fetchval("SELECT now()"),
        workers=await overview.workers(),
        queue=QueueOut(name=services.queue.queue_name, waiting=await _queue_depth(services)),
        counts=await overview.counts(),
        slowest=await overview.slowest(SUMMARY_LIMIT),
        failed=await overview.failed(SUMMARY_LIMIT),
    )
    return json_model(body)


@routes.get(f"{OPS_PATH}/workers")
async def workers(request: web.Request) -> web.Response:
    await _operator(request, OPS_READ)
    return json_model(OpsWorkersOut(items=await Overview(services_of(request).pool).workers()))


@routes.get(f"{OPS_PATH}/tasks")
async def task_list(request: web.Request) -> web.Response:
    await _operator(request, OPS_READ)
    query = validate(OpsTasksQuery, dict(request.query))
    items, total = await Overview(services_of(request).pool).tasks(
        query.status, query.kind, query.page, query.page_size
    )
    return json_model(
        OpsTaskPageOut(items=items, total=total, page=query.page, page_size=query.page_size)
    )


async def _task_and_owner(request: web.Request, services: Services) -> tuple[Task, Account]:
    task = await Overview(services.pool).task(task_id_of(request))
    owner = await services.accounts.get(task.created_by_id)
    if owner is None:  # the owner's account row is gone with its tasks (ON DELETE CASCADE)
        raise TaskNotFound("task not found")
    return task, owner


@routes.post(OPS_TASK_PATH + "/cancel")
async def cancel_any(request: web.Request) -> web.Response:
    """Cancel any account's task, as its owner could."""
    operator = await _operator(request, OPS_READ, OPS_WRITE)
    services = services_of(request)
    task, owner = await _task_and_owner(request, services)
    kind = services.exports if task.kind == services.exports.name else services.imports
    log.info("task %s: operator %d cancels account %d's task", task.id, operator.id, owner.id)
    cancelled = await cancel(request, kind, operator, owner)
    return json_model(await Overview(services.pool).ops_task(cancelled.id))


@routes.post(OPS_TASK_PATH + "/retry")
async def retry_any(request: web.Request) -> web.Response:
    """Retry any account's failed, cancelled or expired task: a new task of its owner, within
    the owner's permissions and quotas."""
    operator = await _operator(request, OPS_READ, OPS_WRITE)
    services = services_of(request)
    task, owner = await _task_and_owner(request, services)
    log.info("task %s: operator %d retries account %d's task", task.id, operator.id, owner.id)
    kind = services.exports if task.kind == services.exports.name else services.imports
    retry = tasks.retry if kind is services.exports else import_tasks.retry
    async with task_audited(request, kind, "retry", operator) as note:
        note.about(task)
        creation = await retry(services, owner, task)
        note.detail["retried_as"] = str(creation.task.id)
    answer = await Overview(services.pool).ops_task(creation.task.id)
    return json_model(answer, status=202 if creation.created else 200)
