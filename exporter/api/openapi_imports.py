"""The import paths of the OpenAPI document: uploads, import tasks, import types, templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from exporter.api.import_schemas import ImportTaskOut, ImportTaskPageOut, ImportTypesOut
from exporter.api.import_tasks import FILE_FIELD
from exporter.api.import_types import TemplateQuery
from exporter.api.openapi_parts import (
    AUTH_ERRORS,
    IDEMPOTENCY_KEY,
    SECURED,
    TASK_ID,
    errors,
    file_content,
    header,
    json_answer,
    task_paths,
)
from exporter.api.schemas import ListTasksQuery
from exporter.imports.registry import ImportRegistry
from exporter.imports.requests import ImportMode, OnError
from exporter.imports.template import TemplateFormat
from exporter.tasks.notify_url import NOTIFY_URL_MAX

# The document's query parameters of models, some fields' schemas replaced by name.
Query = Callable[..., list[dict[str, Any]]]

ATTACHMENT = {"Content-Disposition": header("attachment; filename=…; filename*=…")}


def _upload_form(type_names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", FILE_FIELD],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": type_names},
            "mode": {
                "type": "string",
                "enum": [mode.value for mode in ImportMode],
                "default": ImportMode.VALIDATE.value,
            },
            "on_error": {
                "type": "string",
                "enum": [choice.value for choice in OnError],
                "default": OnError.ABORT.value,
            },
            "notify_url": {
                "type": "string",
                "maxLength": NOTIFY_URL_MAX,
                "description": "an http(s) URL told of the task's end by a signed POST",
            },
            FILE_FIELD: {
                "type": "string",
                "format": "binary",
                "description": "csv, xlsx or xlsb, judged from its bytes",
            },
        },
    }


def import_models() -> list[type[BaseModel]]:
    """The models the import paths name, for the document's schemas."""
    return [ImportTaskOut, ImportTaskPageOut, ImportTypesOut]


def import_paths(handlers: ImportRegistry, query: Query) -> dict[str, Any]:
    type_names = [handler.name for handler in handlers]
    type_enum = {"type": "string", "enum": type_names}
    return {
        "/api/import-tasks": {
            "post": {
                "summary": "Upload a file to import (streamed; never held whole in memory)",
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _upload_form(type_names)}},
                },
                "parameters": [IDEMPOTENCY_KEY],
                "responses": {
                    "202": json_answer(
                        ImportTaskOut, "the task, pending", Location="the task's URL"
                    ),
                    "200": json_answer(
                        ImportTaskOut,
                        "the unfinished (or idempotent) task it repeats",
                        Location="the task's URL",
                    ),
                    # 408: the upload paused too long; 413: over EXPORTER_MAX_UPLOAD_BYTES;
                    # 415: not multipart/form-data, or a file that is not csv, xlsx or xlsb.
                    **errors(400, *AUTH_ERRORS, 408, 409, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "The caller's imports, newest first",
                "security": SECURED,
                "parameters": query(ListTasksQuery, type=type_enum),
                "responses": {
                    "200": json_answer(ImportTaskPageOut, "a page of imports"),
                    **errors(*AUTH_ERRORS, 422),
                },
            },
        },
        # 410 on retry: the upload has expired.
        **task_paths("/api/import-tasks", ImportTaskOut, "import", retry_errors=(410,)),
        "/api/import-tasks/{task_id}/report": {
            "get": {
                "summary": "The rejected rows, with why each was rejected (xlsx)",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {
                    "200": {
                        "description": "the report, as an attachment",
                        "headers": ATTACHMENT,
                        "content": file_content("xlsx"),
                    },
                    # 404: no row was rejected; 409: not finished yet; 410: expired.
                    **errors(*AUTH_ERRORS, 404, 409, 410),
                },
            }
        },
        "/api/import-types": {
            "get": {
                "summary": "The import types the caller may import",
                "security": SECURED,
                "responses": {
                    "200": json_answer(ImportTypesOut, "the types"),
                    **errors(*AUTH_ERRORS),
                },
            }
        },
        "/api/import-types/{type}/template": {
            "get": {
                "summary": "A file to fill in: the header row and one example row",
                "security": SECURED,
                "parameters": [
                    {"name": "type", "in": "path", "required": True, "schema": type_enum},
                    *query(TemplateQuery),
                ],
                "responses": {
                    "200": {
                        "description": "the template, as an attachment",
                        "headers": ATTACHMENT,
                        "content": file_content(*TemplateFormat),
                    },
                    **errors(*AUTH_ERRORS, 422),
                },
            }
        },
    }
