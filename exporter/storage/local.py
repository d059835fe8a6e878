"""Finished files in a local directory, one per task, in the deployment's own directory.

Each deployment (one database) keeps its files in ``<storage dir>/<deployment id>/``, under the
key ``<deployment id>/<name>``, so that stacks sharing a storage directory never see each
other's files. Files of tasks finished before that layout lie directly in the storage directory
(key ``<name>``): they stay readable, and are never listed, so never taken for orphans.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from aiohttp import hdrs

from exporter.storage.base import StoredFile, StoredObject, UnfinishedUpload
from exporter.storage.ranged_response import RangedResponse

# What each read of a file being served takes; written to the client before the next read.
# At 1 MiB a 256 MiB file went as fast as aiohttp's sendfile here (847-1075 MB/s against
# 602-942 MB/s, one loaded machine, client and server in one process); 256 KiB: 610 against 1087.
CHUNK_BYTES = 1024 * 1024

# ``<name>.partial-<8 hex>``: a copy into place that has not finished (see _copy_into_place).
PARTIAL_MARK = ".partial-"


def _copy_into_place(source: Path, final: Path) -> None:
    # Copied beside the final name first, then renamed: a reader never sees half a file.
    partial = final.with_name(f"{final.name}{PARTIAL_MARK}{secrets.token_hex(4)}")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    source.unlink()


def _move_into_place(source: Path, final: Path) -> int:
    """Move a complete file into place atomically; returns its size in bytes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    try:
        os.replace(source, final)
    except OSError as exc:
        # A work directory on another disk (EXPORTER_WORK_DIR) cannot be renamed across.
        if exc.errno != errno.EXDEV:
            raise
        _copy_into_place(source, final)
    return size


def _files_in(directory: Path, prefix: str) -> list[StoredObject]:
    """Every file in ``directory``, partial copies included, with key ``<prefix>/<name>``."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile (a delete, another janitor)
            continue
        modified_at = datetime.fromtimestamp(stat.st_mtime, UTC)
        found.append(StoredObject(f"{prefix}/{entry.name}", stat.st_size, modified_at))
    return found


def _is_partial(stored: StoredObject) -> bool:
    return PARTIAL_MARK in stored.key.rsplit("/", 1)[-1]


class FileResponse(RangedResponse):
    """A local file served in pieces, so that what reached the connection is counted (aiohttp's
    own FileResponse hands the file to sendfile, which says nothing of a transfer cut short).
    Its ETag and Last-Modified are spelt as aiohttp spells them."""

    def __init__(self, path: Path, stat: os.stat_result, *, headers: dict[str, str]) -> None:
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        super().__init__(
            stat.st_size,
            headers={
                **headers,
                hdrs.ETAG: f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                hdrs.LAST_MODIFIED: format_datetime(modified, usegmt=True),
            },
        )
        self._path = path

    async def _stream(self, start: int, stop: int) -> None:
        with await asyncio.to_thread(self._path.open, "rb") as file:
            await asyncio.to_thread(file.seek, start)
            left = stop - start
            while left > 0:
                chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))
                if not chunk:  # the file shrank: it is never rewritten in place, so never
                    break
                await self.write(chunk)
                left -= len(chunk)


class LocalStorage:
    """The ``Storage`` of a local directory (one disk, or a shared mount)."""

    def __init__(self, storage_dir: Path, deployment: uuid.UUID) -> None:
        self._shared_dir = storage_dir.resolve()
        self._prefix = str(deployment)
        self._root = self._shared_dir / self._prefix

    def _path(self, key: str) -> Path | None:
        """Where a key's file lies, if the key names one of this storage's places at all."""
        path = (self._shared_dir / key).resolve()
        # The shared directory itself held every file before deployments had their own.
        if path.parent not in (self._root, self._shared_dir):
            return None
        return path

    async def publish(self, source: Path, name: str) -> StoredFile:
        # In a thread: a copy across disks takes as long as the file is large.
        size = await asyncio.to_thread(_move_into_place, source, self._root / name)
        return StoredFile(f"{self._prefix}/{name}", size)

    async def publish_growing(
        self, source: Path, name: str, written: asyncio.Future[None]
    ) -> StoredFile:
        # A rename is instant: nothing is gained by starting before the writer is done.
        await written
        return await self.publish(source, name)

    async def download(
        self, key: str, *, content_type: str, content_disposition: str
    ) -> FileResponse | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        return FileResponse(
            path,
            stat,
            headers={"Content-Type": content_type, "Content-Disposition": content_disposition},
        )

    async def retrieve(self, key: str, target: Path) -> bool:
        path = self._path(key)
        if path is None:
            return False
        try:
            await asyncio.to_thread(shutil.copyfile, path, target)
        except FileNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        path = self._path(key)
        if path is not None:
            # In a thread: freeing a file of several hundred megabytes takes the kernel a moment.
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def owned(self) -> list[StoredObject]:
        files = await asyncio.to_thread(_files_in, self._root, self._prefix)
        return [stored for stored in files if not _is_partial(stored)]

    async def unfinished(self) -> list[UnfinishedUpload]:
        files = await asyncio.to_thread(_files_in, self._root, self._prefix)
        return [
            UnfinishedUpload(stored.key.split(PARTIAL_MARK)[0], stored.modified_at, stored.key)
            for stored in files
            if _is_partial(stored)
        ]

    async def abort(self, upload: UnfinishedUpload) -> None:
        await self.delete(upload.handle)
