"""Export task endpoints: create, list, show, download."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

from aiohttp import web
from redis.exceptions import RedisError

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.schemas import (
    CreateTaskRequest,
    ListTasksQuery,
    TaskOut,
    TaskPageOut,
)
from exporter.api.services import services_of
from exporter.api.validation import read_json_body, validate
from exporter.errors import (
    FieldProblem,
    FileGone,
    Forbidden,
    HandlerNotFound,
    ServiceUnavailable,
    TaskNotFound,
    TaskNotReady,
)
from exporter.models import ExportTask, TaskStatus

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()


def _task_json(task: ExportTask, status: int = 200) -> web.Response:
    return json_model(TaskOut.of(task), status=status)


def _task_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["task_id"])
    except ValueError:
        raise TaskNotFound("export task not found") from None


@routes.post("/api/export-tasks")
async def create_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    body = await read_json_body(request, CreateTaskRequest)
    services = services_of(request)
    if body.type not in services.handlers:
        raise HandlerNotFound(
            f"unknown export type {body.type!r}",
            [
                FieldProblem(
                    "type", f"must be one of: {', '.join(h.name for h in services.handlers)}"
                )
            ],
        )
    handler = services.handlers.get(body.type)
    params = validate(handler.params_model, body.params, prefix="params")
    if not account.may_export:
        raise Forbidden(f"account is {account.status} and cannot create exports")
    task = await services.tasks.create(
        type_name=body.type,
        file_format=body.format,
        params=params.model_dump(mode="json", exclude_none=True),
        owner_id=account.id,
    )
    try:
        await services.queue.enqueue(task.id)
    except (RedisError, OSError) as exc:
        log.error("task %s: could not enqueue: %s", task.id, exc)
        await services.tasks.fail(task.id, "the job queue was unavailable; please retry")
        raise ServiceUnavailable("the job queue is unavailable; try again shortly") from None
    log.info("task %s: created %s/%s by account %d", task.id, task.type, task.format, account.id)
    response = _task_json(task, status=202)
    response.headers["Location"] = f"/api/export-tasks/{task.id}"
    return response


@routes.get("/api/export-tasks")
async def list_tasks(request: web.Request) -> web.Response:
    account = await current_account(request)
    query = validate(ListTasksQuery, dict(request.query))
    page = await services_of(request).tasks.list_own(
        account.id,
        status=query.status,
        type_name=query.type,
        limit=query.page_size,
        offset=(query.page - 1) * query.page_size,
    )
    body = TaskPageOut(
        items=[TaskOut.of(task) for task in page.tasks],
        total=page.total,
        page=query.page,
        page_size=query.page_size,
    )
    return json_model(body)


@routes.get("/api/export-tasks/{task_id}")
async def show_task(request: web.Request) -> web.Response:
    account = await current_account(request)
    return _task_json(await services_of(request).tasks.get_own(_task_id(request), account.id))


def content_disposition(task: ExportTask, file_name: str) -> str:
    """``attachment``: an ASCII ``filename`` for old clients, the real name in ``filename*``."""
    ascii_part = file_name.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "")
    fallback = ascii_part if ascii_part == file_name else f"{task.type}{ascii_part}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@routes.get("/api/export-tasks/{task_id}/download")
async def download_task_file(request: web.Request) -> web.FileResponse:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(_task_id(request), account.id)
    if task.status is not TaskStatus.COMPLETED or not task.file_path or not task.file_name:
        raise TaskNotReady(f"the export is {task.status.value}; only a completed export has a file")
    path = services.storage.resolve(task.file_path)
    if path is None:
        raise FileGone("the export's file is no longer available")
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": content_disposition(task, task.file_name),
            "Cache-Control": "private, no-store",
        },
    )
