"""PostgreSQL connections: one pool per process, JSON columns decoded to Python values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection of its own or one borrowed from a pool."""

# The server went away (restart, crash, pg_terminate_backend) or cannot be reached: worth
# trying again, unlike an error in a query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    # A connection handed out between the server's last error on it and its socket closing:
    # "cannot switch to state …; another operation is in progress".
    asyncpg.InternalClientError,
    ConnectionError,
)


# What a statement can raise when the database, or the connection to it, is the trouble.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


# What a hot standby raises when it cancels a query whose snapshot, locks or pinned buffers hold
# up the replay of the primary's changes ("canceling statement due to conflict with
# recovery"): 40001, or 40P01 for a deadlock with the replay. A read-only repeatable-read
# transaction meets neither otherwise.
RECOVERY_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def recovery_conflict(exc: BaseException) -> BaseException | None:
    """The recovery conflict behind ``exc`` (its exception chain), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RECOVERY_CONFLICTS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def lost_connection(exc: BaseException, *also: type[BaseException]) -> BaseException | None:
    """The connection loss (or one of ``also``) behind ``exc``, if any.

    asyncpg often reports a killed connection twice: the server's error, then an
    InterfaceError from leaving the transaction on the dead connection, raised while handling
    the first; the exception chain keeps both.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CONNECTION_ERRORS + also) or _socket_missing(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def unencodable_argument(exc: BaseException) -> BaseException | None:
    """Why asyncpg could not encode a bound value for its column (the query was never sent).

    asyncpg raises the base DataError of server-side data exceptions (which arrive as its
    subclasses: DivisionByZeroError, …) and chains the encoder's own error, which says what is
    wrong in plain words ("value out of int32 range").
    """
    cause = exc.__cause__
    if type(exc) is asyncpg.DataError and isinstance(cause, ValueError | TypeError | OverflowError):
        return cause
    return None


def _socket_missing(exc: BaseException) -> bool:
    # A server on a unix socket that is down: connect() finds no socket file. Unlike a file
    # that an open() misses, the error names no file.
    return isinstance(exc, FileNotFoundError) and exc.filename is None


async def _init_connection(conn: asyncpg.Connection) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to its pool.

    asyncpg's default reset is one more round trip per borrow (RESET ALL, UNLISTEN *, CLOSE ALL,
    unlock advisory locks), though nothing here leaves such state behind: settings and advisory
    locks are transaction-local, cursors close with their transaction, and LISTEN has a
    connection of its own. asyncpg still rolls back a transaction left open before calling this.
    A connection that broke with its server is not caught here, as the reset query would; the
    API replaces the whole pool's connections when it sees one (``Pool.expire_connections``).
    """


class Pool:
    """An asyncpg pool whose borrowers are served in the order they asked.

    asyncpg's pool hands a returned connection to whoever asks next, so a borrower already
    waiting can be passed over again and again (MagicStack/asyncpg#1247). Under the API's
    load that was its slowest requests: the list's p99 was about 10 ms higher than with the
    borrowers queued first come, first served, which asyncio's Semaphore does (no newcomer
    goes past a waiter). The pool itself then never has a waiter.
    """

    def __init__(self, pool: asyncpg.Pool, size: int, dsn: str) -> None:
        self._pool = pool
        self._turns = asyncio.Semaphore(size)
        # The server's URL, for connections of their own (those reading an export's parts).
        self.dsn = dsn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        async with self._turns, self._pool.acquire() as conn:
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    async def expire_connections(self) -> None:
        """Replace every connection on its next borrow (after the server went away)."""
        await self._pool.expire_connections()

    async def close(self) -> None:
        await self._pool.close()


async def create_pool(dsn: str, *, max_size: int = 10) -> Pool:
    """A pool whose connections read and write json/jsonb as Python values."""
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return Pool(pool, max_size, dsn)


async def connect(dsn: str, *, timeout: float) -> asyncpg.Connection:
    """A connection of its own that reads and writes json/jsonb as the pool's do; ``timeout``
    bounds the connecting (TimeoutError)."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await _init_connection(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn
