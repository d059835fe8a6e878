"""Expiry of old files, removal of files that no task owns, and of audit events past their own
retention; run periodically by workers.

The janitor sees files only through the storage and the work directories of its own
deployment: a published file's name starts with its task's id (``<task id>.<format>``), and so
does a work directory's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from exporter import metrics
from exporter.audit.trail import prune
from exporter.db import Pool
from exporter.storage.base import Storage, StoredObject, UnfinishedUpload
from exporter.storage.scratch import ScratchSpace, WorkDir

log = logging.getLogger("exporter.retention")

# Younger entries are left alone: a worker may be between creating a file and recording it.
ORPHAN_MIN_AGE_S = 60.0

# Locked while the files are listed, so two sweeping workers never expire the same task twice.
# A completed task's file expires with it; a failed or cancelled one's report and upload (an
# import's) are removed as well, the task keeping its status and its error.
EXPIRED_KEYS = """
SELECT id, file_key, upload_key FROM tasks
WHERE finished_at < now() - make_interval(secs => $1 * 86400)
  AND (status = 'completed'
       OR (status IN ('failed', 'cancelled')
           AND (file_key IS NOT NULL OR upload_key IS NOT NULL)))
FOR UPDATE SKIP LOCKED
"""

MARK_EXPIRED = """
UPDATE tasks
SET status = CASE WHEN status = 'completed' THEN 'expired' ELSE status END,
    file_key = NULL, upload_key = NULL,
    status_note = CASE WHEN status = 'completed'
                       THEN format('file removed after the retention period (%s days)', $2::float8)
                       ELSE status_note END
WHERE id = ANY($1::uuid[]) AND status IN ('completed', 'failed', 'cancelled')
"""

OWNERS = """
SELECT id, status, file_key, upload_key, status = 'running' AND lease_expires_at > now() AS live
FROM tasks WHERE id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class RetentionResult:
    expired: int
    orphans_removed: int
    audit_events_removed: int


def _task_id_of(key: str) -> uuid.UUID | None:
    """The task a published file belongs to, from its name."""
    name = key.rsplit("/", 1)[-1]
    try:
        return uuid.UUID(name[:36])
    except ValueError:
        return None


def _owns(owner: asyncpg.Record | None, stored: StoredObject) -> bool:
    # A running task's worker may have published its file and not yet recorded it.
    return owner is not None and (
        owner["status"] == "running" or stored.key in (owner["file_key"], owner["upload_key"])
    )


def _works_in(owner: asyncpg.Record | None) -> bool:
    return owner is not None and bool(owner["live"])


def _abandoned(upload: UnfinishedUpload, owner: asyncpg.Record | None, cutoff: datetime) -> bool:
    # An upload to the API is stored before its task exists: only its age tells.
    if owner is None:
        return upload.started_at < cutoff
    return not owner["live"]


class Retention:
    """Deletes files past their retention, and leftovers of crashed or deleted tasks."""

    def __init__(
        self,
        pool: Pool,
        storage: Storage,
        scratch: ScratchSpace,
        *,
        retention_days: float,
        audit_retention_days: float,
        upload_pause_s: float = ORPHAN_MIN_AGE_S,
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._scratch = scratch
        self._retention_days = retention_days
        self._audit_retention_days = audit_retention_days
        # An upload being received is written to at least this often (the API's body timeout).
        self._upload_pause_s = upload_pause_s

    async def run(self) -> RetentionResult:
        return RetentionResult(
            await self._expire_files(),
            await self._remove_orphans()
            + await self._remove_stale_uploads()
            + await self._abort_unfinished(),
            await self._prune_audit_events(),
        )

    async def _prune_audit_events(self) -> int:
        removed = await prune(self._pool, self._audit_retention_days)
        if removed:
            log.info(
                "removed %d audit events older than %g days", removed, self._audit_retention_days
            )
        return removed

    async def _expire_files(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(EXPIRED_KEYS, self._retention_days)
            if not records:
                return 0
            await conn.execute(MARK_EXPIRED, [r["id"] for r in records], self._retention_days)
        for record in records:
            for key in (record["file_key"], record["upload_key"]):
                if key:
                    await self._storage.delete(key)
                    metrics.files_expired.inc()
            log.info("task %s: file expired and removed", record["id"])
        return len(records)

    async def _remove_orphans(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=ORPHAN_MIN_AGE_S)
        files = {
            stored: task_id
            for stored in await self._storage.owned()
            if stored.modified_at < cutoff and (task_id := _task_id_of(stored.key)) is not None
        }
        work_dirs = [found for found in self._scratch.work_dirs() if found.modified_at < cutoff]
        if not files and not work_dirs:
            return 0
        task_ids = {*files.values(), *(found.task_id for found in work_dirs)}
        owners = {r["id"]: r for r in await self._pool.fetch(OWNERS, list(task_ids))}
        orphans = [
            stored for stored, task_id in files.items() if not _owns(owners.get(task_id), stored)
        ]
        for stored in orphans:
            await self._storage.delete(stored.key)
            log.info("removed orphaned %s", stored.key)
        return len(orphans) + await self._remove_work_dirs(work_dirs, owners)

    async def _remove_stale_uploads(self) -> int:
        """Uploads an API process stopped receiving (it crashed, or was killed) mid-way."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self._upload_pause_s + ORPHAN_MIN_AGE_S)
        stale = self._scratch.uploads_before(cutoff)
        for path in stale:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            log.info("removed the unfinished upload %s", path.name)
        return len(stale)

    async def _abort_unfinished(self) -> int:
        """Files whose writer stopped before finishing them (a copy into place, an upload to
        the object store): those of a task that is not running, and those of no task at all
        (an upload to the API) once past the upload pause."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self._upload_pause_s + ORPHAN_MIN_AGE_S)
        begun = {upload: _task_id_of(upload.key) for upload in await self._storage.unfinished()}
        if not begun:
            return 0
        task_ids = [task_id for task_id in begun.values() if task_id is not None]
        owners = {r["id"]: r for r in await self._pool.fetch(OWNERS, task_ids)}
        left = [
            upload
            for upload, task_id in begun.items()
            if _abandoned(upload, owners.get(task_id) if task_id else None, cutoff)
        ]
        for upload in left:
            await self._storage.abort(upload)
            log.info("aborted the unfinished %s", upload.key)
        return len(left)

    async def _remove_work_dirs(
        self, work_dirs: list[WorkDir], owners: dict[uuid.UUID, asyncpg.Record]
    ) -> int:
        left = [found for found in work_dirs if not _works_in(owners.get(found.task_id))]
        for found in left:
            await self._scratch.discard(found.path)
            log.info("removed the left-over work directory %s", found.path.name)
        return len(left)
