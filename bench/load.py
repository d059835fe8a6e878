"""A closed-loop HTTP load test: N clients on keep-alive connections, each sending a request as
soon as its previous answer is read, for a bounded time; throughput and latency percentiles.

The generator is one Python process on the same machine as the server, so it competes for the
same cores; compare endpoints measured in the same run rather than absolute numbers.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

REQUEST_TIMEOUT_S = 10.0
# Connections open and caches fill during the first moments; those requests are not counted.
WARM_UP_S = 1.0


class LoadFailed(Exception):
    """Too few requests were answered to measure anything."""


@dataclass(frozen=True)
class LoadResult:
    name: str
    clients: int
    seconds: float  # the measured part, after the warm-up
    requests: int  # answered with the expected status in the measured part
    errors: int  # any other answer or failure in the measured part
    requests_per_s: float
    p50_ms: float
    p99_ms: float


Prepare = Callable[[int], tuple[dict[str, str], bytes | None]]
"""The headers and body of the n-th request."""


@dataclass(frozen=True)
class Request:
    """What every client sends, prepared afresh for each request."""

    method: str
    url: str
    expected_status: int
    prepare: Prepare

    @classmethod
    def json(
        cls,
        method: str,
        url: str,
        tokens: Sequence[str],
        body: Callable[[int], Any] | None = None,
        *,
        expected_status: int = 200,
    ) -> Request:
        """Request n is sent with ``tokens[n % len(tokens)]`` and ``body(n)`` as JSON."""

        def prepare(number: int) -> tuple[dict[str, str], bytes | None]:
            headers = {
                "Authorization": f"Bearer {tokens[number % len(tokens)]}",
                "Content-Type": "application/json",
            }
            return headers, None if body is None else json.dumps(body(number)).encode()

        return cls(method, url, expected_status, prepare)


async def load_test(name: str, request: Request, *, clients: int, duration_s: float) -> LoadResult:
    """``clients`` concurrent clients repeating ``request`` for ``duration_s`` after a warm-up."""
    latencies: list[float] = []
    errors = 0
    numbers = itertools.count()
    started = time.perf_counter()
    measure_from = started + WARM_UP_S
    stop_at = measure_from + duration_s

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            headers, body = request.prepare(next(numbers))
            sent = time.perf_counter()
            try:
                async with session.request(
                    request.method, request.url, data=body, headers=headers
                ) as response:
                    await response.read()
                    ok = response.status == request.expected_status
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if sent < measure_from:
                continue
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    # A full collection of this process's objects would stall all clients at once and show as
    # the server's latency; frozen, the collector only walks what the load itself creates.
    gc.collect()
    gc.freeze()
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(client(session) for _ in range(clients)))
    finally:
        gc.unfreeze()
    # The last answers arrive after stop_at; they were sent in time, so the span includes them.
    seconds = time.perf_counter() - measure_from
    if len(latencies) < 2:
        raise LoadFailed(f"{name}: {len(latencies)} answered requests, {errors} errors")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(
        name=name,
        clients=clients,
        seconds=seconds,
        requests=len(latencies),
        errors=errors,
        requests_per_s=len(latencies) / seconds,
        p50_ms=cuts[49] * 1000,
        p99_ms=cuts[98] * 1000,
    )
