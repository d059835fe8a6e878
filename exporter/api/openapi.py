"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the API's pydantic models.

Bodies, answers and query strings come from the models the handlers validate with, and the
export types (the ``type`` values, each type's ``params``) from the registry, so the document
lists what the server really takes and answers; a schemathesis run holds it to that.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from exporter.api.auth import SESSION_COOKIE
from exporter.api.listings import ListEndpoint, PageQuery, list_endpoints
from exporter.api.schemas import (
    ErrorOut,
    ExportTypesOut,
    HealthOut,
    ListTasksQuery,
    TaskOut,
    TaskPageOut,
)
from exporter.api.services import services_of
from exporter.api.session import LoginRequest, SessionOut
from exporter.api.tasks import IDEMPOTENCY_KEY_MAX
from exporter.exports.formats import FORMATS
from exporter.exports.kind import CreateTaskRequest
from exporter.exports.registry import HandlerRegistry

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"
JSON = "application/json"
# Every authenticated operation: no or a bad token (401); an account that may not (403).
AUTH_ERRORS = (401, 403)
# Statuses whose answers say when to come back.
RETRY_LATER = frozenset({429, 503})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _json(model: type[BaseModel], description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref(model.__name__)}},
    }
    if headers:
        answer["headers"] = {
            name.replace("_", "-"): _header(text) for name, text in headers.items()
        }
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    answers = {}
    for status in statuses:
        if status in RETRY_LATER:
            answers[str(status)] = _json(ErrorOut, "error", Retry_After="seconds to wait")
        else:
            answers[str(status)] = _json(ErrorOut, "error")
    return answers


class _Document:
    """The document under construction: its schemas are collected as the paths name them."""

    def __init__(self, handlers: HandlerRegistry) -> None:
        self.handlers = handlers
        self.type_names = [handler.name for handler in handlers]
        self.lists: list[ListEndpoint] = list_endpoints(handlers)
        models: list[type[BaseModel]] = [
            CreateTaskRequest,
            TaskOut,
            TaskPageOut,
            ExportTypesOut,
            ErrorOut,
            HealthOut,
            *(endpoint.page_model for endpoint in self.lists),
            LoginRequest,
            SessionOut,
        ]
        models.extend(handler.params_model for handler in handlers)
        _, schemas = models_json_schema(
            [(model, "validation") for model in models], ref_template=REF
        )
        self.schemas: dict[str, Any] = schemas.get("$defs", {})

    def _model_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF)
        self.schemas.update(schema.pop("$defs", {}))
        return schema

    def query(self, *models: type[BaseModel], **schemas: dict[str, Any]) -> list[dict[str, Any]]:
        """Each field of the models as a query parameter (``schemas`` replace a field's)."""
        parameters = []
        for model in models:
            schema = self._model_schema(model)
            for name, field in schema["properties"].items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in schema.get("required", []),
                        "schema": schemas.get(name, _without_null(field)),
                    }
                )
        return parameters

    def type_enum(self) -> dict[str, Any]:
        return {"type": "string", "enum": self.type_names}

    def create_body(self) -> dict[str, Any]:
        """CreateTaskRequest, once per export type: that ``type`` with that type's ``params``."""
        request = self._model_schema(CreateTaskRequest)
        variants = []
        for handler in self.handlers:
            variant = copy.deepcopy(request)
            variant["title"] = f"{request['title']} ({handler.name})"
            properties = variant["properties"]
            properties["type"] = {"const": handler.name, "description": handler.title}
            properties["params"] = {**_ref(handler.params_model.__name__), "default": {}}
            variants.append(variant)
        return {"oneOf": variants}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema for a query string, which can leave a value out but not send null."""
    members = [m for m in schema.get("anyOf", []) if m != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "title") and v is not None}
    if len(members) == 1:
        return {**members[0], **rest}
    return {"anyOf": members, **rest} if members else rest


# One event of the task stream (Open API 3.1: the schema of an event stream is its events').
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "ready, task or deleted"},
        "data": {
            "type": "string",
            "description": "JSON: the task as GET /api/export-tasks/{task_id} shows it (task), "
            "its id (deleted)",
        },
        "retry": {"type": "integer", "minimum": 0},
        "id": {"type": "string"},
    },
}
_TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
# A bearer token, or the pages' session cookie (with X-CSRF-Token on a change).
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]


def _task_paths(document: _Document) -> dict[str, Any]:
    task = _json(TaskOut, "the task", Location="the task's URL")
    content = {
        file_format.content_type.partition(";")[0]: {
            "schema": {"type": "string", "format": "binary"}
        }
        for file_format in FORMATS.values()
    }
    return {
        "/api/export-tasks": {
            "post": {
                "summary": "Create an export task",
                "security": _SECURED,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": document.create_body()}},
                },
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": IDEMPOTENCY_KEY_MAX,
                            "pattern": "^[ -~]+$",
                        },
                    }
                ],
                "responses": {
                    "202": _json(TaskOut, "the task, pending", Location="the task's URL"),
                    "200": _json(
                        TaskOut,
                        "the unfinished (or idempotent) task it repeats",
                        Location="the task's URL",
                    ),
                    # 408: the body did not arrive in time; 409: the account's kept files are
                    # at EXPORTER_MAX_KEPT_BYTES_PER_USER.
                    **_errors(400, *AUTH_ERRORS, 408, 409, 413, 422, 429, 503),
                },
            },
            "get": {
                "summary": "The caller's tasks, newest first",
                "security": _SECURED,
                "parameters": document.query(ListTasksQuery, type=document.type_enum()),
                "responses": {
                    "200": _json(TaskPageOut, "a page of tasks"),
                    **_errors(*AUTH_ERRORS, 422),
                },
            },
        },
        "/api/export-tasks/stream": {
            "get": {
                "summary": "Server-sent events: the caller's tasks as they change",
                "security": _SECURED,
                "responses": {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {"schema": SSE_EVENT}},
                    },
                    # 429: the account's streams are at their cap; 503: the process's are.
                    **_errors(*AUTH_ERRORS, 429, 503),
                },
            }
        },
        "/api/export-tasks/{task_id}": {
            "get": {
                "summary": "One of the caller's tasks, with its history",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"200": task, **_errors(*AUTH_ERRORS, 404)},
            },
            "delete": {
                "summary": "Remove the task and its file (a running export is stopped)",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"204": {"description": "deleted"}, **_errors(*AUTH_ERRORS, 404)},
            },
        },
        "/api/export-tasks/{task_id}/cancel": {
            "post": {
                "summary": "Cancel a pending task at once, or stop a running one",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {"200": task, **_errors(*AUTH_ERRORS, 404, 409)},
            }
        },
        "/api/export-tasks/{task_id}/retry": {
            "post": {
                "summary": "A new task with the request of a failed, cancelled or expired one",
                "security": _SECURED,
                "parameters": [_TASK_ID],
                "responses": {
                    "202": _json(TaskOut, "the new task", Location="the task's URL"),
                    "200": _json(
                        TaskOut, "an identical unfinished task", Location="the task's URL"
                    ),
                    **_errors(*AUTH_ERRORS, 404, 409, 429, 503),
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
                        "headers": {
                            "Content-Disposition": _header("attachment; filename=…; filename*=…")
                        },
                        "content": content,
                    },
                    **_errors(*AUTH_ERRORS, 404, 409, 410),
                },
            }
        },
    }


def _list_paths(document: _Document) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in document.lists:
        handler = endpoint.handler
        # The document is in English: the list's English name, where the type has one.
        name = handler.strings.get("en", {}).get("name", f"The {handler.name} list")
        paths[endpoint.path] = {
            "get": {
                "summary": f"{name}, filtered like the {handler.name} export, paged",
                "security": _SECURED,
                "parameters": document.query(PageQuery, handler.params_model),
                "responses": {
                    "200": _json(endpoint.page_model, "a page of the list"),
                    **_errors(*AUTH_ERRORS, 422),
                },
            }
        }
    return paths


def _other_paths() -> dict[str, Any]:
    return {
        "/api/export-types": {
            "get": {
                "summary": "Registered export types",
                "security": _SECURED,
                "responses": {"200": _json(ExportTypesOut, "the types"), **_errors(*AUTH_ERRORS)},
            }
        },
        "/api/session": {
            "post": {
                "summary": "Sign in: sets the session cookie (and a CSRF token for cookie writes)",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref(LoginRequest.__name__)}},
                },
                "responses": {
                    "200": _json(SessionOut, "signed in", Set_Cookie="the session cookie"),
                    # 403: the account is not active; 408: the body did not arrive in time;
                    # 415: not sent as JSON; 503: Redis, which keeps the sign-in counts, is down.
                    **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
                },
            },
            "delete": {
                "summary": "Sign out",
                "security": _SECURED,
                "responses": {
                    "204": {"description": "signed out"},
                    **_errors(*AUTH_ERRORS),
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
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
    document = _Document(handlers)
    paths = {**_task_paths(document), **_list_paths(document), **_other_paths()}
    for operation in (op for path in paths.values() for op in path.values()):
        # A request the HTTP parser cannot read gets this before any route is known.
        operation["responses"].setdefault("400", _json(ErrorOut, "unreadable request"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exporter",
            "version": "0.1.0",
            "description": "Asynchronous data exports",
        },
        "paths": paths,
        "components": {
            "schemas": document.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            },
        },
    }


@routes.get("/api/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(services_of(request).exports.handlers))
