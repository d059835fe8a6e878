"""Headers of every answer: no server banner, and nothing personal kept by a cache.

The lists, tasks with their filters, files and the pages are one person's view of the data: a
shared cache or the browser's disk must not keep them. Only the static files, which are the
same for everyone and versioned in their URLs, may be cached.
"""

from __future__ import annotations

from aiohttp import hdrs, web

NO_STORE = "no-store"


async def private_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: drop ``Server``, mark everything but static files no-store."""
    # aiohttp names itself and the Python version, which tells a prober what to try.
    response.headers.popall(hdrs.SERVER, None)
    if isinstance(request.match_info.route.resource, web.StaticResource):
        return
    if NO_STORE not in response.headers.get(hdrs.CACHE_CONTROL, ""):
        response.headers[hdrs.CACHE_CONTROL] = NO_STORE
