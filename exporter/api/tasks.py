"""Export task endpoints: create, list, show, download, cancel, retry, delete.

The lifecycle behind them is the same for every kind of task; these routes serve the ``export``
kind, which checks what a request asks for.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

from aiohttp import web
from redis.exceptions import RedisError

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.schemas import ListTasksQuery, TaskOut
from exporter.api.services import Services, services_of
from exporter.api.validation import read_json_object
from exporter.auth.accounts import Account
from exporter.errors import (
    FieldProblem,
    FileGone,
    InvalidParams,
    TaskNotReady,
    TaskStateConflict,
    Unauthorized,
)
from exporter.exports.formats import FORMATS
from exporter.tasks.kinds import TaskSpec
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.repository import NewTask, Quotas
from exporter.validation import validate

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

IDEMPOTENCY_KEY_MAX = 200
# A task id in a route is a UUID, so that /api/export-tasks/stream is never taken for a task.
TASKS_PATH = "/api/export-tasks"
TASK_PATH = (
    TASKS_PATH + "/"
    "{task_id:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}}"
)


async def _task_json(
    services: Services, task: Task, status: int = 200, *, with_history: bool = False
) -> web.Response:
    history = await services.tasks.history(task.id) if with_history else None
    response = json_model(TaskOut.of(task, TASKS_PATH + "/", history), status=status)
    response.headers["Location"] = f"{TASKS_PATH}/{task.id}"
    return response


def _task_id(request: web.Request) -> uuid.UUID:
    # The route's pattern lets only UUIDs through.
    return uuid.UUID(request.match_info["task_id"])


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not (key.isascii() and key.isprintable()):
        raise InvalidParams(
            "invalid Idempotency-Key header",
            [
                FieldProblem(
                    "Idempotency-Key",
                    f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters",
                    "invalid_header",
                    {"max_length": IDEMPOTENCY_KEY_MAX},
                )
            ],
        )
    return key


async def _queue_full(services: Services) -> bool:
    try:
        return await services.queue.waiting() >= services.settings.max_pending
    except (RedisError, OSError) as exc:
        # Without Redis a new task waits in PostgreSQL for the sweeper; there is no queue to cap.
        log.warning("queue length unavailable, not capped: %s", exc)
        return False


async def _submit(
    services: Services, account: Account, spec: TaskSpec, idempotency_key: str | None
) -> web.Response:
    """Create (or find) the task, enqueue it if new; 202 when created, 200 when found."""
    settings = services.settings
    creation = await services.tasks.create(
        NewTask(account.id, spec, idempotency_key),
        services.exports,
        Quotas(
            settings.max_active_per_user,
            settings.max_kept_bytes_per_user,
            queue_full=await _queue_full(services),
        ),
    )
    task = creation.task
    if creation.created:
        try:
            await services.queue.enqueue(task.id, task.enqueue_count)
        except (RedisError, OSError) as exc:
            # The task is safe in PostgreSQL; the sweeper enqueues it once Redis is back.
            log.warning("task %s: queue unavailable, left for the sweeper: %s", task.id, exc)
        log.info(
            "task %s: created %s %s/%s by account %d",
            task.id,
            task.kind,
            task.type,
            task.format,
            account.id,
        )
    return await _task_json(services, task, status=202 if creation.created else 200)


# An expired task's file is gone for good: exporting it again is what its owner can do.
RETRYABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED)


@routes.post(TASKS_PATH)
async def create_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    body = await read_json_object(request)
    services = services_of(request)
    spec = services.exports.validate(account, body)
    return await _submit(services, account, spec, _idempotency_key(request))


@routes.get(TASKS_PATH)
async def list_tasks(request: web.Request) -> web.Response:
    # PostgreSQL writes the JSON: the list is the endpoint a page polls, and this halves its
    # cost per request.
    account = await current_account(request)
    query = validate(ListTasksQuery, dict(request.query))
    services = services_of(request)
    if query.type is not None:
        services.exports.handler(query.type)
    body = await services.tasks.page_json(
        account.id,
        services.exports,
        base_url=TASKS_PATH + "/",
        status=query.status,
        type_name=query.type,
        page=query.page,
        page_size=query.page_size,
    )
    if body is None:
        raise Unauthorized("unknown account")
    return web.Response(text=body, content_type="application/json")


@routes.get(TASK_PATH)
async def show_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(_task_id(request), account.id, services.exports)
    return await _task_json(services, task, with_history=True)


@routes.post(TASK_PATH + "/cancel")
async def cancel_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task_id = _task_id(request)
    task = await services.tasks.request_cancel(task_id, account.id, services.exports)
    if task is None:
        current = await services.tasks.get_own(task_id, account.id, services.exports)
        raise TaskStateConflict(
            f"the export is already {current.status.value}; nothing to cancel",
            params={"status": current.status.value},
        )
    log.info("task %s: cancel requested by account %d (was %s)", task.id, account.id, task.status)
    return await _task_json(services, task)


@routes.post(TASK_PATH + "/retry")
async def retry_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(_task_id(request), account.id, services.exports)
    if task.status not in RETRYABLE:
        raise TaskStateConflict(
            f"the export is {task.status.value}; only a failed, cancelled or expired one can be "
            "retried",
            params={"status": task.status.value},
        )
    # A retry is a new export: the account must still be allowed to create it.
    spec = services.exports.check(account, task.type, task.format, task.params)
    return await _submit(services, account, spec, None)


@routes.delete(TASK_PATH)
async def delete_task(request: web.Request) -> web.Response:
    """Remove the task and its file; a running export's worker notices and stops."""
    account = await current_account(request)
    services = services_of(request)
    task_id = _task_id(request)
    for key in await services.tasks.delete_own(task_id, account.id, services.exports):
        await services.storage.delete(key)
    log.info("task %s: deleted by account %d", task_id, account.id)
    return web.Response(status=204)


def content_disposition(type_name: str, file_name: str) -> str:
    """``attachment``: an ASCII ``filename`` for old clients (led by the export type's name when
    characters had to go), the real name in ``filename*``."""
    ascii_part = file_name.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "")
    fallback = ascii_part if ascii_part == file_name else f"{type_name}{ascii_part}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@routes.get(TASK_PATH + "/download")
async def download_task_file(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(_task_id(request), account.id, services.exports)
    if task.status is TaskStatus.EXPIRED:
        raise FileGone("the export's file has expired and was removed; retry to export again")
    if task.status is not TaskStatus.COMPLETED or not task.file_key or not task.file_name:
        raise TaskNotReady(
            f"the export is {task.status.value}; only a completed export has a file",
            params={"status": task.status.value},
        )
    # A file of a format this API no longer writes still downloads, as plain bytes.
    file_format = FORMATS.get(task.format)
    response = await services.storage.download(
        task.file_key,
        content_type=file_format.content_type if file_format else "application/octet-stream",
        content_disposition=content_disposition(task.type, task.file_name),
    )
    if response is None:
        await services.tasks.expire_lost_file(task.id)
        log.warning(
            "task %s: its file %s is gone from storage; marked expired", task.id, task.file_key
        )
        raise FileGone("the export's file is no longer available; retry to export again")
    response.headers["Cache-Control"] = "private, no-store"
    return response
