"""What a log line is about, where the code knows it: the request, the account, the task and the
worker, held in context variables so that every line logged on their behalf carries them.

The API sets the request and the account for the request's handling (aiohttp runs each request
in a task of its own, so nothing leaks into the next); the worker sets the task, the request that
created it and itself for the task's run. ``exporter.ops.logs`` puts them into each line.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
account_id: ContextVar[int | None] = ContextVar("account_id", default=None)
task_id: ContextVar[uuid.UUID | None] = ContextVar("task_id", default=None)
worker_id: ContextVar[str | None] = ContextVar("worker_id", default=None)


def known() -> dict[str, str | int]:
    """The fields known here, by the names a log line gives them."""
    fields: dict[str, str | int | uuid.UUID | None] = {
        "request_id": request_id.get(),
        "account_id": account_id.get(),
        "task_id": task_id.get(),
        "worker_id": worker_id.get(),
    }
    return {
        name: str(value) if isinstance(value, uuid.UUID) else value
        for name, value in fields.items()
        if value is not None
    }
