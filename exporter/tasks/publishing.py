"""A file published while its writer still writes it, so that a slow store's upload overlaps
the work instead of following it (a csv export, whose file only grows at its end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from exporter.storage.base import Storage, StoredFile


class Publication:
    """What a publishing block kept: ``stored`` once the block has ended well."""

    stored: StoredFile | None = None


@asynccontextmanager
async def publishing(storage: Storage, source: Path, name: str) -> AsyncIterator[Publication]:
    """Publish ``source`` as ``name`` while the block writes it: the upload is finished and
    durable when the block has ended, and aborted (nothing kept) when the block raises."""
    source.touch()  # the upload reads it from the start; the writer then truncates and writes
    written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    upload = asyncio.create_task(storage.publish_growing(source, name, written))
    publication = Publication()
    try:
        yield publication
    except BaseException:
        written.cancel()
        await asyncio.gather(upload, return_exceptions=True)
        raise
    written.set_result(None)
    publication.stored = await upload
