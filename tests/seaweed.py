"""A real S3 server for the tests: SeaweedFS (started once per session by tests/conftest.py), and
what a test asks the bucket directly: which objects and which unfinished uploads are there."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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
# Hop-by-hop, or recomputed by aiohttp for the body it sends on.
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class FlakyStore:
    """An HTTP proxy in front of a real store that answers 503 SlowDown to the requests
    ``refuses`` picks, and passes every other one through untouched (signatures included),
    counting the part uploads it carries at once."""

    def __init__(self, upstream: str, refuses: Callable[[web.BaseRequest], bool]) -> None:
        self._upstream = upstream
        self._refuses = refuses
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

    async def _forward(self, session: ClientSession, request: web.BaseRequest) -> web.Response:
        if self._refuses(request):
            self.refused.append(f"{request.method} {request.raw_path}")
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        is_part = part_upload(request)
        self._parts_in_flight += is_part
        self.most_parts_in_flight = max(self.most_parts_in_flight, self._parts_in_flight)
        try:
            return await self._pass(session, request)
        finally:
            self._parts_in_flight -= is_part

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


def part_upload(request: web.BaseRequest) -> bool:
    """A request that stores one part of a multipart upload."""
    return request.method == "PUT" and "partNumber" in request.query
