"""The storage seam: where finished files are kept, under keys that task rows store.

A key is a relative name such as ``<deployment id>/<task id>.xlsx``, never a path, so a row stays
valid wherever the storage lives (another directory, an object store). Each storage serves one
deployment: it publishes and lists only under that deployment's own prefix, so deployments
sharing a directory or a bucket never touch each other's files.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from exporter.storage.ranged_response import RangedResponse


@dataclass(frozen=True)
class StoredFile:
    """A published file: the key a task row keeps, and its size in bytes."""

    key: str
    size: int


@dataclass(frozen=True)
class StoredObject:
    """One file a deployment keeps, as the janitor sees it."""

    key: str
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class UnfinishedUpload:
    """A file begun and never finished (its writer died mid-way), as the janitor sees it:
    the key it would have had, when it was begun, and the store's handle on it."""

    key: str
    started_at: datetime
    handle: str


class Storage(Protocol):
    """Finished files of one deployment."""

    async def publish(self, source: Path, name: str) -> StoredFile:
        """Keep the complete file ``source`` as ``name``, whole or not at all; ``source`` is
        consumed. OSError when it cannot be stored."""
        ...

    async def publish_growing(
        self, source: Path, name: str, written: asyncio.Future[None]
    ) -> StoredFile:
        """Keep ``source`` as ``name`` while a writer still appends to it: done once ``written``
        is, whole or not at all (``written``'s error aborts it). ``source`` is consumed."""
        ...

    async def download(
        self, key: str, *, content_type: str, content_disposition: str
    ) -> RangedResponse | None:
        """The response that serves the file (HTTP ``Range`` and ``HEAD`` included, or a
        redirect to the store), counting the bytes it sends; None if it is gone."""
        ...

    async def retrieve(self, key: str, target: Path) -> bool:
        """Copy the stored file to the local path ``target`` (a task's input, read by a
        worker); False if it is gone. OSError when it cannot be read."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the file, if it is still there."""
        ...

    async def owned(self) -> list[StoredObject]:
        """Every file this deployment published: never another's, nor a legacy file."""
        ...

    async def unfinished(self) -> list[UnfinishedUpload]:
        """Files of this deployment begun and not yet finished (being written, or abandoned)."""
        ...

    async def abort(self, upload: UnfinishedUpload) -> None:
        """Remove what was stored of an unfinished file, if anything still is."""
        ...
