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

from exporter.api.audit_events import (
    AUDIT_EVENTS_PATH,
    AuditEventOut,
    AuditEventPageOut,
    AuditEventsQuery,
)
from exporter.api.auth import SESSION_COOKIE
from exporter.api.listings import ListEndpoint, PageQuery, list_endpoints
from exporter.api.openapi_imports import import_models, import_paths
from exporter.api.openapi_ops import ops_models, ops_paths
from exporter.api.openapi_parts import (
    AUTH_ERRORS,
    IDEMPOTENCY_KEY,
    JSON,
    REF,
    SECURED,
    TASK_ID,
    errors,
    file_content,
    header,
    json_answer,
    ref,
    task_paths,
)
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
from exporter.api.webhook_schemas import WebhookEvent, webhook_operations
from exporter.exports.formats import FORMATS
from exporter.exports.kind import CreateTaskRequest
from exporter.exports.registry import HandlerRegistry
from exporter.imports.registry import ImportRegistry

routes = web.RouteTableDef()


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
            AuditEventOut,
            AuditEventPageOut,
            *import_models(),
            WebhookEvent,
            *ops_models(),
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
            properties["params"] = {**ref(handler.params_model.__name__), "default": {}}
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
        "event": {"type": "string", "description": "ready, task, import_task or deleted"},
        "data": {
            "type": "string",
            "description": "JSON: an export as GET /api/export-tasks/{task_id} shows it (task), "
            "an import as GET /api/import-tasks/{task_id} shows it (import_task), its id "
            "(deleted)",
        },
        "retry": {"type": "integer", "minimum": 0},
        "id": {"type": "string"},
    },
}


def _task_paths(document: _Document) -> dict[str, Any]:
    return {
        "/api/export-tasks": {
            "post": {
                "summary": "Create an export task",
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": document.create_body()}},
                },
                "parameters": [IDEMPOTENCY_KEY],
                "responses": {
                    "202": json_answer(TaskOut, "the task, pending", Location="the task's URL"),
                    "200": json_answer(
                        TaskOut,
                        "the unfinished (or idempotent) task it repeats",
                        Location="the task's URL",
                    ),
                    # 408: the body did not arrive in time; 409: the account's kept files are
                    # at EXPORTER_MAX_KEPT_BYTES_PER_USER.
                    **errors(400, *AUTH_ERRORS, 408, 409, 413, 422, 429, 503),
                },
            },
            "get": {
                "summary": "The caller's tasks, newest first",
                "security": SECURED,
                "parameters": document.query(ListTasksQuery, type=document.type_enum()),
                "responses": {
                    "200": json_answer(TaskPageOut, "a page of tasks"),
                    **errors(*AUTH_ERRORS, 422),
                },
            },
        },
        "/api/export-tasks/stream": {
            "get": {
                "summary": "Server-sent events: the caller's tasks as they change",
                "security": SECURED,
                "responses": {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {"schema": SSE_EVENT}},
                    },
                    # 429: the account's streams are at their cap; 503: the process's are.
                    **errors(*AUTH_ERRORS, 429, 503),
                },
            }
        },
        **task_paths("/api/export-tasks", TaskOut, "export"),
        "/api/export-tasks/{task_id}/download": {
            "get": {
                "summary": "The finished file",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {
                    "200": {
                        "description": "the file, as an attachment",
                        "headers": {
                            "Content-Disposition": header("attachment; filename=…; filename*=…")
                        },
                        "content": file_content(*FORMATS),
                    },
                    **errors(*AUTH_ERRORS, 404, 409, 410),
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
                "security": SECURED,
                "parameters": document.query(PageQuery, handler.params_model),
                "responses": {
                    "200": json_answer(endpoint.page_model, "a page of the list"),
                    **errors(*AUTH_ERRORS, 422),
                },
            }
        }
    return paths


def _audit_paths(document: _Document) -> dict[str, Any]:
    return {
        AUDIT_EVENTS_PATH: {
            "get": {
                "summary": "The audit trail, newest first, filtered and paged (audit:read)",
                "security": SECURED,
                "parameters": document.query(AuditEventsQuery),
                "responses": {
                    "200": json_answer(AuditEventPageOut, "a page of events"),
                    # 422 also for a time range whose from is not before its to.
                    **errors(*AUTH_ERRORS, 422),
                },
            }
        }
    }


def _other_paths() -> dict[str, Any]:
    return {
        "/api/export-types": {
            "get": {
                "summary": "Registered export types",
                "security": SECURED,
                "responses": {
                    "200": json_answer(ExportTypesOut, "the types"),
                    **errors(*AUTH_ERRORS),
                },
            }
        },
        "/api/session": {
            "post": {
                "summary": "Sign in: sets the session cookie (and a CSRF token for cookie writes)",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref(LoginRequest.__name__)}},
                },
                "responses": {
                    "200": json_answer(SessionOut, "signed in", Set_Cookie="the session cookie"),
                    # 403: the account is not active; 408: the body did not arrive in time;
                    # 415: not sent as JSON; 503: Redis, which keeps the sign-in counts, is down.
                    **errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
                },
            },
            "delete": {
                "summary": "Sign out",
                "security": SECURED,
                "responses": {
                    "204": {"description": "signed out"},
                    **errors(*AUTH_ERRORS),
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
            "get": {
                "summary": "The process is up",
                "responses": {"200": json_answer(HealthOut, "up")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "PostgreSQL and Redis answer",
                "responses": {
                    "200": json_answer(HealthOut, "ready"),
                    "503": json_answer(HealthOut, "not ready"),
                },
            }
        },
    }


def build_openapi(handlers: HandlerRegistry, imports: ImportRegistry) -> dict[str, Any]:
    """The whole document; each export type's params model is listed under its own schema."""
    document = _Document(handlers)
    paths = {
        **_task_paths(document),
        **import_paths(imports, document.query),
        **_list_paths(document),
        **ops_paths(document.query),
        **_audit_paths(document),
        **_other_paths(),
    }
    for operation in (op for path in paths.values() for op in path.values()):
        # A request the HTTP parser cannot read gets this before any route is known.
        operation["responses"].setdefault("400", json_answer(ErrorOut, "unreadable request"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exporter",
            "version": "0.1.0",
            "description": "Asynchronous data exports and imports",
        },
        "paths": paths,
        "webhooks": webhook_operations(REF.format(model="WebhookEvent")),
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
    services = services_of(request)
    return web.json_response(build_openapi(services.exports.handlers, services.imports.handlers))
