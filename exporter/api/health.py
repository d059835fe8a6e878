"""Liveness and readiness probes (no token needed)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from exporter.api.responses import json_model
from exporter.api.schemas import HealthOut
from exporter.api.services import services_of

routes = web.RouteTableDef()

PROBE_TIMEOUT_S = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_model(HealthOut(status="ok"))


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await services.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await services.queue.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    body = HealthOut(status="ok" if ready else "unavailable", checks=checks)
    return json_model(body, status=200 if ready else 503)
