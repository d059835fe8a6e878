"""Numbered ``.sql`` migrations, applied in order under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from exporter.exports.formats import FORMATS
from exporter.imports.readers import UploadFormat

log = logging.getLogger("exporter.ops.migrations")

# Any fixed 64-bit number works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_ID = 0x6578706F72746572  # "exporter"

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

# The formats this code writes or reads (an upload's), so that tasks.format (a key of file_formats,
# migration 0012) takes them; names no longer known stay, for the tasks that have them.
REGISTER_FORMATS = """
INSERT INTO file_formats (name) SELECT unnest($1::text[])
ON CONFLICT (name) DO NOTHING
RETURNING name
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in ``exporter/migrations``, in version order."""
    found = []
    for entry in resources.files("exporter.ops.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(dsn: str) -> list[Migration]:
    """Apply every migration not yet applied, then register the file formats; safe to run
    from several processes at once."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            await conn.execute(CREATE_LEDGER)
            applied = {
                row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")
            }
            done = []
            for migration in bundled_migrations():
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                done.append(migration)
            for added in await conn.fetch(REGISTER_FORMATS, sorted({*FORMATS, *UploadFormat})):
                log.info("registered file format %s", added["name"])
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    finally:
        await conn.close()
