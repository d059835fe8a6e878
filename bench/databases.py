"""Bench databases: created fresh on the PostgreSQL server, migrated, seeded, dropped at the end."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from exporter.auth.tokens import issue_token
from exporter.ops.migrate import migrate

log = logging.getLogger("bench")

SEED_SQL = Path(__file__).with_name("seed.sql")
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MAINTENANCE_DATABASE = "postgres"
DATABASE_PREFIX = "exporter_bench_"

# Any 32+ characters: the bench issues and checks its own tokens and nothing else uses them.
BENCH_SECRET = "exporter-bench-secret-" + "b" * 32
BENCH_TOKEN_TTL_S = 24 * 3600

# psql's `:rows` variable, and the psql-only `\if … \endif` lines that give it a default.
_ROWS_VARIABLE = re.compile(r":rows\b")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)

# Users are existing active accounts whose role has the permissions they need (docs/api.md,
# Permissions), so the seeded data set stays exactly what it is.
SELECT_ACTIVE_ACCOUNTS = """
SELECT a.id FROM accounts a JOIN roles r ON r.id = a.role_id
WHERE a.status = 'active' AND (r.permissions @> ARRAY['*'] OR r.permissions @> $2::text[])
ORDER BY a.id LIMIT $1
"""
# What exporting accounts takes; importing them takes these too (the bench exports the files it
# imports).
EXPORT_PERMISSIONS = ("account:read", "export:create")
IMPORT_PERMISSIONS = (*EXPORT_PERMISSIONS, "account:write", "import:create")

# Finished tasks, one a minute back in time, so "newest first" has a real order to sort.
VACUUM_TASKS = "VACUUM ANALYZE tasks, task_counts, task_events"
INSERT_FINISHED_TASKS = """
INSERT INTO tasks (id, kind, type, status, format, params, file_name, file_size, row_count,
                   rows_done, rows_total, created_by_id, created_at, started_at, finished_at,
                   attempts)
SELECT gen_random_uuid(), 'export', 'account', 'completed', 'xlsx', '{}', '账号列表.xlsx',
       1024, 10, 10, 10, $1, now() - g * interval '1 minute', now() - g * interval '1 minute',
       now() - g * interval '1 minute' + interval '1 second', 1
FROM generate_series(1, $2) AS g
"""


def server_url() -> str:
    """The maintenance database of DATABASE_URL's server, else of the local server."""
    given = os.environ.get("DATABASE_URL")
    if not given:
        return LOCAL_SERVER_URL
    return with_database(given, MAINTENANCE_DATABASE)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps socket ?host= queries)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def seed_statements(rows: int) -> list[str]:
    """seed.sql as statements for asyncpg: psql meta-commands dropped, ``:rows`` substituted.

    One statement at a time, because VACUUM refuses to run inside the implicit transaction
    of a multi-statement query.
    """
    lines = SEED_SQL.read_text(encoding="utf-8").splitlines()
    script = "\n".join(line for line in lines if not line.startswith("\\"))
    script = _ROWS_VARIABLE.sub(str(rows), script)
    return [part.strip() for part in _STATEMENT_END.split(script) if part.strip()]


@dataclass(frozen=True)
class BenchUser:
    account_id: int
    token: str


@dataclass(frozen=True)
class BenchDatabase:
    """A seeded database and the active accounts the bench acts as."""

    name: str
    url: str
    rows: int
    users: tuple[BenchUser, ...]

    async def add_finished_tasks(self, user: BenchUser, count: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(INSERT_FINISHED_TASKS, user.account_id, count)
        finally:
            await conn.close()
        # As autovacuum leaves them between bursts: the bulk insert updated the owner's count
        # row once per task, and a list would otherwise step over every old version.
        await _run_admin(self.url, VACUUM_TASKS)

    async def active_users(self, count: int) -> tuple[BenchUser, ...]:
        """Up to ``count`` active accounts that may export, with tokens, lowest ids first."""
        conn = await asyncpg.connect(self.url)
        try:
            return await _active_users(conn, count, EXPORT_PERMISSIONS)
        finally:
            await conn.close()

    async def delete_pending_tasks(self) -> set[str]:
        """Delete the tasks no worker took; their ids.

        The space is reclaimed at once: left to autovacuum, the clean-up of the POST load's
        thousands of tasks would run during the next measurement and be charged to it.
        """
        deleted = await self._task_ids("DELETE FROM tasks WHERE status = 'pending' RETURNING id")
        await _run_admin(self.url, VACUUM_TASKS)
        return deleted

    async def task_ids(self) -> set[str]:
        return await self._task_ids("SELECT id FROM tasks")

    async def _task_ids(self, statement: str) -> set[str]:
        conn = await asyncpg.connect(self.url)
        try:
            return {str(record["id"]) for record in await conn.fetch(statement)}
        finally:
            await conn.close()


async def _run_admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _active_users(
    conn: asyncpg.Connection, count: int, permissions: tuple[str, ...]
) -> tuple[BenchUser, ...]:
    records = await conn.fetch(SELECT_ACTIVE_ACCOUNTS, count, permissions)
    return tuple(
        BenchUser(id_, issue_token(BENCH_SECRET, id_, ttl_s=BENCH_TOKEN_TTL_S))
        for id_ in [record["id"] for record in records]
    )


async def _seed(
    url: str, rows: int, user_count: int, permissions: tuple[str, ...]
) -> tuple[BenchUser, ...]:
    conn = await asyncpg.connect(url)
    try:
        for statement in seed_statements(rows):
            await conn.execute(statement)
        users = await _active_users(conn, user_count, permissions)
    finally:
        await conn.close()
    if len(users) < user_count:
        raise RuntimeError(
            f"{rows} rows hold only {len(users)} active accounts, {user_count} needed"
        )
    return users


@asynccontextmanager
async def bench_database(
    server: str,
    rows: int,
    *,
    user_count: int,
    timeout_s: float,
    permissions: tuple[str, ...] = EXPORT_PERMISSIONS,
) -> AsyncIterator[BenchDatabase]:
    """A fresh database with ``rows`` seeded accounts, its users ``user_count`` active accounts
    with ``permissions``; dropped on exit, even on failure."""
    # The suffix keeps two runs on one server (two clones, say) from dropping each other's data.
    name = f"{DATABASE_PREFIX}{rows}_{uuid.uuid4().hex[:8]}"
    # CREATE DATABASE takes no parameters; the name is built here from a number and hex digits.
    await _run_admin(server, f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server, name)
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            await migrate(url)
            users = await _seed(url, rows, user_count, permissions)
        log.info(
            "database %s: %s rows seeded in %.1f s", name, f"{rows:,}", time.monotonic() - started
        )
        yield BenchDatabase(name=name, url=url, rows=rows, users=users)
    finally:
        await _run_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
