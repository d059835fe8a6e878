"""The aiohttp application: routes, the error middleware, and the services it opens and closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter.api import (
    audit_events,
    health,
    import_tasks,
    import_types,
    listings,
    metrics,
    openapi,
    ops,
    session,
    task_stream,
    tasks,
    types,
)
from exporter.api.errors import HEADER_TIMEOUT_S, error_middleware
from exporter.api.headers import private_headers
from exporter.api.proxies import trusted_proxies_middleware
from exporter.api.request_ids import answer_request_id, request_ids
from exporter.api.services import SERVICES, Services
from exporter.audit.trail import AuditTrail
from exporter.auth.account_repository import AccountRepository
from exporter.db import create_pool
from exporter.exports.kind import ExportKind, ExportSettings
from exporter.exports.registry import load_handlers
from exporter.imports.engine import ImportSettings
from exporter.imports.kind import ImportKind
from exporter.imports.readers import ReadLimits
from exporter.imports.registry import import_registry
from exporter.ops.storage import open_storage
from exporter.storage.deployment import deployment_id
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.queue import TaskQueue, connect_lazily
from exporter.tasks.repository import TaskRepository
from exporter.web import pages
from settings import Settings


def _refuse_shadowing(router: web.UrlDispatcher, first_added: int) -> None:
    """The types' lists and pages come at addresses their handlers chose: one the app already
    serves would never be reached (aiohttp answers with the first route of a path)."""
    resources = list(router.resources())
    served = {resource.canonical for resource in resources[:first_added]}
    taken = sorted(r.canonical for r in resources[first_added:] if r.canonical in served)
    if taken:
        raise ValueError(f"list pages at addresses the app already serves: {taken}")


def create_app(settings: Settings) -> web.Application:
    """The API application; PostgreSQL and Redis are connected when it starts."""
    middlewares: list[Middleware] = [
        # /tasks/ is /tasks: a redirect, not a 404, for an address typed with a slash.
        web.normalize_path_middleware(append_slash=False, remove_slash=True),
        error_middleware,
        pages.page_not_found,
    ]
    if settings.trusted_proxies:
        # First, so that the error middleware and every handler see the forwarded client.
        middlewares.insert(0, trusted_proxies_middleware(settings.trusted_proxies))
    app = web.Application(
        # Outermost: every answer is named and counted, whatever the others make of it.
        middlewares=[request_ids, metrics.count_requests, *middlewares],
        client_max_size=settings.max_body_bytes,
        # aiohttp's keep-alive timer runs from a connection's opening and from each answer, and
        # data does not restart it: a request head still unfinished when it fires is closed
        # with its connection, so it bounds slow headers as well as idle connections.
        handler_args={"keepalive_timeout": settings.header_timeout_s},
    )
    app[HEADER_TIMEOUT_S] = settings.header_timeout_s
    for module in (
        health,
        metrics,
        openapi,
        tasks,
        types,
        import_tasks,
        import_types,
        ops,
        session,
        task_stream,
        audit_events,
        pages,
    ):
        app.add_routes(module.routes)
    handlers = load_handlers(settings.handler_modules)
    framework_routes = len(app.router.resources())
    pages.add_list_pages(app, handlers)
    app.add_routes(listings.list_routes(handlers))
    _refuse_shadowing(app.router, framework_routes)
    app.on_response_prepare.append(private_headers)
    app.on_response_prepare.append(answer_request_id)

    async def services(app: web.Application) -> AsyncIterator[None]:
        resources = AsyncExitStack()
        pool = await create_pool(settings.database_url)
        redis = connect_lazily(settings.redis_url)
        deployment = await deployment_id(pool)
        storage = await resources.enter_async_context(open_storage(settings, deployment))
        audit = AuditTrail(pool)
        app[SERVICES] = Services(
            settings=settings,
            pool=pool,
            tasks=TaskRepository(pool),
            accounts=AccountRepository(pool),
            queue=TaskQueue(redis, settings.queue_name),
            storage=storage,
            exports=ExportKind(
                handlers, pool, ExportSettings(settings.time_zone, settings.max_rows)
            ),
            # load_handlers filled the import registry: import handlers stack on export ones.
            imports=ImportKind(
                import_registry, pool, storage, ImportSettings(settings.time_zone, ReadLimits())
            ),
            scratch=ScratchSpace(settings.scratch_dir, deployment),
            audit=audit,
        )
        try:
            yield
        finally:
            await audit.close()
            await resources.aclose()
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(services)
    app.cleanup_ctx.append(session.password_checker)
    app.cleanup_ctx.append(task_stream.task_change_feed)
    app.on_shutdown.append(task_stream.end_task_streams)
    return app
