"""Appending audit events, and removing them once past their retention.

An event is written after the action it records, and its failure never fails that action: it
is logged at ERROR with everything the row would have held, so that a recorded download or
apply is never lost without a trace. An import's rows being written is recorded on the import's
own connection instead (``append_on``), in the transaction that writes them.
"""

from __future__ import annotations

import asyncio
import logging

from exporter.audit.events import AuditAction, AuditEvent, AuditOutcome
from exporter.db import DATABASE_ERRORS, Connection, Pool

log = logging.getLogger("exporter.audit")

_COLUMNS = """
action, outcome, error_code, account_id, username, address, user_agent, task_id, task_kind,
task_type, bytes_sent, request_id, detail
"""
_VALUES = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13"

INSERT_EVENT = f"INSERT INTO audit_events ({_COLUMNS}) VALUES ({_VALUES})"

# A download that sent its file counts on its task in the same statement as its row, so that
# the count shown with the task is the number of such rows (until their retention ends).
INSERT_DOWNLOAD = f"""
WITH event AS (INSERT INTO audit_events ({_COLUMNS}) VALUES ({_VALUES}) RETURNING at)
UPDATE tasks SET download_count = download_count + 1, last_download_at = (SELECT at FROM event)
WHERE id = $8
"""

PRUNE = "SELECT prune_audit_events($1)"

DOWNLOADS = frozenset({AuditAction.EXPORT_DOWNLOAD, AuditAction.IMPORT_REPORT_DOWNLOAD})


def _arguments(event: AuditEvent) -> tuple[object, ...]:
    task = event.task
    return (
        event.action.value,
        event.outcome.value,
        event.error_code,
        event.account_id,
        event.username,
        event.client.address,
        event.client.user_agent,
        task and task.id,
        task and task.kind,
        task and task.type,
        event.bytes_sent,
        event.client.request_id,
        event.detail,
    )


def _counts_as_download(event: AuditEvent) -> bool:
    return event.action in DOWNLOADS and event.outcome is AuditOutcome.OK and event.task is not None


async def append_on(conn: Connection, event: AuditEvent) -> None:
    """Append ``event`` on ``conn``, in its transaction; errors are the caller's."""
    await conn.execute(INSERT_EVENT, *_arguments(event))


class AuditTrail:
    """Where the API appends its events.

    Each insert runs in a task of its own: aiohttp cancels a handler whose client has gone,
    which is when a cut-short download is recorded, and a cancelled insert would lose its row
    without a word. ``close`` waits for the inserts still running.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._running: set[asyncio.Task[None]] = set()

    async def append(self, event: AuditEvent) -> None:
        """Append ``event`` (and count a download on its task); a failure is logged, not
        raised."""
        insert = asyncio.create_task(self._insert(event))
        self._running.add(insert)
        insert.add_done_callback(self._running.discard)
        await asyncio.shield(insert)

    async def _insert(self, event: AuditEvent) -> None:
        statement = INSERT_DOWNLOAD if _counts_as_download(event) else INSERT_EVENT
        try:
            await self._pool.execute(statement, *_arguments(event))
        except DATABASE_ERRORS as exc:
            log.error("audit event not recorded (%s): %r", exc, event)

    async def close(self) -> None:
        """Wait for the inserts under way (before the pool closes)."""
        await asyncio.gather(*self._running)


async def prune(pool: Pool, keep_days: float) -> int:
    """Remove the events older than ``keep_days`` days (at least one); how many went."""
    return int(await pool.fetchval(PRUNE, keep_days))
