"""GET /metrics in Prometheus's text format, and the HTTP requests counted for it.

The API's processes share one port, so any of them may answer a scrape: with several, each keeps
its values in ``PROMETHEUS_MULTIPROC_DIR`` and the one answering adds them all up. Without that
directory a scrape would see one process's share, so it is refused (503) rather than wrong.
The tasks waiting and running are counted in PostgreSQL at each scrape.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter import metrics
from exporter.api.errors import CLIENT_CLOSED_REQUEST
from exporter.api.services import services_of
from exporter.db import DATABASE_ERRORS
from exporter.errors import ServiceUnavailable, Unauthorized
from settings import Settings

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

METRICS_PATH = "/metrics"
# The label of a request that matched no route (a 404, a redirect to the address without the
# slash): its raw path would make a label value per address a client makes up.
UNMATCHED = "(unmatched)"

# Through the partial index of unfinished tasks (tasks_unfinished_idx): its cost follows the
# tasks waiting and running, not the whole table.
UNFINISHED_TASKS = """
SELECT status, kind, type, count(*) AS n FROM tasks
WHERE status IN ('pending', 'running')
GROUP BY status, kind, type
"""


def route_of(request: web.Request) -> str:
    """The route's pattern (``/api/export-tasks/{task_id}``), never the path asked for."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts each answer by route and status, and how long it took."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # Cancelled (the server stopping, or its client gone): no answer was sent.
        status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        route = route_of(request)
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_request_seconds.labels(request.method, route).observe(
            time.perf_counter() - started
        )


class _UnfinishedTasks:
    """The tasks waiting and running by kind and type, as the database counted them."""

    def __init__(self, counts: list[tuple[str, str, str, int]]) -> None:
        self._counts = counts

    def collect(self) -> list[Metric]:
        families = {
            status: GaugeMetricFamily(
                f"exporter_tasks_{status}",
                f"Tasks {status} now, by kind and type (counted in PostgreSQL at the scrape).",
                labels=["kind", "type"],
            )
            for status in ("pending", "running")
        }
        for status, kind, type_name, count in self._counts:
            families[status].add_metric([kind, type_name], count)
        return list(families.values())


def require_metrics_token(request: web.Request, settings: Settings) -> None:
    """Unauthorized unless the request carries EXPORTER_METRICS_TOKEN (when one is set)."""
    if settings.metrics_token is None:
        return
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    sent = request.headers.get("Authorization", "").encode(errors="surrogateescape")
    if not hmac.compare_digest(sent, expected):
        raise Unauthorized("/metrics needs the bearer token of EXPORTER_METRICS_TOKEN")


@routes.get(METRICS_PATH)
async def scrape(request: web.Request) -> web.Response:
    services = services_of(request)
    settings = services.settings
    require_metrics_token(request, settings)
    if settings.api_processes > 1 and settings.metrics_dir is None:
        raise ServiceUnavailable(
            "with EXPORTER_API_PROCESSES > 1, /metrics needs PROMETHEUS_MULTIPROC_DIR to add up "
            "the processes' metrics"
        )
    extra = []
    try:
        records = await services.pool.fetch(UNFINISHED_TASKS)
    except DATABASE_ERRORS as exc:
        # The rest still tells what the API sees meanwhile (its 503s, for one).
        log.warning("metrics: tasks not counted, the database is unavailable: %s", exc)
    else:
        extra.append(_UnfinishedTasks([tuple(record.values()) for record in records]))
    # In a thread: with every process's files to read it takes some milliseconds.
    body = await asyncio.to_thread(metrics.exposition, settings.metrics_dir, *extra)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})
