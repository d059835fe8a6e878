"""GET /api/audit-events: the audit trail, for accounts whose role grants ``audit:read``.

Filtered by account, action, task and time, newest first, a page at a time: each page names
the ``before`` that continues it (keyset on the event's id, see exporter.audit.listing).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.audit.events import AuditAction, AuditOutcome
from exporter.audit.listing import EventFilter, matching_events
from exporter.auth.accounts import require_permissions
from exporter.errors import FieldProblem, InvalidParams
from exporter.input_model import InputModel
from exporter.validation import validate

routes = web.RouteTableDef()

AUDIT_EVENTS_PATH = "/api/audit-events"
AUDIT_READ = "audit:read"


def _iso_8601(value: object) -> object:
    # pydantic alone also takes a number of seconds since 1970 ("0.5"), which no client means.
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time with an offset") from None


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


class AuditEventsQuery(InputModel):
    """Query string of GET /api/audit-events; every filter given must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    account: int | None = Field(None, ge=1, description="the account that acted")
    action: AuditAction | None = None
    task: uuid.UUID | None = Field(None, description="the task acted on")
    since: IsoTime | None = Field(
        None, alias="from", description="events at or after this time (ISO 8601, with offset)"
    )
    until: IsoTime | None = Field(
        None, alias="to", description="events before this time (ISO 8601, with offset)"
    )
    before: int | None = Field(None, ge=1, description="next_before of the previous page")
    limit: int = Field(50, ge=1, le=200)


class AuditEventOut(BaseModel):
    """One recorded action."""

    id: int
    at: datetime = Field(description="when it was recorded (a download: when it ended)")
    action: AuditAction
    outcome: AuditOutcome
    error_code: str | None = Field(description="what a refused action was answered with")
    account_id: int | None = Field(description="who; null for a failed sign-in")
    username: str | None = Field(description="the username a sign-in tried")
    address: str | None = Field(description="the client's address (null for a worker's event)")
    user_agent: str | None = Field(description="its User-Agent, cut to 256 characters")
    task_id: uuid.UUID | None
    task_kind: str | None
    task_type: str | None
    bytes_sent: int | None = Field(
        description="a download's body bytes handed to the connection; null for a redirect"
    )
    request_id: str | None = Field(description="the X-Request-ID, as the logs have it")
    detail: dict[str, Any] = Field(
        description="what else the action knows: a download's status and Range, a retry's new"
        " task (retried_as), an apply's row counts"
    )


class AuditEventPageOut(BaseModel):
    """Events newest first; ``next_before`` continues the listing (null on its last page)."""

    items: list[AuditEventOut]
    next_before: int | None


def _filter(query: AuditEventsQuery) -> EventFilter:
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise InvalidParams(
            "invalid request: to: must be later than from",
            [FieldProblem("to", "must be later than from", "range_reversed")],
        )
    return EventFilter(
        account_id=query.account,
        action=query.action,
        task_id=query.task,
        since=query.since,
        until=query.until,
        before_id=query.before,
    )


@routes.get(AUDIT_EVENTS_PATH)
async def list_audit_events(request: web.Request) -> web.Response:
    require_permissions(await current_account(request), AUDIT_READ)
    query = validate(AuditEventsQuery, dict(request.query))
    found = await matching_events(services_of(request).pool, _filter(query), query.limit + 1)
    page = found[: query.limit]
    return json_model(
        AuditEventPageOut(
            items=[AuditEventOut.model_validate(asdict(event)) for event in page],
            next_before=page[-1].id if len(found) > query.limit else None,
        )
    )
