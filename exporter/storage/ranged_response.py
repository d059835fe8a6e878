"""A stored file served to one HTTP request, whatever holds it: ``Range`` answered with 206 or
416, ``HEAD`` with the headers alone, and the body bytes counted as they are sent.

``bytes_sent`` counts what was handed to the connection: once a write returns, its bytes are
in the transport's buffer or the kernel's. A client that leaves mid-way has received at most
that many, and may have received somewhat fewer (what those buffers still held).
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter


def byte_range(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
    """The bytes ``[start, stop)`` a request's ``Range`` asks of ``size`` (all of them when it
    has none); None when no byte of the object satisfies it."""
    if hdrs.RANGE not in request.headers:
        return 0, size
    try:
        wanted = request.http_range
    except ValueError:
        return None
    start = wanted.start or 0
    if start < 0:  # the last -start bytes
        return max(size + start, 0), size
    stop = size if wanted.stop is None else min(wanted.stop, size)
    return (start, stop) if start < size else None


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
        wanted = byte_range(request, self._size)
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
