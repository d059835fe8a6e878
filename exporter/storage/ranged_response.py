"""A stored file served to one HTTP request, whatever holds it: ``Range`` answered with 206 or
416, or ignored as RFC 9110 allows; ``If-Range`` honoured; ``HEAD`` with the headers alone; and
the body bytes counted as they are sent.

``bytes_sent`` counts what was handed to the connection: once a write returns, its bytes are
in the transport's buffer or the kernel's. A client that leaves mid-way has received at most
that many, and may have received somewhat fewer (what those buffers still held).
"""

from __future__ import annotations

import re

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

# One byte range: ``first-last``, ``first-`` or ``-suffix`` (ASCII digits alone).
_ONE_RANGE = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")


def byte_range(
    request: web.BaseRequest, size: int, *, etag: str = "", last_modified: str = ""
) -> tuple[int, int] | None:
    """The bytes ``[start, stop)`` a request's ``Range`` asks of ``size`` (all of them when it
    has none); None when no byte of the object satisfies it (416).

    As RFC 9110 allows, a ``Range`` this cannot serve as one piece (several ranges, another
    unit, a malformed or invalid range) is ignored: the whole object, 200. So is one whose
    ``If-Range`` names another version than ``etag`` (strong match) or ``last_modified``.
    """
    header = request.headers.get(hdrs.RANGE)
    if header is None or not _same_version(request, etag, last_modified):
        return 0, size
    unit, _, spec = header.partition("=")
    one = _ONE_RANGE.fullmatch(spec.strip())
    if unit.strip().lower() != "bytes" or one is None or not any(one.groups()):
        return 0, size  # another unit, several ranges, or not a range at all
    first, last = one.groups()
    if not first:  # the last N bytes; none when N is 0
        suffix = int(last)
        return (max(size - suffix, 0), size) if suffix else None
    start = int(first)
    if last and int(last) < start:
        return 0, size  # invalid
    stop = size if not last else min(int(last) + 1, size)
    return (start, stop) if start < size else None


def _same_version(request: web.BaseRequest, etag: str, last_modified: str) -> bool:
    """Whether the request's ``If-Range`` (if any) names the object as it is now."""
    wanted = request.headers.get(hdrs.IF_RANGE)
    if wanted is None:
        return True
    wanted = wanted.strip()
    if wanted.startswith(('"', "W/")):  # an entity tag, compared strongly
        return bool(etag) and not etag.startswith("W/") and wanted == etag
    return bool(last_modified) and wanted == last_modified


class RangedResponse(web.StreamResponse):
    """The response for one stored file of ``size`` bytes; subclasses stream its bytes."""

    def __init__(self, size: int, *, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self._size = size
        # None when the body is not this response's to send (a redirect to the store).
        self.bytes_sent: int | None = 0

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await super().write(data)
        if self.bytes_sent is not None:
            self.bytes_sent += len(data)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # sent by the handler already; aiohttp prepares what it returns
            return await super().prepare(request)
        self.headers[hdrs.ACCEPT_RANGES] = "bytes"
        wanted = byte_range(
            request,
            self._size,
            etag=self.headers.get(hdrs.ETAG, ""),
            last_modified=self.headers.get(hdrs.LAST_MODIFIED, ""),
        )
        if wanted is None:
            self.set_status(web.HTTPRequestRangeNotSatisfiable.status_code)
            self.headers[hdrs.CONTENT_RANGE] = f"bytes */{self._size}"
            self.content_length = 0
            return await super().prepare(request)
        start, stop = wanted
        if (start, stop) != (0, self._size):
            self.set_status(web.HTTPPartialContent.status_code)
            self.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{self._size}"
        self.content_length = stop - start
        writer = await super().prepare(request)
        if request.method != hdrs.METH_HEAD and stop > start:
            await self._stream(start, stop)
        return writer

    async def _stream(self, start: int, stop: int) -> None:
        """Write bytes ``[start, stop)`` of the file."""
        raise NotImplementedError
