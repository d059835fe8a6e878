"""A trivial aiohttp endpoint, served like the API (same runner, same logging), for comparison.

``python -m bench.trivial_app HOST PORT`` serves ``GET /ping`` → ``{"status": "ok"}``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from exporter.logs import configure_logging

PING_PATH = "/ping"


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trivial_app", description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    configure_logging()
    app = web.Application()
    app.router.add_get(PING_PATH, ping)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
