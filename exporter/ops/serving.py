"""An aiohttp application served by one process, or by several sharing one port.

One Python process uses one core. With ``processes`` > 1 the parent and ``processes - 1``
spawned children each run the application on the same address with SO_REUSEPORT, and the
kernel spreads new connections over them. The children end with the parent (even when it is
SIGKILLed), and the parent stops, closing every process, when a child dies: a process manager
then sees one failure instead of a server quietly running short.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from multiprocessing.process import BaseProcess

from aiohttp import web

from exporter.api.errors import HEADER_TIMEOUT_S, JsonErrorRequestHandler
from exporter.api.proxies import ClientAccessLogger
from exporter.ops.logs import LogFormat, configure_logging
from exporter.processes import die_with_parent

log = logging.getLogger("exporter.api")

AppFactory = Callable[[], web.Application]
"""Builds the application in each process; a top-level function (or a partial of one), since
it travels to the spawned children by pickling."""

CHILD_CHECK_INTERVAL_S = 1.0
CHILD_STOP_TIMEOUT_S = 10.0
STOPPED_EXIT_CODES = (0, -signal.SIGTERM, -signal.SIGINT)
# run_app's, which served before this module built the connection handler itself.
KEEPALIVE_TIMEOUT_S = 75.0


def serve(
    make_app: AppFactory, host: str, port: int, processes: int = 1, log_format: LogFormat = "text"
) -> None:
    """Serve until SIGINT or SIGTERM (or a child's death), then stop every process."""
    if processes == 1:
        _run(make_app(), host, port, reuse_port=False, announce=True)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_serve_child,
            args=(make_app, host, port, os.getpid(), log_format),
            name=f"api-{number}",
        )
        for number in range(1, processes)
    ]
    for child in children:
        child.start()
    try:
        app = make_app()
        app.cleanup_ctx.append(lambda _: _watch_children(children))
        _run(app, host, port, reuse_port=True, announce=True)
    finally:
        # A child that ended cleanly, or on SIGTERM/SIGINT before it could handle them, was
        # stopped with the whole group (Ctrl-C, a process manager stopping the server).
        failed = [
            child
            for child in children
            if not child.is_alive() and child.exitcode not in STOPPED_EXIT_CODES
        ]
        _stop_children(children)
    if failed:
        # Non-zero, so that a process manager restarts the server.
        sys.exit(f"API process {_names(failed)} stopped; the server stopped with it")


def _serve_child(
    make_app: AppFactory, host: str, port: int, parent_pid: int, log_format: LogFormat
) -> None:
    die_with_parent(parent_pid)
    configure_logging(log_format)
    _run(make_app(), host, port, reuse_port=True)


def _run(
    app: web.Application, host: str, port: int, *, reuse_port: bool, announce: bool = False
) -> None:
    app.on_startup.append(_freeze_startup_objects)
    # As in aiohttp's run_app: SIGINT and SIGTERM raise GracefulExit out of the loop, and
    # asyncio.run then cancels the serving task, whose cleanup closes the application.
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(app, host, port, reuse_port, announce))


async def _serve_until_stopped(
    app: web.Application, host: str, port: int, reuse: bool, announce: bool
) -> None:
    async with listening(app, host, port, reuse_port=reuse, handle_signals=True):
        if announce:  # one process of a group says it for all
            log.info("listening on http://%s:%d", host, port)
        await asyncio.Future()


@contextlib.asynccontextmanager
async def listening(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    handle_signals: bool = False,
) -> AsyncIterator[int]:
    """``app`` served on host and port (0: a free one) until the block ends; yields the port.

    The listening socket is made here rather than by aiohttp's run_app or TCPSite, which build
    aiohttp's own connection handler: this one answers unparsable requests in JSON.
    """
    runner = web.AppRunner(app, handle_signals=handle_signals)
    await runner.setup()
    try:
        manager = runner.server
        assert manager is not None, "the runner is set up"
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: JsonErrorRequestHandler(
                manager,
                loop=loop,
                access_log_class=ClientAccessLogger,
                keepalive_timeout=app.get(HEADER_TIMEOUT_S, KEEPALIVE_TIMEOUT_S),
            ),
            host,
            port,
            reuse_port=reuse_port,
        )
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
    finally:
        await runner.cleanup()


async def _freeze_startup_objects(_: web.Application) -> None:
    # What exists once the application has started (modules, pools, handlers: about 65,000
    # objects) lives as long as the process. Left to the collector, every full collection
    # walked them all, a 24-35 ms pause of every request in flight; frozen, it skips them.
    gc.collect()
    gc.freeze()


async def _watch_children(children: Sequence[BaseProcess]) -> AsyncIterator[None]:
    watcher = asyncio.create_task(_until_a_child_dies(children))
    yield
    watcher.cancel()


async def _until_a_child_dies(children: Sequence[BaseProcess]) -> None:
    while all(child.is_alive() for child in children):
        await asyncio.sleep(CHILD_CHECK_INTERVAL_S)
    dead = [child for child in children if not child.is_alive()]
    log.error("API process %s stopped; stopping the others", _names(dead))
    # The way the server is told to stop: the runner's SIGTERM handler ends the loop cleanly.
    os.kill(os.getpid(), signal.SIGTERM)


def _names(children: Sequence[BaseProcess]) -> str:
    return ", ".join(f"{child.name} (exit code {child.exitcode})" for child in children)


def _stop_children(children: Sequence[BaseProcess]) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(CHILD_STOP_TIMEOUT_S)
        if child.is_alive():
            child.kill()
            child.join()
