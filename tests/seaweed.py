"""A real S3 server for the tests: SeaweedFS (started once per session by tests/conftest.py), and
what a test asks the bucket directly: which objects and which unfinished uploads are there."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from aiohttp import ClientSession, web
from yarl import URL

from exporter.ops.seaweedfs import SeaweedFS, s3_client

# One bucket for the session; each test has a prefix of its own in it.
TEST_BUCKET = "exporter-tests"
ACCESS_KEY = "exporter-test-key"
SECRET_KEY = "exporter-test-secret-" + "s" * 20


async def object_keys(server: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    """Every object under ``prefix``, sorted."""
    keys: list[str] = []
    async with s3_client(server) as client:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        async for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
    return sorted(keys)


async def unfinished_uploads(server: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    """The keys of multipart uploads begun under ``prefix`` and neither completed nor aborted."""
    async with s3_client(server) as client:
        listing = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return sorted(upload["Key"] for upload in listing.get("Uploads", []) if "Key" in upload)


# What S3 answers when it sheds load: a request a client should try again later.
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
NO_SUCH_UPLOAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message>"
    b"</Error>"
)
# Hop-by-hop, or recomputed by aiohttp for the body it sends on.
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class FlakyStore:
    """An HTTP proxy in front of a real store that answers 503 SlowDown to the requests
    ``refuses`` picks, and passes every other one through untouched (signatures included),
    counting the uploads of data (parts or whole objects) it carries at once.

    A request ``loses`` picks reaches the store, but its answer is lost: the client gets a 503.
    One ``forgets`` picks is answered 404 NoSuchUpload, as AWS S3 answers a completion tried
    again after the first completed (SeaweedFS completes it again). One ``cuts`` picks is
    answered with half its body before the connection drops."""

    def __init__(
        self,
        upstream: str,
        refuses: Callable[[web.BaseRequest], bool],
        *,
        loses: Callable[[web.BaseRequest], bool] = lambda _: False,
        forgets: Callable[[web.BaseRequest], bool] = lambda _: False,
        cuts: Callable[[web.BaseRequest], bool] = lambda _: False,
    ) -> None:
        self._upstream = upstream
        self._refuses = refuses
        self._loses = loses
        self._forgets = forgets
        self._cuts = cuts
        self.refused: list[str] = []
        self._parts_in_flight = 0
        self.most_parts_in_flight = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serves on a free loopback port; yields its URL (an EXPORTER_S3_ENDPOINT_URL)."""
        async with ClientSession(auto_decompress=False) as session:
            # Parts are 8 MiB: past aiohttp's default cap of 1 MiB on a request's body.
            app = web.Application(client_max_size=64 * 1024**2)

            async def forward(request: web.Request) -> web.Response:
                return await self._forward(session, request)

            app.router.add_route("*", "/{path:.*}", forward)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                host, port = runner.addresses[0][:2]
                yield f"http://{host}:{port}"
            finally:
                await runner.cleanup()

    async def _forward(
        self, session: ClientSession, request: web.BaseRequest
    ) -> web.StreamResponse:
        if self._refuses(request):
            self.refused.append(f"{request.method} {request.raw_path}")
            return _slow_down()
        if self._forgets(request):
            self.refused.append(f"{request.method} {request.raw_path} (no such upload)")
            return web.Response(status=404, body=NO_SUCH_UPLOAD, content_type="application/xml")
        is_upload = request.method == "PUT"
        self._parts_in_flight += is_upload
        self.most_parts_in_flight = max(self.most_parts_in_flight, self._parts_in_flight)
        try:
            answer = await self._pass(session, request)
        finally:
            self._parts_in_flight -= is_upload
        if self._loses(request):
            self.refused.append(f"{request.method} {request.raw_path} (done, answer lost)")
            return _slow_down()
        if self._cuts(request) and answer.body is not None:
            self.refused.append(f"{request.method} {request.raw_path} (cut off)")
            return await _cut_off(request, answer)
        return answer

    async def _pass(self, session: ClientSession, request: web.BaseRequest) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with session.request(
            request.method,
            URL(self._upstream + request.raw_path, encoded=True),
            headers=headers,
            # A stream: aiohttp warns (an error here) of a bytes body past 1 MiB.
            data=io.BytesIO(await request.read()),
            skip_auto_headers={"Content-Type", "User-Agent", "Accept-Encoding", "Accept"},
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            if request.method == "HEAD":  # the size of what a GET would send, not of no body
                kept["Content-Length"] = answer.headers["Content-Length"]
            return web.Response(status=answer.status, body=body, headers=kept)


def _slow_down() -> web.Response:
    return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")


async def _cut_off(request: web.BaseRequest, answer: web.Response) -> web.StreamResponse:
    """``answer`` announced whole, then half of its body, then the connection closed."""
    body = bytes(cast("bytes", answer.body))
    cut = web.StreamResponse(status=answer.status, headers=answer.headers)
    cut.content_length = len(body)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    transport = request.transport
    assert transport is not None
    transport.close()
    return cut


def part_upload(request: web.BaseRequest) -> bool:
    """A request that stores one part of a multipart upload."""
    return request.method == "PUT" and "partNumber" in request.query
