"""What an import request is: its form fields, checked, and the task they make."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from exporter.errors import FieldProblem, HandlerNotFound
from exporter.imports.registry import ImportHandler, ImportRegistry
from exporter.tasks.kinds import TaskSpec, Upload
from exporter.tasks.notify_url import NotifyUrl


class ImportMode(StrEnum):
    """``validate`` writes nothing and says what ``apply`` would do; ``apply`` writes."""

    VALIDATE = "validate"
    APPLY = "apply"


class OnError(StrEnum):
    """With rejected rows, ``abort`` writes nothing; ``skip`` writes the valid rows."""

    ABORT = "abort"
    SKIP = "skip"


class ImportRequest(BaseModel):
    """The form fields of POST /api/import-tasks beside the file."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64, description="a registered import type")
    mode: ImportMode = ImportMode.VALIDATE
    on_error: OnError = OnError.ABORT
    notify_url: NotifyUrl | None = None


class ImportParams(BaseModel):
    """What an import task stores in ``params``: its options, and the upload's checksum so
    that the same file sent twice while the first is unfinished finds that task."""

    mode: ImportMode
    on_error: OnError
    sha256: str = ""


def find_import_handler(handlers: ImportRegistry, type_name: str) -> ImportHandler:
    """The handler of ``type_name``; HandlerNotFound naming the ``type`` field if none."""
    if type_name not in handlers:
        known = ", ".join(handler.name for handler in handlers)
        raise HandlerNotFound(
            f"unknown import type {type_name!r}",
            [FieldProblem("type", f"must be one of: {known}", "unknown_type", {"expected": known})],
        )
    return handlers.get(type_name)


def with_upload(spec: TaskSpec, upload_format: str, sha256: str, upload: Upload) -> TaskSpec:
    """The checked request ``spec`` with the file it came with, stored as ``upload``."""
    params = ImportParams.model_validate({**spec.params, "sha256": sha256})
    return replace(spec, format=upload_format, params=params.model_dump(mode="json"), upload=upload)
