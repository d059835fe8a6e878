"""Workers in PostgreSQL: each records itself at start, on a steady heartbeat and at a clean
stop, so that operators see which are alive; rows of workers long gone are pruned."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.db import DATABASE_ERRORS, Pool

log = logging.getLogger("exporter.worker")

# A worker silent for this many heartbeat intervals, and at least STALE_AFTER_MIN_S, is shown as
# stale: one missed beat is a busy database, three are a worker in trouble; the floor keeps a
# short interval (a test's half second) from calling a merely busy worker dead.
STALE_AFTER_BEATS = 3
STALE_AFTER_MIN_S = 5.0
# The row of a worker silent (or stopped) for a week goes; a dead worker stays visible until then.
PRUNE_AFTER_S = 7 * 86400.0

# One statement for start and heartbeat: a row pruned while its worker was stalled comes back.
HEARTBEAT = """
INSERT INTO workers AS w (id, host, pid, queue_name, heartbeat_interval_s, rows_per_s)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), rows_per_s = $6, heartbeat_interval_s = $5, stopped_at = NULL
"""

STOP = "UPDATE workers SET stopped_at = now(), heartbeat_at = now(), rows_per_s = 0 WHERE id = $1"

PRUNE = "DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1)"


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker is: its id (as in the tasks it leases), host, pid and queue."""

    id: str
    host: str
    pid: int
    queue_name: str

    @classmethod
    def of_this_process(cls, worker_id: str, queue_name: str) -> WorkerIdentity:
        return cls(worker_id, socket.gethostname(), os.getpid(), queue_name)


class RowRate:
    """Rows per second between two readings of a counter that only grows."""

    def __init__(self) -> None:
        self._rows = 0
        self._at = time.monotonic()

    def rate(self, rows: int) -> float:
        now = time.monotonic()
        elapsed = now - self._at
        per_s = max(rows - self._rows, 0) / elapsed if elapsed > 0 else 0.0
        self._rows, self._at = rows, now
        return per_s


class WorkerRegistry:
    """The workers table as one worker writes it."""

    def __init__(self, pool: Pool, identity: WorkerIdentity, interval_s: float) -> None:
        self._pool = pool
        self._identity = identity
        self._interval_s = interval_s

    async def beat(self, rows_per_s: float) -> None:
        """Record that the worker is alive (registering it if it has no row)."""
        me = self._identity
        await self._pool.execute(
            HEARTBEAT, me.id, me.host, me.pid, me.queue_name, self._interval_s, rows_per_s
        )

    async def stop(self) -> None:
        """Record a clean shutdown."""
        await self._pool.execute(STOP, self._identity.id)

    async def prune(self, older_than_s: float = PRUNE_AFTER_S) -> int:
        """Remove workers silent for ``older_than_s``; how many went."""
        status: str = await self._pool.execute(PRUNE, older_than_s)
        return int(status.split()[-1])

    async def keep_beating(self, rows_done: Callable[[], int]) -> None:
        """Beat every interval forever (after the one at start), with the rows per second since
        the last beat; a beat that fails (database away) is logged and the next one tried."""
        rate = RowRate()
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.beat(rate.rate(rows_done()))
            except DATABASE_ERRORS as exc:
                log.warning("worker heartbeat failed: %s", exc)
