"""What a request did, appended to the audit trail: who, from where, what, and how it ended.

An action runs inside :func:`audited`, which learns its outcome from how the action ends: an
error the client is answered with is ``refused`` with that error's code, a connection the
client closed is ``aborted``. The row is appended once the answer is decided (a download's once
its body is sent), and its failure is logged, never answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.api.errors import status_code_name
from exporter.api.request_ids import REQUEST_ID
from exporter.api.services import services_of
from exporter.audit.events import AuditAction, AuditEvent, AuditOutcome, Client, TaskRef
from exporter.errors import ExporterError
from exporter.tasks.models import Task


@dataclass
class Note:
    """What the action learns as it goes, for its row."""

    account_id: int | None = None
    username: str | None = None
    task: TaskRef | None = None
    bytes_sent: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # Set when the request turns out to be nothing to record (a HEAD, a validation alone).
    skip: bool = False
    # The answer that was sent though the action returned (a 416 to a Range past the end).
    refused_code: str | None = None

    def about(self, task: Task) -> None:
        self.task = task_ref(task)


def task_ref(task: Task) -> TaskRef:
    return TaskRef(task.id, task.kind, task.type)


def client_of(request: web.Request) -> Client:
    """The request's client: ``request.remote`` is the address a trusted proxy forwarded
    (exporter.api.proxies), else the peer's."""
    return Client.of(request.remote, request.headers.get("User-Agent"), request.get(REQUEST_ID))


def _ending(exc: BaseException) -> tuple[AuditOutcome, str | None]:
    if isinstance(exc, ExporterError):
        return AuditOutcome.REFUSED, exc.code
    if isinstance(exc, web.HTTPException):
        return AuditOutcome.REFUSED, status_code_name(exc.status)
    if isinstance(exc, ConnectionError | asyncio.CancelledError):
        return AuditOutcome.ABORTED, None
    return AuditOutcome.REFUSED, "internal_error"


async def append(
    request: web.Request,
    action: AuditAction,
    note: Note,
    outcome: AuditOutcome,
    error_code: str | None = None,
) -> None:
    """Append the row of ``action`` as ``note`` describes it."""
    await services_of(request).audit.append(
        AuditEvent(
            action=action,
            outcome=outcome,
            client=client_of(request),
            account_id=note.account_id,
            error_code=error_code,
            username=note.username,
            task=note.task,
            bytes_sent=note.bytes_sent,
            detail=note.detail,
        )
    )


@asynccontextmanager
async def audited(
    request: web.Request, action: AuditAction, account_id: int | None = None
) -> AsyncIterator[Note]:
    """Run an action and append its row, however it ends; what it raises goes on."""
    note = Note(account_id=account_id)
    try:
        yield note
    except BaseException as exc:
        if not note.skip:
            await append(request, action, note, *_ending(exc))
        raise
    if note.skip:
        return
    if note.refused_code is not None:
        await append(request, action, note, AuditOutcome.REFUSED, note.refused_code)
    else:
        await append(request, action, note, AuditOutcome.OK)
