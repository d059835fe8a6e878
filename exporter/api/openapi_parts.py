"""Pieces of the OpenAPI document that every group of paths uses: references to schemas,
JSON answers, the error answers, security and the task id parameter."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from exporter.api.schemas import ErrorOut
from exporter.api.task_actions import IDEMPOTENCY_KEY_MAX
from exporter.exports.formats import FORMATS

REF = "#/components/schemas/{model}"
JSON = "application/json"
# Every authenticated operation: no or a bad token (401); an account that may not (403).
AUTH_ERRORS = (401, 403)
# Statuses whose answers say when to come back.
RETRY_LATER = frozenset({429, 503})


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def json_answer(model: type[BaseModel], description: str, **headers: str) -> dict[str, Any]:
    """An answer with a JSON body of ``model``; ``headers`` by name (``_`` for ``-``)."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ref(model.__name__)}},
    }
    if headers:
        answer["headers"] = {name.replace("_", "-"): header(text) for name, text in headers.items()}
    return answer


def errors(*statuses: int) -> dict[str, Any]:
    """The error answers of ``statuses``; 429 and 503 say when to come back."""
    answers = {}
    for status in statuses:
        if status in RETRY_LATER:
            answers[str(status)] = json_answer(ErrorOut, "error", Retry_After="seconds to wait")
        else:
            answers[str(status)] = json_answer(ErrorOut, "error")
    return answers


def file_content(*formats: str) -> dict[str, Any]:
    """The content of a file answer in any of ``formats`` (names of FORMATS)."""
    return {
        FORMATS[name].content_type.partition(";")[0]: {
            "schema": {"type": "string", "format": "binary"}
        }
        for name in formats
    }


IDEMPOTENCY_KEY = {
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
TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
# A bearer token, or the pages' session cookie (with X-CSRF-Token on a change).
SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]


def task_paths(
    base: str, model: type[BaseModel], noun: str, retry_errors: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Show, delete, cancel and retry of one kind's tasks, under ``base``."""
    task = json_answer(model, "the task", Location="the task's URL")
    return {
        f"{base}/{{task_id}}": {
            "get": {
                "summary": f"One of the caller's {noun}s, with its history",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {"200": task, **errors(*AUTH_ERRORS, 404)},
            },
            "delete": {
                "summary": f"Remove the {noun} and its files (a running one is stopped)",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {"204": {"description": "deleted"}, **errors(*AUTH_ERRORS, 404)},
            },
        },
        f"{base}/{{task_id}}/cancel": {
            "post": {
                "summary": f"Cancel a pending {noun} at once, or stop a running one",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {"200": task, **errors(*AUTH_ERRORS, 404, 409)},
            }
        },
        f"{base}/{{task_id}}/retry": {
            "post": {
                "summary": f"A new {noun} with the request of a failed, cancelled or expired one",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {
                    "202": json_answer(model, "the new task", Location="the task's URL"),
                    "200": json_answer(
                        model, "an identical unfinished task", Location="the task's URL"
                    ),
                    **errors(*AUTH_ERRORS, 404, 409, *retry_errors, 429, 503),
                },
            }
        },
    }
