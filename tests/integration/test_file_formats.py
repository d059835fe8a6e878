"""The one list of file formats (FORMATS) is what the database, the API and the pages take."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.exports.formats import FORMATS
from exporter.exports.formats.csv import CSV
from exporter.imports.readers import UploadFormat
from exporter.ops import migrate as migrations
from exporter.ops.migrate import migrate
from tests.conftest import account_id
from tests.integration.test_sessions import ADMIN, sign_in
from tests.support import ApiUser, migrate_before

FILE_FORMATS_MIGRATION = 12
INSERT_TASK = """
INSERT INTO tasks (id, kind, type, format, created_by_id)
VALUES (gen_random_uuid(), 'export', 'role', $1, $2)
RETURNING format
"""
# The same before migration 0013 made export_tasks the tasks of every kind.
INSERT_EXPORT_TASK = """
INSERT INTO export_tasks (id, type, format, created_by_id)
VALUES (gen_random_uuid(), 'role', $1, $2)
RETURNING format
"""


async def test_the_database_takes_the_registered_formats_and_refuses_any_other(
    db: asyncpg.Connection[Any],
) -> None:
    owner = await account_id(db, "admin")

    assert [await db.fetchval(INSERT_TASK, name, owner) for name in FORMATS] == list(FORMATS)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.fetchval(INSERT_TASK, "pdf", owner)


async def test_a_format_new_to_the_code_reaches_the_database_by_migrate_alone(
    database_url: str, db: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await account_id(db, "admin")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.fetchval(INSERT_TASK, "ndjson", owner)
    # Only the names reach the database; the format behind the new one does not matter here.
    monkeypatch.setattr(migrations, "FORMATS", {**FORMATS, "ndjson": CSV})

    assert await migrate(database_url) == []
    assert await db.fetchval(INSERT_TASK, "ndjson", owner) == "ndjson"


async def test_tasks_made_before_the_format_table_keep_their_formats(
    empty_database_url: str,
) -> None:
    await migrate_before(empty_database_url, FILE_FORMATS_MIGRATION)
    conn = await asyncpg.connect(empty_database_url)
    try:
        owner = await conn.fetchval("INSERT INTO accounts (username) VALUES ('old') RETURNING id")
        before = [await conn.fetchval(INSERT_EXPORT_TASK, name, owner) for name in ("csv", "xlsx")]

        applied = await migrate(empty_database_url)

        assert FILE_FORMATS_MIGRATION in [migration.version for migration in applied]
        after = await conn.fetch("SELECT format FROM tasks ORDER BY created_at")
        assert [row["format"] for row in after] == before
        known = await conn.fetch("SELECT name FROM file_formats")
        # The formats exports write, and those uploads come in (an import's).
        assert {row["name"] for row in known} == {*FORMATS, *UploadFormat}
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.fetchval(INSERT_TASK, "pdf", owner)
    finally:
        await conn.close()


async def test_the_api_and_the_pages_offer_the_registered_formats(
    client: TestClient[Any, Any], admin: ApiUser
) -> None:
    _, document = await admin.get("/api/openapi.json")
    _, types = await admin.get("/api/export-types")
    await sign_in(client, ADMIN)
    page = await (await client.get("/accounts")).text()
    select = re.search(r'<select id="export-format">(.*?)</select>', page, re.DOTALL)

    assert document["components"]["schemas"]["ExportFormat"]["enum"] == list(FORMATS)
    assert {tuple(item["formats"]) for item in types["items"]} == {tuple(FORMATS)}
    assert select is not None
    assert re.findall(r'<option value="([^"]+)">', select[1]) == list(FORMATS)
