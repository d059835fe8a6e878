"""Import task endpoints: upload, list, show, report, cancel, retry, delete.

An upload is streamed to the work directory, judged from its bytes (csv, xlsx or xlsb), then
stored under the id its task will have (``<task id>.upload.<format>``), so that the janitor
knows whose it is, and the task created with the same quotas, Idempotency-Key and double-submit
handling as an export. Each task keeps an upload of its own: a retry copies it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid

from aiohttp import web

from exporter.api.audited import audited
from exporter.api.auth import current_account
from exporter.api.import_schemas import ImportTaskOut
from exporter.api.responses import json_model
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
from exporter.api.uploads import ReceivedFile, UploadLimits, received_form
from exporter.audit.events import AuditAction
from exporter.auth.accounts import Account
from exporter.errors import (
    FieldProblem,
    FileGone,
    InvalidParams,
    TaskNotFound,
    TaskNotReady,
)
from exporter.exports.formats import FORMATS
from exporter.imports.readers import upload_format
from exporter.imports.requests import ImportMode, ImportParams, with_upload
from exporter.tasks.kinds import TaskSpec, Upload
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.repository import Creation, NewTask
from exporter.tasks.webhooks import WebhookDeliveries

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

IMPORTS_PATH = "/api/import-tasks"
IMPORT_PATH = f"{IMPORTS_PATH}/{TASK_ID_PATTERN}"
FILE_FIELD = "file"
UNFINISHED = (TaskStatus.PENDING, TaskStatus.RUNNING)


async def _task_json(
    services: Services, task: Task, status: int = 200, *, with_history: bool = False
) -> web.Response:
    history = await services.tasks.history(task.id) if with_history else None
    webhooks = await WebhookDeliveries(services.pool).task_log(task.id) if with_history else None
    response = json_model(
        ImportTaskOut.of(task, IMPORTS_PATH + "/", history, webhooks), status=status
    )
    response.headers["Location"] = f"{IMPORTS_PATH}/{task.id}"
    return response


def _upload_key_name(task_id: uuid.UUID, file_format: str) -> str:
    return f"{task_id}.upload.{file_format}"


def _received(upload: ReceivedFile | None) -> ReceivedFile:
    if upload is None:
        raise InvalidParams(
            "the form has no file", [FieldProblem(FILE_FIELD, "a file is required", "missing")]
        )
    return upload


async def _submit_upload(
    services: Services,
    account: Account,
    spec: TaskSpec,
    file_format: str,
    upload: ReceivedFile,
    key: str | None,
) -> Creation:
    """Store the upload under the new task's id (consuming it), create and enqueue the task;
    the stored file is removed again when the request stands for an existing task or the create
    fails."""
    task_id = uuid.uuid4()
    stored = await services.storage.publish(upload.path, _upload_key_name(task_id, file_format))
    as_stored = Upload(stored.key, upload.name, stored.size)
    spec = with_upload(spec, file_format, upload.sha256, as_stored)
    try:
        creation = await submit(
            services, services.imports, account, NewTask(account.id, spec, key, task_id=task_id)
        )
    except BaseException:
        await services.storage.delete(stored.key)
        raise
    if not creation.created:
        await services.storage.delete(stored.key)
    return creation


async def _created_json(services: Services, creation: Creation) -> web.Response:
    """202 with a new task, 200 with the unfinished (or idempotent) one it repeats."""
    return await _task_json(services, creation.task, status=202 if creation.created else 200)


@routes.post(IMPORTS_PATH)
async def create_import(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    key = idempotency_key(request)
    settings = services.settings
    limits = UploadLimits(settings.max_upload_bytes, settings.body_timeout_s)
    async with (
        received_form(request, services.scratch.upload_dir, FILE_FIELD, limits) as form,
        audited(request, AuditAction.IMPORT_APPLY, account.id) as note,
    ):
        # Only an import that writes rows is recorded (asked for, allowed or not).
        note.skip = form.fields.get("mode") != ImportMode.APPLY.value
        spec = services.imports.validate(account, form.fields)
        upload = _received(form.file)
        # Reads the whole file for a csv (does it decode?): off the event loop.
        found = await asyncio.to_thread(upload_format, upload.path, services.imports.limits)
        creation = await _submit_upload(services, account, spec, found.value, upload, key)
        note.about(creation.task)
    return await _created_json(services, creation)


@routes.get(IMPORTS_PATH)
async def list_imports(request: web.Request) -> web.Response:
    services = services_of(request)
    return await task_page(
        request, services.imports, base_url=IMPORTS_PATH + "/", function="import_task_page"
    )


@routes.get(IMPORT_PATH)
async def show_import(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await services.tasks.get_own(task_id_of(request), account.id, services.imports)
    return await _task_json(services, task, with_history=True)


@routes.post(IMPORT_PATH + "/cancel")
async def cancel_import(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    task = await cancel(request, services.imports, account)
    return await _task_json(services, task)


@routes.post(IMPORT_PATH + "/retry")
async def retry_import(request: web.Request) -> web.Response:
    account = await current_account(request)
    services = services_of(request)
    async with task_audited(request, services.imports, "retry", account) as note:
        task = await services.tasks.get_own(task_id_of(request), account.id, services.imports)
        note.about(task)
        require_retryable(task, services.imports)
        params = ImportParams.model_validate(task.params)
        async with audited(request, AuditAction.IMPORT_APPLY, account.id) as applying:
            applying.skip = params.mode is not ImportMode.APPLY
            applying.detail["retry_of"] = str(task.id)
            creation = await retry(services, account, task)
            applying.about(creation.task)
        note.detail["retried_as"] = str(creation.task.id)
    return await _created_json(services, creation)


async def retry(services: Services, account: Account, task: Task) -> Creation:
    """Import ``task``'s upload (the account's) again, as a new task of the account."""
    require_retryable(task, services.imports)
    params = ImportParams.model_validate(task.params)
    # A retry is a new import: the account must still be allowed to create it.
    spec = services.imports.validate(
        account,
        {
            "type": task.type,
            "mode": params.mode,
            "on_error": params.on_error,
            "notify_url": task.notify_url,
        },
    )
    gone = "the import's file has expired and was removed; upload it again"
    if not task.upload_key:
        raise FileGone(gone)
    directory = services.scratch.upload_dir
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"{secrets.token_hex(16)}.part"
    try:
        # A copy of its own: deleting the old task must not take the new one's upload.
        if not await services.storage.retrieve(task.upload_key, copy):
            raise FileGone(gone)
        name = task.upload_name or FILE_FIELD
        upload = ReceivedFile(copy, name, task.upload_size or 0, params.sha256)
        return await _submit_upload(services, account, spec, task.format, upload, None)
    finally:
        copy.unlink(missing_ok=True)


@routes.delete(IMPORT_PATH)
async def delete_import(request: web.Request) -> web.Response:
    """Remove the task, its upload and its report; a running import's worker stops."""
    account = await current_account(request)
    services = services_of(request)
    await delete(request, services.imports, account)
    return web.Response(status=204)


@routes.get(IMPORT_PATH + "/report")
async def download_report(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    services = services_of(request)
    async with task_audited(request, services.imports, "report_download", account) as note:
        task = await services.tasks.get_own(task_id_of(request), account.id, services.imports)
        note.about(task)
        if task.status in UNFINISHED:
            raise TaskNotReady(
                f"the import is {task.status.value}; its report is ready once it has finished",
                params={"status": task.status.value},
            )
        if task.status is TaskStatus.EXPIRED:
            raise FileGone("the import's report has expired and was removed")
        if not task.file_key or not task.file_name:
            raise TaskNotFound("the import has no report: no row was rejected, or it expired")
        return await serve_file(
            request,
            note,
            task,
            task.file_key,
            task.file_name,
            content_type=FORMATS["xlsx"].content_type,
            gone="the import's report is no longer available",
        )
