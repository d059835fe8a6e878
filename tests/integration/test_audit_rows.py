"""What the database holds audit rows to, whatever the application does: no UPDATE, DELETE or
TRUNCATE from the application's connection, the database's own time on each row, removal only
through the retention path, and a role granted only what docs/configuration.md lists."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from exporter.audit.events import AuditAction, AuditEvent, AuditOutcome, Client
from exporter.audit.trail import AuditTrail
from exporter.db import Pool, create_pool
from settings import Settings
from tests.workers import janitor_round

APPEND_ONLY = "audit events are append-only"


@pytest.fixture
async def app_pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool as the API opens it: the same role and connection settings."""
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


async def _append(pool: Pool, username: str) -> None:
    await AuditTrail(pool).append(
        AuditEvent(
            AuditAction.SIGN_IN,
            AuditOutcome.REFUSED,
            Client.of("192.0.2.1", "test", None),
            error_code="unauthorized",
            username=username,
        )
    )


async def _usernames(db: asyncpg.Connection[Any]) -> list[str]:
    return [r["username"] for r in await db.fetch("SELECT username FROM audit_events ORDER BY id")]


async def test_the_applications_connection_cannot_update_delete_or_truncate_audit_rows(
    app_pool: Pool, db: asyncpg.Connection[Any]
) -> None:
    await _append(app_pool, "kept")

    refused = []
    for statement in (
        "UPDATE audit_events SET username = 'changed'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=APPEND_ONLY):
            await app_pool.execute(statement)
        refused.append(statement.split()[0])
    async with app_pool.acquire() as conn, conn.transaction():
        # The retention path's own setting, set by hand for rows of today: still refused.
        await conn.execute("SELECT set_config('exporter.audit_prune_before', now()::text, true)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=APPEND_ONLY):
            await conn.execute("DELETE FROM audit_events")

    assert refused == ["UPDATE", "DELETE", "TRUNCATE"]
    assert await _usernames(db) == ["kept"]


async def test_a_row_gets_the_databases_time_not_the_one_its_insert_names(
    app_pool: Pool, db: asyncpg.Connection[Any]
) -> None:
    await app_pool.execute(
        "INSERT INTO audit_events (action, outcome, at) VALUES ('sign_in', 'ok', '2000-01-01Z')"
    )

    at = await db.fetchval("SELECT at FROM audit_events")
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)


async def _age(db: asyncpg.Connection[Any], username: str, days: int) -> None:
    """Back-date a row as only a superuser can, with the triggers off for this session."""
    await db.execute("SET session_replication_role = replica")
    try:
        await db.execute(
            "UPDATE audit_events SET at = now() - make_interval(days => $2) WHERE username = $1",
            username,
            days,
        )
    finally:
        await db.execute("SET session_replication_role = DEFAULT")


async def test_the_janitor_removes_only_the_events_past_their_own_retention(
    app_pool: Pool, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    for username in ("ancient", "old", "new"):
        await _append(app_pool, username)
    await _age(db, "ancient", 400)
    await _age(db, "old", 300)

    result = await janitor_round(settings)  # EXPORTER_AUDIT_RETENTION_DAYS: 365 by default

    assert settings.audit_retention_days == 365
    assert result.audit_events_removed == 1
    assert await _usernames(db) == ["old", "new"]
    with pytest.raises(asyncpg.InvalidParameterValueError, match="at least 1 day"):
        await app_pool.fetchval("SELECT prune_audit_events(0.5)")


async def test_a_role_granted_only_insert_select_and_the_prune_function_cannot_change_rows(
    db: asyncpg.Connection[Any], database_url: str
) -> None:
    role = f"audit_writer_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await db.execute(f"GRANT INSERT, SELECT ON audit_events TO {role}")
        await db.execute(f"GRANT EXECUTE ON FUNCTION prune_audit_events(float8) TO {role}")
        conn = await asyncpg.connect(database_url, user=role)
        try:
            await conn.execute(
                "INSERT INTO audit_events (action, outcome) VALUES ('sign_in', 'ok')"
            )
            for statement in ("UPDATE audit_events SET outcome = 'ok'", "DELETE FROM audit_events"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(statement)
            pruned = await conn.fetchval("SELECT prune_audit_events(365)")
            seen = await conn.fetchval("SELECT count(*) FROM audit_events")
        finally:
            await conn.close()
    finally:
        await db.execute(f"DROP OWNED BY {role}")
        await db.execute(f"DROP ROLE {role}")

    assert (pruned, seen) == (0, 1)
