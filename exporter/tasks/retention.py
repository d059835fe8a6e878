"""Expiry of old files and removal of files that no task owns; run periodically by workers."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from exporter.db import Pool
from exporter.storage.local import WORK_DIR_PREFIX, FileStorage

log = logging.getLogger("exporter.retention")

# Younger entries are left alone: a worker may be between creating a file and recording it.
ORPHAN_MIN_AGE_S = 60.0

# Locked while the files are listed, so two sweeping workers never expire the same task twice.
EXPIRED_PATHS = """
SELECT id, file_path FROM tasks
WHERE status = 'completed' AND finished_at < now() - make_interval(secs => $1 * 86400)
FOR UPDATE SKIP LOCKED
"""

MARK_EXPIRED = """
UPDATE tasks
SET status = 'expired', file_path = NULL,
    status_note = format('file removed after the retention period (%s days)', $2::float8)
WHERE id = ANY($1::uuid[]) AND status = 'completed'
"""

OWNERS = """
SELECT id, status, status = 'running' AND lease_expires_at > now() AS live
FROM tasks WHERE id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class RetentionResult:
    expired: int
    orphans_removed: int


def _task_id_of(entry: Path) -> uuid.UUID | None:
    """The task a storage entry belongs to, from its name (``<id>.<ext>``, ``.work-<id>-…``)."""
    name = entry.name
    text = name[len(WORK_DIR_PREFIX) : len(WORK_DIR_PREFIX) + 36] if entry.is_dir() else name[:36]
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class Retention:
    """Deletes files past their retention, and leftovers of crashed or deleted tasks."""

    def __init__(self, pool: Pool, storage: FileStorage, *, retention_days: float) -> None:
        self._pool = pool
        self._storage = storage
        self._retention_days = retention_days

    async def run(self) -> RetentionResult:
        return RetentionResult(await self._expire_files(), await self._remove_orphans())

    async def _expire_files(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(EXPIRED_PATHS, self._retention_days)
            if not records:
                return 0
            await conn.execute(MARK_EXPIRED, [r["id"] for r in records], self._retention_days)
        for record in records:
            if record["file_path"]:
                self._storage.discard(Path(record["file_path"]))
            log.info("task %s: file expired and removed", record["id"])
        return len(records)

    async def _remove_orphans(self) -> int:
        if not self._storage.root.is_dir():
            return 0
        cutoff = time.time() - ORPHAN_MIN_AGE_S
        entries = {
            entry: task_id
            for entry in self._storage.root.iterdir()
            if (task_id := _task_id_of(entry)) is not None and entry.stat().st_mtime < cutoff
        }
        if not entries:
            return 0
        owners = {r["id"]: r for r in await self._pool.fetch(OWNERS, list(set(entries.values())))}
        removed = 0
        for entry, task_id in entries.items():
            owner = owners.get(task_id)
            if entry.is_dir():
                keep = owner is not None and owner["live"]
            else:
                keep = owner is not None and owner["status"] in ("completed", "running")
            if not keep:
                self._storage.discard(entry)
                log.info("removed orphaned %s", entry.name)
                removed += 1
        return removed
