"""Request and response bodies of the API; the OpenAPI document is generated from these."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exporter.exports.formats.names import FormatName
from exporter.input_model import InputModel
from exporter.tasks.models import Task, TaskEvent, TaskStatus
from exporter.tasks.webhooks import AttemptLog, DeliveryStatus


class ListTasksQuery(InputModel):
    """Query string of GET /api/export-tasks."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    type: str | None = Field(None, max_length=64)
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(20, ge=1, le=100)


class TaskEventOut(BaseModel):
    """One status change in a task's history."""

    status: TaskStatus
    at: datetime
    attempt: int
    detail: str | None


def history_out(history: list[TaskEvent] | None) -> list[TaskEventOut] | None:
    """A task's history as its answer shows it (None: not asked for)."""
    if history is None:
        return None
    return [
        TaskEventOut(status=e.status, at=e.at, attempt=e.attempt, detail=e.detail) for e in history
    ]


class WebhookAttemptOut(BaseModel):
    """One attempt at telling a URL of the task's end (README: Webhooks)."""

    event_id: uuid.UUID = Field(description="the same on every attempt at one event")
    event_type: str = Field(description="task.completed, task.failed, task.cancelled, task.expired")
    target: Literal["notify_url", "deployment"] = Field(
        description="the task's notify_url, or the deployment's EXPORTER_WEBHOOK_URL"
    )
    attempt: int
    at: datetime = Field(description="when the attempt started")
    status_code: int | None = Field(description="the receiver's HTTP status; null if none")
    error: str | None = Field(description="why the attempt failed; null when delivered")
    delivery: DeliveryStatus = Field(
        description="where the event's delivery stands now: pending (retried), delivered, failed"
    )


def webhooks_out(task: Task, log: list[AttemptLog] | None) -> list[WebhookAttemptOut] | None:
    """A task's delivery log as its answer shows it (None: not asked for); the deployment's
    URL is the operator's, so only named as a target."""
    if log is None:
        return None
    return [
        WebhookAttemptOut(
            event_id=a.event_id,
            event_type=a.event_type,
            target="notify_url" if a.url == task.notify_url else "deployment",
            attempt=a.attempt,
            at=a.started_at,
            status_code=a.status_code,
            error=a.error,
            delivery=a.delivery_status,
        )
        for a in log
    ]


WEBHOOKS_DESCRIPTION = "every webhook delivery attempt of the task's events (GET of one task only)"


class TaskOut(BaseModel):
    """An export task as the API shows it (where its file is stored stays private)."""

    id: uuid.UUID
    type: str
    format: FormatName
    status: TaskStatus
    params: dict[str, Any]
    file_name: str | None
    file_size: int | None
    row_count: int | None
    rows_done: int
    rows_total: int | None
    error: str | None = Field(description="why the export failed, in English")
    error_code: str | None = Field(
        description="why the export failed, as a stable code (too_many_rows, timed_out, …)"
    )
    error_params: dict[str, Any] | None = Field(
        description="the values the failure names, by name (too_many_rows: rows, limit)"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    status_note: str | None
    download_url: str | None
    notify_url: str | None = Field(None, description="told of the task's end by a signed POST")
    download_count: int = Field(
        description="downloads that sent the file (whole or a range), as the audit trail counts"
    )
    last_download_at: datetime | None = Field(description="when the last of them ended")
    history: list[TaskEventOut] | None = Field(
        None, description="every status change, oldest first (GET /api/export-tasks/{id} only)"
    )
    webhooks: list[WebhookAttemptOut] | None = Field(None, description=WEBHOOKS_DESCRIPTION)

    @classmethod
    def of(
        cls,
        task: Task,
        base_url: str,
        history: list[TaskEvent] | None = None,
        webhooks: list[AttemptLog] | None = None,
    ) -> TaskOut:
        """The task as its owner sees it; its own address is ``base_url`` + its id."""
        shown = {name: getattr(task, name) for name in _FROM_TASK}
        completed = task.status is TaskStatus.COMPLETED
        return cls(
            **shown,
            download_url=f"{base_url}{task.id}/download" if completed else None,
            history=history_out(history),
            webhooks=webhooks_out(task, webhooks),
        )


# TaskOut's fields that a Task holds as they are; the others (links, history) are made by of().
_FROM_TASK = tuple(name for name in TaskOut.model_fields if name in {f.name for f in fields(Task)})


class TaskPageOut(BaseModel):
    """One page of the caller's tasks, newest first."""

    items: list[TaskOut]
    total: int
    page: int
    page_size: int


class ColumnOut(BaseModel):
    label: str
    kind: str


class ExportTypeOut(BaseModel):
    """A registered export type and what it takes."""

    name: str
    title: str
    formats: list[FormatName]
    columns: list[ColumnOut]
    params_schema: dict[str, Any]


class ExportTypesOut(BaseModel):
    items: list[ExportTypeOut]


class FieldError(BaseModel):
    field: str = Field(description="the dotted path of the field: params.created_from, page")
    message: str = Field(description="what is wrong, in English")
    code: str = Field(description="what is wrong, as a stable code (string_too_long, …)")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the values the message names (max_length, …)"
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable code: quota_exceeded, invalid_params, …")
    message: str = Field(description="what went wrong, in English")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the values the message names (limit, retry_after, …)"
    )
    details: list[FieldError] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
