"""Where an export reads its rows: a streaming replica that has replayed the task's creation,
else the primary.

Read-your-writes: every row committed before a task was created lies before the task's
``created_lsn`` in the primary's write-ahead log (migration 0016), so a replica that has replayed
that far holds them all. A replica still short of it after the wait allowed, one that cannot
be reached, or a server that is not in recovery at all, is passed over for the primary, and the
worker logs why. Only the rows are read on the replica; the task's own bookkeeping stays on the
primary's pool. A read the replica cancels (a recovery conflict) fails the attempt as transient,
and every later attempt reads from the primary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from exporter.db import DATABASE_ERRORS, Connection, Pool, connect, recovery_conflict
from exporter.errors import ReplicaConflict
from exporter.tasks.models import Task

log = logging.getLogger("exporter.worker")

# A replica that does not answer within this is taken for down: the export goes to the primary
# instead of waiting out asyncpg's default minute.
CONNECT_TIMEOUT_S = 2.0
# Between two looks at how far the replica has replayed. A streaming replica is usually a few
# milliseconds behind, so the first look or the second finds it there.
POLL_INTERVAL_S = 0.05

# False: the URL names a server that is not in recovery (a primary, or a promoted ex-replica).
# Its rows are its own, not necessarily the primary's: a promoted replica takes no more of the
# primary's writes, so it is not read.
REPLAY_POSITION = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()"
NOT_IN_RECOVERY = "EXPORTER_REPLICA_DATABASE_URL names a server that is not in recovery"
RETRIED = "an earlier attempt did not finish"


@dataclass(frozen=True)
class ReplicaSettings:
    """A streaming replica that exports read from, and how long one waits for it to replay its
    task's creation."""

    dsn: str
    max_wait_s: float


@dataclass(frozen=True)
class RowSource:
    """The connection an export reads on and the URL of its server (where the connections that
    read its parts go, in its snapshot); when a replica is configured, ``note`` says which
    server that is, for the task's history."""

    conn: Connection
    dsn: str
    note: str | None = None


class RowSources:
    """Opens the connection each export reads its rows on."""

    def __init__(self, primary: Pool, replica: ReplicaSettings | None) -> None:
        self._primary = primary
        self._replica = replica

    @asynccontextmanager
    async def open(self, task: Task) -> AsyncIterator[RowSource]:
        """A connection to the replica once it holds every row committed before ``task`` was
        created; else, and for every attempt after the first, one of the primary's pool.

        A read the replica cancels to replay the primary's changes raises ReplicaConflict, a
        failure worth another attempt.
        """
        replica = self._replica
        if replica is None:
            async with self._primary.acquire() as primary_conn:
                yield RowSource(primary_conn, self._primary.dsn)
            return
        if task.attempts > 1:
            # The replica may have cancelled the earlier attempt's read (a recovery conflict),
            # and would again: the primary cancels no read.
            conn, why = None, RETRIED
        else:
            conn, why = await _caught_up_replica(replica, task)
        if conn is None:
            log.warning("task %s: reading rows from the primary: %s", task.id, why)
            async with self._primary.acquire() as primary_conn:
                note = f"rows read from the primary: {why}"
                yield RowSource(primary_conn, self._primary.dsn, note)
            return
        log.info("task %s: reading rows from the replica (%s)", task.id, why)
        try:
            yield RowSource(conn, replica.dsn, "rows read from the replica")
        except BaseException as exc:
            conn.terminate()  # possibly mid-query: nothing to wait for
            if (conflict := recovery_conflict(exc)) is not None:
                raise ReplicaConflict(
                    f"the replica cancelled the read to replay the primary's changes: {conflict}"
                ) from exc
            raise
        await _close(conn)


async def _caught_up_replica(
    replica: ReplicaSettings, task: Task
) -> tuple[asyncpg.Connection | None, str]:
    """A connection to the replica once it has replayed ``task``'s creation, or None; and why."""
    started = time.monotonic()
    try:
        conn = await connect(replica.dsn, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        return None, f"the replica could not be reached: no answer in {CONNECT_TIMEOUT_S:g} s"
    except DATABASE_ERRORS as exc:  # refused, unknown host or database, starting up, …
        return None, f"the replica could not be reached: {_reason(exc)}"
    try:
        short_by = await _replay_shortfall(conn, task.created_lsn, replica.max_wait_s)
    except TimeoutError:
        conn.terminate()
        return None, f"the replica stopped answering: no answer in {CONNECT_TIMEOUT_S:g} s"
    except DATABASE_ERRORS as exc:
        conn.terminate()
        return None, f"the replica stopped answering: {_reason(exc)}"
    except BaseException:
        conn.terminate()  # at once: a cancel must not wait for a polite goodbye
        raise
    waited_s = time.monotonic() - started
    if short_by is None:
        await _close(conn)
        return None, NOT_IN_RECOVERY
    if short_by > 0:
        await _close(conn)
        return None, (
            f"the replica was still {short_by} bytes of WAL short of the task's creation "
            f"after waiting {waited_s:.1f} s (EXPORTER_REPLICA_MAX_WAIT_S={replica.max_wait_s:g})"
        )
    return conn, f"caught up with the task's creation in {waited_s:.2f} s"


async def _replay_shortfall(
    conn: asyncpg.Connection, target: int | None, max_wait_s: float
) -> int | None:
    """Bytes of WAL the replica has yet to replay to reach ``target``, looking again until it
    has or ``max_wait_s`` is over; 0 once it is there, None if the server is not in recovery.

    Each look is bounded too (TimeoutError): a server that accepts connections but stalls its
    queries would otherwise hold the export past ``max_wait_s``.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        position = await conn.fetchrow(REPLAY_POSITION, timeout=CONNECT_TIMEOUT_S)
        assert position is not None  # one row, always
        in_recovery, replayed = position
        if not in_recovery:
            return None
        if target is None:
            return 0
        short_by = target - (replayed or 0)
        remaining_s = deadline - time.monotonic()
        if short_by <= 0 or remaining_s <= 0:
            return max(short_by, 0)
        await asyncio.sleep(min(POLL_INTERVAL_S, remaining_s))


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS:
        conn.terminate()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
