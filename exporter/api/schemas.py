"""Request and response bodies of the API; the OpenAPI document is generated from these."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetPydanticSchema
from pydantic_core import core_schema

from exporter.exports.formats import DEFAULT_FORMAT, FORMATS
from exporter.input_model import InputModel
from exporter.tasks.models import ExportFormat, ExportTask, TaskEvent, TaskStatus


def _registered_formats() -> type[StrEnum]:
    # The names are the registry's, so mypy cannot see the members.
    names = StrEnum("ExportFormat", [(name, name) for name in FORMATS])  # type: ignore[misc]
    names.__doc__ = "File formats a task can produce; the value is also the file extension."
    return names


def _format_name_schema(_source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # Checked and documented as an enum of the registered names, so that an unknown one gets
    # pydantic's "enum" error and the OpenAPI document lists them; kept as the plain name.
    return core_schema.no_info_after_validator_function(
        str, handler(_FORMAT_NAMES), serialization=core_schema.to_string_ser_schema()
    )


_FORMAT_NAMES = _registered_formats()
FormatName = Annotated[ExportFormat, GetPydanticSchema(_format_name_schema)]


class CreateTaskRequest(BaseModel):
    """Body of POST /api/export-tasks.

    Not an InputModel: ``params`` are checked by the type's own model, which names the field
    inside them, and an unknown ``type`` is refused by name.
    """

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64, description="a registered export type")
    format: FormatName = DEFAULT_FORMAT
    params: dict[str, Any] = Field(default_factory=dict, description="filters of the type")


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


class TaskOut(BaseModel):
    """An export task as the API shows it (the file's path on the server stays private)."""

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
    history: list[TaskEventOut] | None = Field(
        None, description="every status change, oldest first (GET /api/export-tasks/{id} only)"
    )

    @classmethod
    def of(cls, task: ExportTask, history: list[TaskEvent] | None = None) -> TaskOut:
        download = (
            f"/api/export-tasks/{task.id}/download" if task.status is TaskStatus.COMPLETED else None
        )
        return cls(
            id=task.id,
            type=task.type,
            format=task.format,
            status=task.status,
            params=task.params,
            file_name=task.file_name,
            file_size=task.file_size,
            row_count=task.row_count,
            rows_done=task.rows_done,
            rows_total=task.rows_total,
            error=task.error,
            error_code=task.error_code,
            error_params=task.error_params,
            created_at=task.created_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            attempts=task.attempts,
            cancel_requested=task.cancel_requested,
            status_note=task.status_note,
            download_url=download,
            history=None
            if history is None
            else [
                TaskEventOut(status=e.status, at=e.at, attempt=e.attempt, detail=e.detail)
                for e in history
            ],
        )


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
