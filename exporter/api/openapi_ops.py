"""The operators' paths of the OpenAPI document: summary, workers, every account's tasks, and
cancel or retry of any of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from exporter.api.openapi_parts import AUTH_ERRORS, SECURED, TASK_ID, errors, json_answer
from exporter.api.ops import (
    OPS_PATH,
    OpsSummaryOut,
    OpsTaskPageOut,
    OpsTasksQuery,
    OpsWorkersOut,
)
from exporter.tasks.overview import OpsTask


def ops_models() -> list[type[BaseModel]]:
    return [OpsSummaryOut, OpsWorkersOut, OpsTaskPageOut, OpsTask]


def _read(summary: str, model: type[BaseModel], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"{summary} (needs ops:read)",
            "security": SECURED,
            **extra,
            "responses": {"200": json_answer(model, summary), **errors(*AUTH_ERRORS, 422)},
        }
    }


def ops_paths(query: Callable[..., list[dict[str, Any]]]) -> dict[str, Any]:
    task = json_answer(OpsTask, "the task, as operators see it")
    return {
        f"{OPS_PATH}/summary": _read(
            "Workers, queue depth, every account's tasks by status, the slowest and the failed",
            OpsSummaryOut,
        ),
        f"{OPS_PATH}/workers": _read("Workers that have not stopped cleanly", OpsWorkersOut),
        f"{OPS_PATH}/tasks": _read(
            "Every account's tasks, newest first", OpsTaskPageOut, parameters=query(OpsTasksQuery)
        ),
        f"{OPS_PATH}/tasks/{{task_id}}/cancel": {
            "post": {
                "summary": "Cancel any account's pending task, or stop its running one "
                "(needs ops:read and ops:write)",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {"200": task, **errors(*AUTH_ERRORS, 404, 409)},
            }
        },
        f"{OPS_PATH}/tasks/{{task_id}}/retry": {
            "post": {
                "summary": "Retry any account's failed, cancelled or expired task: a new task of "
                "its owner, within the owner's permissions and quotas "
                "(needs ops:read and ops:write)",
                "security": SECURED,
                "parameters": [TASK_ID],
                "responses": {
                    "202": json_answer(OpsTask, "the new task"),
                    "200": json_answer(OpsTask, "an identical unfinished task of the owner"),
                    # 410: an import whose upload has expired; 409: the owner's kept files
                    # are at their cap, or the task is not retryable.
                    **errors(*AUTH_ERRORS, 404, 409, 410, 429, 503),
                },
            }
        },
    }
