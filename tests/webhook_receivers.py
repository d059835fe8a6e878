"""Webhook receivers for tests: real aiohttp servers on 127.0.0.1 that record what they get and
answer as a test tells them (failures, redirects, slowness, endless bodies)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Longer than any test's webhook timeout.
SLOW_ANSWER_S = 30.0
HUGE_BODY_BYTES = 256 * 1024**2
CHUNK = b"x" * 65536


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: float = 300) -> bool:
    """The README's receiver check, word for word: the signature must match the body and be
    recent (an old one replayed is refused)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@dataclass(frozen=True)
class Received:
    """One POST as a receiver got it: when (monotonic), where, its headers and body."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """What the server got, per path; ``failures`` is how many 500s ``/hook`` answers first.
    ``/slow`` never answers in time, ``/huge`` sends an endless body (``huge_sent`` counts what
    left), ``/redirect`` sends the caller to ``/landing``."""

    url: str = ""
    failures: int = 0
    received: list[Received] = field(default_factory=list)
    huge_sent: int = 0

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(time.monotonic(), request.path, dict(request.headers), body))
        if request.path == "/hook" and self.failures > 0:
            self.failures -= 1
            return web.Response(status=500, text="try again later")
        if request.path == "/slow":
            await asyncio.sleep(SLOW_ANSWER_S)
        if request.path == "/redirect":
            raise web.HTTPFound(f"{self.url}/landing")
        if request.path == "/huge":
            response = web.StreamResponse(status=200)
            await response.prepare(request)
            try:
                while self.huge_sent < HUGE_BODY_BYTES:
                    await response.write(CHUNK)
                    self.huge_sent += len(CHUNK)
            except (ConnectionError, RuntimeError):
                pass  # the sender hung up: what the test wants
            return response
        return web.Response(status=200, text="ok")


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    """A receiver on a free port of 127.0.0.1 until the block ends."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
