"""An audit event as a row of ``audit_events``: the actions recorded and how each ended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# What a row keeps of a User-Agent header: enough to tell browsers and scripts apart.
USER_AGENT_MAX = 256


class AuditAction(StrEnum):
    """What was done; values are what ``audit_events.action`` stores and the API filters on."""

    SIGN_IN = "sign_in"
    EXPORT_DOWNLOAD = "export.download"
    EXPORT_CANCEL = "export.cancel"
    EXPORT_RETRY = "export.retry"
    EXPORT_DELETE = "export.delete"
    IMPORT_REPORT_DOWNLOAD = "import.report_download"
    # Asked for through the API (a create or a retry in apply mode) …
    IMPORT_APPLY = "import.apply"
    # … and done by a worker: the rows written, or refused for rejected rows.
    IMPORT_APPLIED = "import.applied"
    IMPORT_CANCEL = "import.cancel"
    IMPORT_RETRY = "import.retry"
    IMPORT_DELETE = "import.delete"

    @classmethod
    def of(cls, kind: str, verb: str) -> AuditAction:
        """The action ``verb`` on a task of ``kind`` (``export``, ``cancel``)."""
        return cls(f"{kind}.{verb}")


class AuditOutcome(StrEnum):
    """``refused`` carries the error code the caller was answered with; ``aborted`` is a
    download whose client left before its end."""

    OK = "ok"
    REFUSED = "refused"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Client:
    """Where a request came from: the client's address (as EXPORTER_TRUSTED_PROXIES lets the
    API tell it), its User-Agent, cut to USER_AGENT_MAX, and the request's X-Request-ID."""

    address: str | None
    user_agent: str | None
    request_id: str | None

    @classmethod
    def of(cls, address: str | None, user_agent: str | None, request_id: str | None) -> Client:
        return cls(address, user_agent[:USER_AGENT_MAX] if user_agent else None, request_id)


@dataclass(frozen=True)
class TaskRef:
    """The task an event is about, copied into the row: the task may be deleted later."""

    id: uuid.UUID
    kind: str
    type: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One row to append."""

    action: AuditAction
    outcome: AuditOutcome
    client: Client
    account_id: int | None = None
    error_code: str | None = None
    username: str | None = None
    task: TaskRef | None = None
    bytes_sent: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedEvent:
    """A row as it was stored, with its id and the database's time."""

    id: int
    at: datetime
    action: str
    outcome: str
    error_code: str | None
    account_id: int | None
    username: str | None
    address: str | None
    user_agent: str | None
    task_id: uuid.UUID | None
    task_kind: str | None
    task_type: str | None
    bytes_sent: int | None
    request_id: str | None
    detail: dict[str, Any]
