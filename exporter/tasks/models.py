"""A task as stored in PostgreSQL, whatever its kind, and the enums whose values are the stored
strings. :class:`Task` is the one spelling of a task row: its columns are read from it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg


class TaskStatus(StrEnum):
    """Lifecycle of a task; values are what the database stores and the API returns."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Task:
    """One row of the tasks table. ``kind`` names the work (``export``); ``type`` and
    ``format`` mean what that kind says they mean. ``file_*`` is the file the task made,
    ``upload_*`` the one it was given, ``outcome`` what the kind reports beyond its rows;
    ``created_lsn`` is where the primary's write-ahead log stood at create (a byte position;
    None for tasks older than migration 0016)."""

    id: uuid.UUID
    kind: str
    type: str
    status: TaskStatus
    format: str
    params: dict[str, Any]
    file_name: str | None
    file_key: str | None
    file_size: int | None
    row_count: int | None
    rows_done: int
    rows_total: int | None
    error: str | None
    error_code: str | None
    error_params: dict[str, Any] | None
    created_by_id: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    enqueue_count: int
    status_note: str | None
    upload_key: str | None
    upload_name: str | None
    upload_size: int | None
    outcome: dict[str, Any] | None
    created_lsn: int | None
    # The X-Request-ID of the API request that created the task, for its log lines.
    request_id: str | None
    # Where a POST tells of the task's end (completed, failed, cancelled, expired), if asked.
    notify_url: str | None
    # Downloads of its file (an export's) or report (an import's) that sent it (migration 0020).
    download_count: int
    last_download_at: datetime | None


@dataclass(frozen=True)
class TaskFailure:
    """Why a task failed: a stable code and its values for pages, English for API clients."""

    code: str
    message: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskEvent:
    """One status change of a task, as the database recorded it."""

    status: TaskStatus
    at: datetime
    attempt: int
    detail: str | None


_TASK_FIELDS = tuple(field.name for field in fields(Task))
TASK_COLUMNS = ", ".join(_TASK_FIELDS)


def task_from_record(record: asyncpg.Record) -> Task:
    """The task a row holds (its other columns, worker bookkeeping, are left out)."""
    values = {name: record[name] for name in _TASK_FIELDS}
    return Task(**{**values, "status": TaskStatus(values["status"])})
