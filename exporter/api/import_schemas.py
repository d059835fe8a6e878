"""Answers of the import endpoints; the OpenAPI document is generated from these."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from exporter.api.schemas import (
    WEBHOOKS_DESCRIPTION,
    TaskEventOut,
    WebhookAttemptOut,
    history_out,
    webhooks_out,
)
from exporter.imports.readers import UploadFormat
from exporter.imports.requests import ImportMode, ImportParams, OnError
from exporter.tasks.models import Task, TaskEvent, TaskStatus
from exporter.tasks.webhooks import AttemptLog


class ImportCountsOut(BaseModel):
    """What an import did (``validate``: would do) with the file's rows."""

    created: int
    updated: int
    unchanged: int
    rejected: int


class ImportErrorOut(BaseModel):
    """Why one row (or cell) of the file was rejected."""

    sheet: str | None = Field(description="the sheet's name; null for a csv file")
    row: int = Field(description="the row number the user sees in their file")
    column: str | None = Field(description="the column's header; null for the whole row")
    code: str = Field(description="what is wrong, as a stable code")
    message: str = Field(description="what is wrong, in English")
    params: dict[str, Any] = Field(default_factory=dict, description="the values it names")


class ImportTaskOut(BaseModel):
    """An import task as the API shows it (where its files are stored stays private)."""

    id: uuid.UUID
    type: str
    format: UploadFormat = Field(description="what the upload is, judged from its bytes")
    status: TaskStatus
    mode: ImportMode
    on_error: OnError
    file_name: str | None = Field(description="the name the file was uploaded as")
    file_size: int | None = Field(description="the upload's size in bytes")
    rows_done: int
    rows_total: int | None
    counts: ImportCountsOut | None = Field(description="once the file was read through")
    errors: list[ImportErrorOut] = Field(description="the first 100 rejected rows' reasons")
    has_report: bool = Field(description="an xlsx of the rejected rows can be downloaded")
    report_url: str | None
    error: str | None = Field(description="why the import failed, in English")
    error_code: str | None = Field(description="why the import failed, as a stable code")
    error_params: dict[str, Any] | None = Field(description="the values the failure names")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    cancel_requested: bool
    status_note: str | None
    notify_url: str | None = Field(None, description="told of the task's end by a signed POST")
    download_count: int = Field(
        description="downloads that sent the report (whole or a range), as the audit trail counts"
    )
    last_download_at: datetime | None = Field(description="when the last of them ended")
    history: list[TaskEventOut] | None = Field(
        None, description="every status change, oldest first (GET /api/import-tasks/{id} only)"
    )
    webhooks: list[WebhookAttemptOut] | None = Field(None, description=WEBHOOKS_DESCRIPTION)

    @classmethod
    def of(
        cls,
        task: Task,
        base_url: str,
        history: list[TaskEvent] | None = None,
        webhooks: list[AttemptLog] | None = None,
    ) -> ImportTaskOut:
        """The task as its owner sees it; its own address is ``base_url`` + its id."""
        params = ImportParams.model_validate(task.params)
        outcome = task.outcome or {}
        has_report = task.file_key is not None
        return cls(
            **{name: getattr(task, name) for name in _FROM_TASK},
            mode=params.mode,
            on_error=params.on_error,
            # The file shown is the one uploaded; the one the task made is its report.
            file_name=task.upload_name,
            file_size=task.upload_size,
            counts=outcome.get("counts"),
            errors=outcome.get("errors", []),
            has_report=has_report,
            report_url=f"{base_url}{task.id}/report" if has_report else None,
            history=history_out(history),
            webhooks=webhooks_out(task, webhooks),
        )


# ImportTaskOut's fields that a Task holds as they are (a file_* field of a task is its report).
_FROM_TASK = tuple(
    name
    for name in ImportTaskOut.model_fields
    if name in {f.name for f in fields(Task)} and not name.startswith("file_")
)


class ImportTaskPageOut(BaseModel):
    """One page of the caller's imports, newest first."""

    items: list[ImportTaskOut]
    total: int
    page: int
    page_size: int


class ImportColumnOut(BaseModel):
    """A column a file of the type may have."""

    label: str = Field(description="its header, as the export writes it")
    field: str = Field(description="its field name, which a header may give instead")
    required: bool
    allowed: list[str] | None = Field(description="the labels an enum column takes; else null")


class ImportTypeOut(BaseModel):
    """A registered import type and what a file of it holds."""

    name: str
    title: str
    key: str = Field(description="the field that matches a row with the one it updates")
    columns: list[ImportColumnOut]
    formats: list[UploadFormat]
    permissions: list[str] = Field(description="every permission importing it takes")


class ImportTypesOut(BaseModel):
    items: list[ImportTypeOut]
