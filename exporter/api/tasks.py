"""Export task endpoints: create, list, show, download, cancel, retry, delete.

The lifecycle behind them is the same for every kind of task; these routes serve the ``export``
kind, which checks what a request asks for.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.schemas import TaskOut
from exporter.api.services import Services, services_of
from exporter.api.task_actions import (
    TASK_ID_PATTERN,
    cancel,
    delete,
    idempotency_key,
    require_retryable,
    serve_file,
    submit,
    task_audited,
    task_id_of,
    task_page,
)
from exporter.api.validation import read_json_object
from exporter.auth.accounts import Account
from exporter.errors import FileGone, TaskNotReady
from exporter.exports.formats import FORMATS
from exporter.tasks.kinds import TaskSpec
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.repository import Creation, NewTask
from exporter.tasks.webhooks import WebhookDeliveries

routes = web.RouteTableDef()

TASKS_PATH = "/api/export-tasks"
TASK_PATH = f"{TASKS_PATH}/{TASK_ID_PATTERN}"


async def _task_json(
    services: Services, task: Task, status: int = 200, *, with_history: bool = False
) -> web.Response:
    history = await services.tasks.history(task.id) if with_history else None
    webhooks = await WebhookDeliveries(services.pool).task_log(task.id) if with_history else None
    response = json_model(TaskOut.of(task, TASKS_PATH + "/", history, webhooks), status=status)
    response.headers["Location"] = f"{TASKS_PATH}/{task.id}"
    return response


async def _submit(
    services: Services, account: Account, spec: TaskSpec, key: str | None
) -> web.Response:
    """Create (or find) the task, enqueue it if new; 202 when created, 200 when found."""
    creation = await submit(services, services.exports, account, NewTask(account.id, spec, key))
    return await _created_json(services, creation)


async def _created_json(services: Services, creation: Creation) -> web.Response:
    return await _task_json(services, creation.task, status=202 if creation.created else 200)


@routes.post(TASKS_PATH)
async def create_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    body = await read_json_object(request)
    services = services_of(request)
    spec = services.exports.validate(account, body)
    return await _submit(services, account, spec, idempotency_key(request))


@routes.get(TASKS_PATH)
async def list_tasks(request: web.Request) -> web.Response:
    services = services_of(request)
    return await task_page(
        request, services.exports, base_url=TASKS_PATH + "/", function="task_page"
    )


@routes.get(TASK_PATH)
async def show_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(task_id_of(request), account.id, services.exports)
    return await _task_json(services, task, with_history=True)


@routes.post(TASK_PATH + "/cancel")
async def cancel_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await cancel(request, services.exports, account)
    return await _task_json(services, task)


@routes.post(TASK_PATH + "/retry")
async def retry_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    async with task_audited(request, services.exports, "retry", account) as note:
        task = await services.tasks.get_own(task_id_of(request), account.id, services.exports)
        note.about(task)
        creation = await retry(services, account, task)
        note.detail["retried_as"] = str(creation.task.id)
    return await _created_json(services, creation)


async def retry(services: Services, account: Account, task: Task) -> Creation:
    """Export again what ``task`` (the account's) asked for, as a new task of the account."""
    require_retryable(task, services.exports)
    # A retry is a new export: the account must still be allowed to create it.
    spec = services.exports.check(account, task.type, task.format, task.params)
    new = NewTask(account.id, replace(spec, notify_url=task.notify_url), None)
    return await submit(services, services.exports, account, new)


@routes.delete(TASK_PATH)
async def delete_task(request: web.Request) -> web.Response:
    """Remove the task and its file; a running export's worker notices and stops."""
    account = await current_account(request)
    services = services_of(request)
    await delete(request, services.exports, account)
    return web.Response(status=204)


@routes.get(TASK_PATH + "/download")
async def download_task_file(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    services = services_of(request)
    async with task_audited(request, services.exports, "download", account) as note:
        task = await services.tasks.get_own(task_id_of(request), account.id, services.exports)
        note.about(task)
        if task.status is TaskStatus.EXPIRED:
            raise FileGone("the export's file has expired and was removed; retry to export again")
        if task.status is not TaskStatus.COMPLETED or not task.file_key or not task.file_name:
            raise TaskNotReady(
                f"the export is {task.status.value}; only a completed export has a file",
                params={"status": task.status.value},
            )
        # A file of a format this API no longer writes still downloads, as plain bytes.
        file_format = FORMATS.get(task.format)
        return await serve_file(
            request,
            note,
            task,
            task.file_key,
            task.file_name,
            content_type=file_format.content_type if file_format else "application/octet-stream",
            gone="the export's file is no longer available; retry to export again",
        )
