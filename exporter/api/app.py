"""The aiohttp application: routes, the error middleware, and the services it opens and closes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from arq.connections import create_pool as create_redis_pool

from exporter.account_repository import AccountRepository
from exporter.api import health, openapi, tasks, types
from exporter.api.errors import error_middleware
from exporter.api.services import SERVICES, Services
from exporter.db import create_pool
from exporter.queue import TaskQueue, redis_settings
from exporter.registry import load_handlers
from exporter.storage import FileStorage
from exporter.task_repository import TaskRepository
from settings import Settings

REDIS_CONNECT_RETRIES = 2


def create_app(settings: Settings) -> web.Application:
    """The API application; PostgreSQL and Redis are connected when it starts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    for module in (health, openapi, tasks, types):
        app.add_routes(module.routes)

    async def services(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url)
        redis = await create_redis_pool(
            redis_settings(settings.redis_url), retry=REDIS_CONNECT_RETRIES
        )
        app[SERVICES] = Services(
            settings=settings,
            pool=pool,
            tasks=TaskRepository(pool),
            accounts=AccountRepository(pool),
            queue=TaskQueue(redis, settings.queue_name),
            storage=FileStorage(settings.storage_dir),
            handlers=load_handlers(),
        )
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(services)
    return app
