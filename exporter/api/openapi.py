"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the API's pydantic models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from exporter.api.listings import AccountPageOut, RolePageOut
from exporter.api.schemas import (
    CreateTaskRequest,
    ErrorOut,
    ExportTypesOut,
    HealthOut,
    TaskOut,
    TaskPageOut,
)
from exporter.api.services import services_of
from exporter.api.session import LoginRequest, SessionOut
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
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 200},
                    }
                ],
                "responses": {
                    "202": _json(TaskOut, "the task, pending"),
                    "200": _json(TaskOut, "the unfinished (or idempotent) task it repeats"),
                    **_errors(400, 401, 403, 413, 422, 429, 503),
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
                "summary": "One of the caller's tasks, with its history",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"200": _json(TaskOut, "the task"), **_errors(401, 404)},
            },
            "delete": {
                "summary": "Remove the task and its file (a running export is stopped)",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 404)},
            },
        },
        "/api/export-tasks/{task_id}/cancel": {
            "post": {
                "summary": "Cancel a pending task at once, or stop a running one",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"200": _json(TaskOut, "the task"), **_errors(401, 403, 404, 409)},
            }
        },
        "/api/export-tasks/{task_id}/retry": {
            "post": {
                "summary": "A new task with the request of a failed or cancelled one",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {
                    "202": _json(TaskOut, "the new task"),
                    **_errors(401, 403, 404, 409, 429, 503),
                },
            }
        },
        "/api/export-tasks/stream": {
            "get": {
                "summary": "Server-sent events: the caller's tasks as they change",
                "security": _SECURED,
                "responses": {
                    "200": {"description": "an event stream", "content": {"text/event-stream": {}}},
                    **_errors(401),
                },
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
        "/api/accounts": {
            "get": {
                "summary": "Accounts, filtered like the account export (keyword, status, …), paged",
                "security": _SECURED,
                "responses": {
                    "200": _json(AccountPageOut, "a page of accounts"),
                    **_errors(401, 422),
                },
            }
        },
        "/api/roles": {
            "get": {
                "summary": "Roles, filtered like the role export, paged",
                "security": _SECURED,
                "responses": {"200": _json(RolePageOut, "a page of roles"), **_errors(401, 422)},
            }
        },
        "/api/session": {
            "post": {
                "summary": "Sign in: sets the session cookie (and a CSRF token for cookie writes)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(LoginRequest)}},
                },
                "responses": {"200": _json(SessionOut, "signed in"), **_errors(400, 401, 422, 429)},
            },
            "delete": {"summary": "Sign out", "responses": {"204": {"description": "signed out"}}},
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
        AccountPageOut,
        RolePageOut,
        LoginRequest,
        SessionOut,
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
