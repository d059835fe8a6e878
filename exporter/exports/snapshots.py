"""One export read by several connections: the snapshot they share, and a connection in it.

The export's own transaction (repeatable read) exports its snapshot; every other connection
that imports it sees exactly the same rows, so ranges read apart add up to the rows counted.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from exporter.db import Connection
from exporter.errors import ExportFailed
from exporter.exports.row_source import CONNECT_TIMEOUT_S
from exporter.exports.sql import SESSION_SETTINGS

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+(-[0-9A-F]+)+$")


async def export_snapshot(conn: Connection) -> str:
    """The id of ``conn``'s snapshot, valid while its transaction lasts."""
    snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
    # It is spliced into SET TRANSACTION SNAPSHOT, which takes no parameters.
    if not _SNAPSHOT_ID.match(snapshot):
        raise ExportFailed(f"unexpected snapshot id {snapshot!r}")
    return snapshot


@asynccontextmanager
async def connection_in_snapshot(
    dsn: str, snapshot: str, time_zone: str
) -> AsyncIterator[asyncpg.Connection]:
    """A new connection in a read-only transaction on ``snapshot``, with the export's settings.

    A server that does not answer within ``CONNECT_TIMEOUT_S`` raises ConnectionError (another
    attempt may find it), not asyncpg's TimeoutError after a minute.
    """
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise ConnectionError(f"no answer from the database in {CONNECT_TIMEOUT_S:g} s") from exc
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            await conn.execute(SESSION_SETTINGS, time_zone)
            yield conn
    finally:
        await conn.close()
