"""A stored object served to one HTTP request: streamed through the API (``Range`` answered
with 206 or 416, ``HEAD`` with the headers alone) or, in redirect mode, a 303 to a presigned
URL of the store that gives the file under the same name and type.

A ``HEAD`` is never redirected: the page asks ``HEAD`` before it navigates, and a presigned URL
is signed for ``GET`` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from exporter.storage.ranged_response import RangedResponse
from exporter.storage.s3_calls import retried

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# Read from the store and written to the client in pieces this big: one piece per download
# is held at a time, and each costs a pass through the event loop.
CHUNK_BYTES = 1024 * 1024
# The longest a presigned URL lives: long enough to start a download, short enough that a
# copied link soon stops working.
PRESIGNED_TTL_S = 300


class ObjectResponse(RangedResponse):
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
        super().__init__(size, headers=headers)
        self._client = client
        self._bucket = bucket
        self._key = key
        self._redirect = redirect

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._redirect and request.method == hdrs.METH_GET and not self.prepared:
            return await self._redirected(request)
        return await super().prepare(request)

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
        self.bytes_sent = None  # the store sends the file: how much, it alone knows
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
