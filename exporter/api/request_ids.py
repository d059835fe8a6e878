"""X-Request-ID: the id of each request, in the answer and in every log line about it.

A client's (or a proxy's) id is kept if it is a short token of safe characters; anything else is
replaced by a new one, so that a log line never carries what a client made up beyond that. The
id goes with a task the request creates, into the worker's lines for that task.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter import log_context

HEADER = "X-Request-ID"
MAX_LENGTH = 128
# Letters, digits and the punctuation of UUIDs, trace ids and the like: nothing a log reader,
# a shell or a JSON parser would take for something else.
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]*")

REQUEST_ID = web.RequestKey("request_id", str)


def accepted_request_id(sent: str | None) -> str | None:
    """The id a client sent, if it is one to keep."""
    if sent is None or not 1 <= len(sent) <= MAX_LENGTH or not SAFE.fullmatch(sent):
        return None
    return sent


def new_request_id() -> str:
    return uuid.uuid4().hex


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Names the request, for its log lines and a task it creates."""
    request_id = accepted_request_id(request.headers.get(HEADER)) or new_request_id()
    request[REQUEST_ID] = request_id
    # aiohttp handles each request in a task of its own: the value ends with the request.
    log_context.request_id.set(request_id)
    return await handler(request)


async def answer_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer names its request, streams and errors included."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[HEADER] = request_id
