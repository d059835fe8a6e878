"""A trivial aiohttp endpoint, served like the API (same runner, same logging, the same number
of processes), for comparison.

``python -m bench.trivial_app HOST PORT [PROCESSES]`` serves ``GET /ping`` → ``{"status": "ok"}``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from exporter.ops.logs import configure_logging
from exporter.ops.serving import serve

PING_PATH = "/ping"


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get(PING_PATH, ping)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trivial_app", description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("processes", type=int, nargs="?", default=1)
    args = parser.parse_args()
    configure_logging()
    serve(make_app, args.host, args.port, args.processes)


if __name__ == "__main__":
    main()
