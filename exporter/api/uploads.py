"""Receiving a multipart/form-data upload: its file streamed to disk, its other fields as text.

The file part is written a chunk at a time, counted and hashed as it comes, and reading stops at
the first byte past the limit: an upload is never held whole in memory. aiohttp's
``client_max_size`` caps only what is read whole (each other field), not a part read in chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from exporter.errors import (
    FieldProblem,
    InvalidParams,
    InvalidRequest,
    RequestTimeout,
    UploadTooLarge,
)

T = TypeVar("T")

FORM_DATA = "multipart/form-data"
CHUNK_BYTES = 256 * 1024
# A form of an upload has a handful of fields; a body of thousands of tiny parts is no form.
MAX_PARTS = 16
# What a file name may keep: file systems and browsers take 255 characters.
MAX_FILE_NAME = 255


@dataclass(frozen=True)
class UploadLimits:
    """How large the file may be, and the longest pause between two chunks of the body."""

    max_file_bytes: int
    idle_timeout_s: float


@dataclass(frozen=True)
class ReceivedFile:
    """The file part, on disk at ``path``: the name it was sent as, its size and SHA-256."""

    path: Path
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadForm:
    """The form's text fields by name, and its file (None when it sent none)."""

    fields: dict[str, str]
    file: ReceivedFile | None


def file_name(sent: str | None, default: str) -> str:
    """The last component of the name a client sent (browsers on Windows once sent the whole
    path), without control characters; ``default`` when nothing is left."""
    # Browsers escape '"' and line breaks as %22, %0D and %0A; aiohttp's client escapes all
    # but letters and digits.
    name = PureWindowsPath(unquote(sent or "")).name
    name = "".join(c for c in name if c.isprintable()).strip()[:MAX_FILE_NAME]
    return name or default


async def _within(timeout_s: float, step: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await step
    except TimeoutError:
        raise RequestTimeout(
            f"the upload paused for more than {timeout_s:g} s", params={"timeout_s": timeout_s}
        ) from None


async def _stream_file(
    part: BodyPartReader, target: Path, name: str, limits: UploadLimits
) -> ReceivedFile:
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as output:
        while chunk := await _within(limits.idle_timeout_s, part.read_chunk(CHUNK_BYTES)):
            size += len(chunk)
            if size > limits.max_file_bytes:
                raise UploadTooLarge(
                    f"the file is larger than {limits.max_file_bytes} bytes",
                    params={"limit": limits.max_file_bytes},
                )
            digest.update(chunk)
            output.write(chunk)
    return ReceivedFile(target, name, size, digest.hexdigest())


def _duplicate(name: str) -> InvalidParams:
    return InvalidParams(
        f"the form sends {name!r} twice", [FieldProblem(name, "sent twice", "duplicate_field")]
    )


async def _read_form(
    request: web.Request, target: Path, file_field: str, limits: UploadLimits
) -> UploadForm:
    reader = await request.multipart()
    fields: dict[str, str] = {}
    received: ReceivedFile | None = None
    for _ in range(MAX_PARTS):
        part = await _within(limits.idle_timeout_s, reader.next())
        if part is None:
            return UploadForm(fields, received)
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("a form part may not itself be multipart")
        name = part.name or ""
        if name in fields or (name == file_field and received is not None):
            raise _duplicate(name)
        if name == file_field:
            sent_as = file_name(part.filename, default=file_field)
            received = await _stream_file(part, target, sent_as, limits)
        else:
            fields[name] = await _within(limits.idle_timeout_s, part.text())
    raise InvalidRequest(f"a form of more than {MAX_PARTS} parts is not an upload")


@asynccontextmanager
async def received_form(
    request: web.Request, directory: Path, file_field: str, limits: UploadLimits
) -> AsyncIterator[UploadForm]:
    """The request's form, its ``file_field`` streamed into ``directory``; the file is removed
    when the block ends (unless the block moved it away)."""
    if request.content_type != FORM_DATA:
        raise web.HTTPUnsupportedMediaType(reason=f"Content-Type must be {FORM_DATA}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{secrets.token_hex(16)}.part"
    try:
        try:
            form = await _read_form(request, target, file_field, limits)
        except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
            # aiohttp's multipart reader says a body breaks off or is malformed with these
            # (LookupError: a part in a charset Python does not know).
            raise InvalidRequest(
                f"the upload is incomplete or not valid multipart/form-data: {exc}"
            ) from None
        yield form
    finally:
        target.unlink(missing_ok=True)
