"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the API's pydantic models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from exporter.api.schemas import (
    CreateTaskRequest,
    ErrorOut,
    ExportTypesOut,
    HealthOut,
    TaskOut,
    TaskPageOut,
)
from exporter.api.services import services_of
from exporter.models import TaskStatus
from exporter.registry import HandlerRegistry

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ErrorOut, "error") for status in statuses}


_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _paths() -> dict[str, Any]:
    list_params = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in (
            ("status", {"type": "string", "enum": [s.value for s in TaskStatus]}),
            ("type", {"type": "string"}),
            ("page", {"type": "integer", "minimum": 1, "default": 1}),
            ("page_size", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
        )
    ]
    return {
        "/api/export-tasks": {
            "post": {
                "summary": "Create an export task",
                "security": _SECURED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(CreateTaskRequest)}},
                },
                "responses": {
                    "202": _json(TaskOut, "the task, pending"),
                    **_errors(400, 401, 403, 413, 422, 503),
                },
            },
            "get": {
                "summary": "The caller's tasks, newest first",
                "security": _SECURED,
                "parameters": list_params,
                "responses": {"200": _json(TaskPageOut, "a page of tasks"), **_errors(401, 422)},
            },
        },
        "/api/export-tasks/{task_id}": {
            "get": {
                "summary": "One of the caller's tasks",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"200": _json(TaskOut, "the task"), **_errors(401, 404)},
            }
        },
        "/api/export-tasks/{task_id}/download": {
            "get": {
                "summary": "The finished file",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {
                    "200": {
                        "description": "the file, as an attachment",
                        "content": {"application/octet-stream": {}},
                    },
                    **_errors(401, 404, 409, 410),
                },
            }
        },
        "/api/export-types": {
            "get": {
                "summary": "Registered export types",
                "security": _SECURED,
                "responses": {"200": _json(ExportTypesOut, "the types"), **_errors(401)},
            }
        },
        "/healthz": {
            "get": {"summary": "The process is up", "responses": {"200": _json(HealthOut, "up")}}
        },
        "/readyz": {
            "get": {
                "summary": "PostgreSQL and Redis answer",
                "responses": {
                    "200": _json(HealthOut, "ready"),
                    "503": _json(HealthOut, "not ready"),
                },
            }
        },
    }


def build_openapi(handlers: HandlerRegistry) -> dict[str, Any]:
    """The whole document; each export type's params model is listed under its own schema."""
    models: list[type[BaseModel]] = [
        CreateTaskRequest,
        TaskOut,
        TaskPageOut,
        ExportTypesOut,
        ErrorOut,
        HealthOut,
    ]
    models.extend(handler.params_model for handler in handlers)
    _, schemas = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exporter",
            "version": "0.1.0",
            "description": "Asynchronous data exports",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@routes.get("/api/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(services_of(request).handlers))
