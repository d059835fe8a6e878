"""What the task endpoints of every kind do alike: read a task id and an Idempotency-Key, create
and enqueue a task against the quotas, list, cancel, delete, and serve a task's stored file."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Protocol
from urllib.parse import quote

from aiohttp import web
from redis.exceptions import RedisError

from exporter import log_context
from exporter.api.audited import Note, audited
from exporter.api.auth import current_account
from exporter.api.notify_targets import check_notify_target
from exporter.api.schemas import ListTasksQuery
from exporter.api.services import Services, services_of
from exporter.audit.events import AuditAction, TaskRef
from exporter.auth.accounts import Account
from exporter.errors import (
    FieldProblem,
    FileGone,
    InvalidParams,
    ServiceUnavailable,
    TaskStateConflict,
    Unauthorized,
)
from exporter.storage.ranged_response import RangedResponse
from exporter.tasks.kinds import TaskKind
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.repository import Creation, NewTask, Quotas
from exporter.tasks.task_metrics import count_created, count_finished
from exporter.validation import validate

log = logging.getLogger("exporter.api")

IDEMPOTENCY_KEY_MAX = 200
# What a download's row keeps of its Range header.
RANGE_SHOWN_MAX = 100
# A task id in a route is a UUID, so that /api/export-tasks/stream is never taken for a task.
TASK_ID_PATTERN = (
    "{task_id:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}}"
)
# An expired task's file is gone for good: creating it again is what its owner can do.
RETRYABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED)


def task_id_of(request: web.Request) -> uuid.UUID:
    # The route's pattern lets only UUIDs through.
    return uuid.UUID(request.match_info["task_id"])


def idempotency_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key header, checked; None when it sent none."""
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


async def submit(services: Services, kind: TaskKind, account: Account, new: NewTask) -> Creation:
    """Create (or find) the task within the quotas, and enqueue it if it is new."""
    settings = services.settings
    if new.spec.notify_url is not None:
        await check_notify_target(new.spec.notify_url, settings)
    creation = await services.tasks.create(
        # The request's id, which its log lines carry, for the worker's lines about the task.
        replace(new, request_id=log_context.request_id.get()),
        kind,
        Quotas(
            settings.max_active_per_user,
            settings.max_kept_bytes_per_user,
            queue_full=await _queue_full(services),
        ),
    )
    task = creation.task
    if creation.created:
        count_created(task)
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
    return creation


def require_retryable(task: Task, kind: TaskKind) -> None:
    """TaskStateConflict unless the task is failed, cancelled or expired."""
    if task.status not in RETRYABLE:
        raise TaskStateConflict(
            f"the {kind.noun} is {task.status.value}; only a failed, cancelled or expired one "
            "can be retried",
            params={"status": task.status.value},
        )


@asynccontextmanager
async def task_audited(
    request: web.Request, kind: TaskKind, verb: str, account: Account
) -> AsyncIterator[Note]:
    """:func:`audited` for ``verb`` on the request's task of ``kind``, named in the row from the
    start (a refusal too names the task asked for)."""
    async with audited(request, AuditAction.of(kind.name, verb), account.id) as note:
        note.task = TaskRef(task_id_of(request), kind.name)
        yield note


async def cancel(
    request: web.Request, kind: TaskKind, account: Account, owner: Account | None = None
) -> Task:
    """Cancel the request's pending task or stop its running one; TaskStateConflict otherwise.
    The task is ``owner``'s (an operator acting for another account), else the caller's; the
    audit trail names the caller, ``account``."""
    services = services_of(request)
    owner = owner or account
    async with task_audited(request, kind, "cancel", account) as note:
        task_id = task_id_of(request)
        task = await services.tasks.request_cancel(task_id, owner.id, kind)
        if task is None:
            current = await services.tasks.get_own(task_id, owner.id, kind)
            note.about(current)
            raise TaskStateConflict(
                f"the {kind.noun} is already {current.status.value}; nothing to cancel",
                params={"status": current.status.value},
            )
        note.about(task)
    log.info("task %s: cancel requested by account %d (was %s)", task.id, account.id, task.status)
    count_finished(task)  # a pending task is cancelled at once
    return task


async def delete(request: web.Request, kind: TaskKind, account: Account) -> None:
    """Remove the caller's task and every file it has (made or uploaded)."""
    services = services_of(request)
    async with task_audited(request, kind, "delete", account) as note:
        task = await services.tasks.delete_own(task_id_of(request), account.id, kind)
        note.about(task)
    for key in (task.file_key, task.upload_key):
        if key:
            await services.storage.delete(key)
    log.info("task %s: deleted by account %d", task.id, account.id)


class ListedKind(TaskKind, Protocol):
    """A kind whose tasks are listed, filtered by type: it knows its types."""

    def handler(self, type_name: str) -> object:
        """The type's handler; HandlerNotFound naming the ``type`` field if none."""


async def task_page(
    request: web.Request, kind: ListedKind, *, base_url: str, function: str
) -> web.Response:
    """A page of the caller's tasks of ``kind`` as the SQL ``function`` writes it."""
    # PostgreSQL writes the JSON: the list is the endpoint a page polls, and this halves its
    # cost per request.
    account = await current_account(request)
    query = validate(ListTasksQuery, dict(request.query))
    if query.type is not None:
        kind.handler(query.type)
    body = await services_of(request).tasks.page_json(
        account.id,
        kind,
        base_url=base_url,
        status=query.status,
        type_name=query.type,
        page=query.page,
        page_size=query.page_size,
        function=function,
    )
    if body is None:
        raise Unauthorized("unknown account")
    return web.Response(text=body, content_type="application/json")


def content_disposition(type_name: str, file_name: str) -> str:
    """``attachment``: an ASCII ``filename`` for old clients (led by the task type's name when
    characters had to go), the real name in ``filename*``."""
    ascii_part = file_name.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "")
    fallback = ascii_part if ascii_part == file_name else f"{type_name}{ascii_part}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


async def serve_file(
    request: web.Request,
    note: Note,
    task: Task,
    key: str,
    name: str,
    *,
    content_type: str,
    gone: str,
) -> web.StreamResponse:
    """The task's stored file ``key`` as an attachment named ``name``; FileGone saying ``gone``
    when storage no longer has it (a completed task is then marked expired).

    The body is sent here rather than by aiohttp after the handler, so that ``note`` has the
    bytes that reached the connection, a transfer the client cut short included. A ``HEAD``
    downloads nothing and is not recorded.
    """
    services = services_of(request)
    try:
        response = await services.storage.download(
            key,
            content_type=content_type,
            content_disposition=content_disposition(task.type, name),
        )
    except OSError as exc:
        # The store is down or refuses us (retried already): the file may well still be there.
        log.error("task %s: cannot read %s from storage: %s", task.id, key, exc)
        raise ServiceUnavailable("the file cannot be read from storage now; try again") from exc
    if response is None:
        await services.tasks.expire_lost_file(task.id)
        log.warning("task %s: its file %s is gone from storage", task.id, key)
        raise FileGone(gone)
    response.headers["Cache-Control"] = "private, no-store"
    if request.method == "HEAD":
        note.skip = True
        return response
    try:
        await response.prepare(request)
        await response.write_eof()
    finally:
        _note_download(note, request, response)
    return response


def _note_download(note: Note, request: web.Request, response: RangedResponse) -> None:
    note.bytes_sent = response.bytes_sent
    note.detail = {"status": response.status}
    if "Range" in request.headers:
        note.detail["range"] = request.headers["Range"][:RANGE_SHOWN_MAX]
    if response.status == web.HTTPRequestRangeNotSatisfiable.status_code:
        note.refused_code = "range_not_satisfiable"
