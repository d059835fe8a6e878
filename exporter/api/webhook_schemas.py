"""The body of a webhook POST: an event and the task as the API shows it to its owner."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from exporter.api.import_schemas import ImportTaskOut
from exporter.api.schemas import TaskOut
from exporter.tasks.webhooks import SIGNATURE_HEADER

# What the trigger of migration 0019 names an event: ``task.`` and the status reached.
EventType = Literal["task.completed", "task.failed", "task.cancelled", "task.expired"]


class WebhookEvent(BaseModel):
    """What every webhook POST carries (README: Webhooks)."""

    id: uuid.UUID = Field(description="the event's id: the same on every retry")
    type: EventType = Field(description="the status the task reached, as task.<status>")
    created_at: datetime = Field(description="when the task reached the status")
    task: TaskOut | ImportTaskOut = Field(description="the task as GET shows it to its owner")


def webhook_operations(ref: str) -> dict[str, Any]:
    """The OpenAPI ``webhooks`` object: the POST a receiver gets, ``ref`` naming the event's
    schema."""
    return {
        "taskEnded": {
            "post": {
                "summary": "A task was completed, failed, cancelled or expired",
                "parameters": [
                    {
                        "name": SIGNATURE_HEADER,
                        "in": "header",
                        "required": True,
                        "description": "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>' with"
                        " EXPORTER_WEBHOOK_SECRET>",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": ref}}},
                },
                "responses": {
                    "2XX": {"description": "received; any other answer is retried"},
                },
            }
        }
    }
