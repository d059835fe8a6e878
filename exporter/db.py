"""PostgreSQL connections: one pool per process, JSON columns decoded to Python values."""

from __future__ import annotations

import json
from typing import TypeAlias

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


async def create_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections read and write json/jsonb as Python values."""
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool
