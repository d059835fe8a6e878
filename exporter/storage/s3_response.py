"""A stored object served to one HTTP request: streamed through the API (``Range`` answered
with 206 or 416, or ignored as RFC 9110 allows; ``If-Range`` honoured; ``HEAD`` with the
headers alone) or, in redirect mode, a 303 to a presigned URL of the store that gives the file
under the same name and type.

A ``HEAD`` is never redirected: the page asks ``HEAD`` before it navigates, and a presigned URL
is signed for ``GET`` alone.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from exporter.storage.s3_calls import retried

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# Read from the store and written to the client in pieces this big: one piece per download
# is held at a time, and each costs a pass through the event loop.
CHUNK_BYTES = 1024 * 1024
# The longest a presigned URL lives: long enough to start a download, short enough that a
# copied link soon stops working.
PRESIGNED_TTL_S = 300
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


class ObjectResponse(web.StreamResponse):
    """The response for one object whose ``HEAD`` said it is ``size`` bytes."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        size: int,
        *,
        headers: dict[str, str],
        redirect: bool,
    ) -> None:
        super().__init__(headers=headers)
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._redirect = redirect

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._redirect and request.method == hdrs.METH_GET:
            return await self._redirected(request)
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

    async def _redirected(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        url = await self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": self._key,
                "ResponseContentDisposition": self.headers[hdrs.CONTENT_DISPOSITION],
                "ResponseContentType": self.headers[hdrs.CONTENT_TYPE],
            },
            ExpiresIn=PRESIGNED_TTL_S,
        )
        self.set_status(web.HTTPSeeOther.status_code)
        self.headers[hdrs.LOCATION] = url
        for name in (hdrs.CONTENT_DISPOSITION, hdrs.ETAG, hdrs.LAST_MODIFIED):
            self.headers.popall(name, None)
        self.content_length = 0
        return await super().prepare(request)

    async def _stream(self, start: int, stop: int) -> None:
        got = await retried(
            f"read {self._key}",
            lambda: self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{stop - 1}"
            ),
        )
        body = got["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                await self.write(chunk)
        finally:
            body.close()
