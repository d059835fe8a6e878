"""The worker's /metrics, on a port of its own (EXPORTER_WORKER_METRICS_PORT).

A worker is a Prometheus target of its own, wherever it runs: its tasks, rows, sweeps and
expired files, and its process's memory and CPU. It does not count the tasks waiting and
running (the API's /metrics does, from PostgreSQL), so that no sum over targets counts them
twice.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from exporter import metrics
from exporter.api.errors import error_middleware
from exporter.api.metrics import METRICS_PATH, require_metrics_token
from settings import Settings

log = logging.getLogger("exporter.worker")

SETTINGS = web.AppKey("settings", Settings)


async def _scrape(request: web.Request) -> web.Response:
    require_metrics_token(request, request.app[SETTINGS])
    # In a thread, as the API does: the jobs' heartbeats run on this loop.
    body = await asyncio.to_thread(metrics.exposition, None)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def start_worker_metrics(settings: Settings) -> web.AppRunner | None:
    """/metrics served on the worker's metrics port, if it has one, until the runner's cleanup."""
    if settings.worker_metrics_port is None:
        return None
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.router.add_get(METRICS_PATH, _scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d%s", host, port, METRICS_PATH)
    return runner
