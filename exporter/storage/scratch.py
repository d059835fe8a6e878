"""Work directories: where an attempt at a task writes its file before the file is published.

One directory per attempt, ``<work dir>/<deployment id>/<task id>-<random>/``, holds the file
and every scratch file of its writer, so one removal clears every trace of a failed attempt.
It lies apart from the published files: a storage lists only finished files, and deployments
sharing a work directory never touch each other's attempts.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# ``<task id>-``: the 36 characters of a UUID and the dash.
_TASK_ID_END = 36


@dataclass(frozen=True)
class WorkDir:
    """A work directory found on disk, for the janitor to judge."""

    task_id: uuid.UUID
    path: Path
    modified_at: datetime


def _task_id_of(name: str) -> uuid.UUID | None:
    if name[_TASK_ID_END : _TASK_ID_END + 1] != "-":
        return None
    try:
        return uuid.UUID(name[:_TASK_ID_END])
    except ValueError:
        return None


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class ScratchSpace:
    """The work directories of one deployment."""

    def __init__(self, work_dir: Path, deployment: uuid.UUID) -> None:
        self.root = work_dir.resolve() / str(deployment)

    def make_work_dir(self, task_id: uuid.UUID) -> Path:
        """A fresh directory for one attempt at the task.

        Keeping scratch files here (not in /tmp) lets one removal take every trace of an
        attempt, and lets the janitor find what a crashed attempt left.
        """
        path = self.root / f"{task_id}-{secrets.token_hex(4)}"
        path.mkdir(parents=True)
        return path

    @property
    def upload_dir(self) -> Path:
        """Where the API receives uploads before storing them. Apart from the work directories:
        a slow upload's would look to the janitor like a crashed attempt's."""
        return self.root / "uploads"

    def uploads_before(self, cutoff: datetime) -> list[Path]:
        """Uploads still being received, or left by an API process that stopped mid-upload,
        last written before ``cutoff``."""
        if not self.upload_dir.is_dir():
            return []
        stale = []
        for path in self.upload_dir.iterdir():
            try:
                written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except FileNotFoundError:  # stored or removed meanwhile
                continue
            if written < cutoff:
                stale.append(path)
        return stale

    async def discard(self, path: Path) -> None:
        """Remove a work directory, whatever is left of it."""
        # In a thread: freeing a work directory of several hundred megabytes takes the kernel
        # a noticeable moment, which the event loop (heartbeats, other tasks) must not wait.
        await asyncio.to_thread(_remove, path)

    async def discard_attempts(self, task_id: uuid.UUID) -> None:
        """Remove the work directories of earlier attempts at a task (their workers are gone)."""
        for path in self.root.glob(f"{task_id}-*"):
            await self.discard(path)

    def work_dirs(self) -> list[WorkDir]:
        """Every work directory of this deployment, live or left over."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            task_id = _task_id_of(path.name)
            if task_id is None:
                continue
            try:
                modified_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except FileNotFoundError:  # its attempt ended meanwhile
                continue
            found.append(WorkDir(task_id, path, modified_at))
        return found
