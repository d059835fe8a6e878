"""Where export files live: built in a private work directory, then moved into place whole.

Each deployment (one database) keeps its files in ``<storage dir>/<deployment id>/``, so that
stacks sharing a storage directory never see each other's files. Files of tasks finished before
that layout stay where they are, readable, and are never taken for orphans.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from pathlib import Path

from exporter.db import Pool
from exporter.tasks.models import ExportFormat

WORK_DIR_PREFIX = ".work-"


SELECT_DEPLOYMENT = "SELECT id FROM deployment"


async def deployment_id(pool: Pool) -> uuid.UUID:
    """The identity of the deployment whose database ``pool`` reaches (migration 0009)."""
    value = await pool.fetchval(SELECT_DEPLOYMENT)
    if not isinstance(value, uuid.UUID):
        raise RuntimeError("the deployment table is empty; run `exporter migrate`")
    return value


class FileStorage:
    """Files of finished exports, one per task, in the deployment's own directory."""

    def __init__(self, storage_dir: Path, deployment: uuid.UUID) -> None:
        self._shared_dir = storage_dir.resolve()
        self.root = self._shared_dir / str(deployment)

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def make_work_dir(self, task_id: uuid.UUID) -> Path:
        """A fresh directory for one attempt: its file and any scratch files of the writer.

        Keeping scratch files here (not in /tmp) means one rmtree removes every trace of a
        failed attempt, and they count against the same disk as the export.
        """
        path = self.root / f"{WORK_DIR_PREFIX}{task_id}-{secrets.token_hex(4)}"
        path.mkdir(parents=True)
        return path

    def discard_attempts(self, task_id: uuid.UUID) -> None:
        """Remove the work directories of earlier attempts at a task (their workers are gone)."""
        for path in self.root.glob(f"{WORK_DIR_PREFIX}{task_id}-*"):
            self.discard(path)

    def final_path(self, task_id: uuid.UUID, file_format: ExportFormat) -> Path:
        return self.root / f"{task_id}.{file_format}"

    @staticmethod
    def publish(temp: Path, final: Path) -> int:
        """Move a complete file into place atomically; returns its size in bytes."""
        size = temp.stat().st_size
        os.replace(temp, final)
        return size

    @staticmethod
    def discard(path: Path) -> None:
        """Remove a file or a work directory, whatever is left of it."""
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def resolve(self, stored_path: str) -> Path | None:
        """The file of a finished task, if it still exists inside this storage."""
        path = Path(stored_path).resolve()
        # The shared directory itself held every file before deployments had their own.
        if path.parent not in (self.root, self._shared_dir) or not path.is_file():
            return None
        return path
