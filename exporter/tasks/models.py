"""The task as stored in PostgreSQL, and the types whose values are the stored strings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """Lifecycle of an export task; values are what the database stores and the API returns."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The name of a file format (exporter.exports.formats.FORMATS), stored and shown as it is and
# used as the file's suffix; the lifecycle never interprets it.
ExportFormat = str


@dataclass(frozen=True)
class ExportTask:
    """One row of export_tasks."""

    id: uuid.UUID
    type: str
    status: TaskStatus
    format: ExportFormat
    params: dict[str, Any]
    file_name: str | None
    file_path: str | None
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
