"""Reading the audit trail back: events matching a filter, newest first, a page at a time.

Pages are cut by id (keyset), not by offset: the table only grows, a page deep in it costs what
the first costs, and an event appended meanwhile never shifts the next page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from exporter.audit.events import RecordedEvent
from exporter.db import Pool

_EVENT_COLUMNS = ", ".join(field.name for field in fields(RecordedEvent))


@dataclass(frozen=True)
class EventFilter:
    """Which events: each condition given is required; ``before_id`` continues a listing."""

    account_id: int | None = None
    action: str | None = None
    task_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


# Each condition is fixed text: only their selection varies, never what a value puts in SQL.
_CONDITIONS = {
    "account_id": "account_id = ${}",
    "action": "action = ${}",
    "task_id": "task_id = ${}",
    "since": "at >= ${}",
    "until": "at < ${}",
    "before_id": "id < ${}",
}


async def matching_events(pool: Pool, wanted: EventFilter, limit: int) -> list[RecordedEvent]:
    """At most ``limit`` events matching ``wanted``, newest (highest id) first."""
    clauses: list[str] = []
    args: list[object] = []
    for name, clause in _CONDITIONS.items():
        value = getattr(wanted, name)
        if value is not None:
            args.append(value)
            clauses.append(clause.format(len(args)))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    args.append(limit)
    records = await pool.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM audit_events{where} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [RecordedEvent(**dict(record)) for record in records]
