"""Every error becomes ``{"error": {"code", "message", "details"}}``: through one middleware, or,
for a request too malformed to reach the application, through the connection handler."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import ClientConnectionResetError, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from exporter.api.responses import json_model
from exporter.api.schemas import ErrorDetail, ErrorOut, FieldError
from exporter.api.services import services_of
from exporter.db import lost_connection
from exporter.errors import ExporterError

log = logging.getLogger("exporter.api")

# Unfinished exports and a recovering service both take seconds, not minutes.
RETRY_AFTER_S = 10
# nginx's status for a request whose client closed the connection: only the access log sees it.
CLIENT_CLOSED_REQUEST = 499


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[FieldError] | None = None,
    params: dict[str, Any] | None = None,
) -> web.Response:
    error = ErrorDetail(code=code, message=message, params=params or {}, details=details or [])
    return json_model(ErrorOut(error=error), status=status)


def status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _exporter_error_response(exc: ExporterError) -> web.Response:
    details = [
        FieldError(field=d.field, message=d.message, code=d.code, params=d.params)
        for d in exc.details
    ]
    if exc.status not in (429, 503):
        return error_response(exc.status, exc.code, exc.message, details, exc.params)
    retry_after_s = exc.retry_after_s or RETRY_AFTER_S
    params = {**exc.params, "retry_after": retry_after_s}
    response = error_response(exc.status, exc.code, exc.message, details, params)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ExporterError as exc:
        return _exporter_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, status_code_name(exc.status), exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        if request.transport is None or isinstance(exc, ClientConnectionResetError):
            # The client closed its connection (an aborted body, a closed tab), and what failed
            # failed for want of it: a read of its body raises ConnectionResetError, which is
            # no sign of the database. Nothing to reset, and no answer can reach it. A download
            # cut short finds the transport closing before it is gone (aiohttp's own error).
            log.info("client left during %s %s: %r", request.method, request.path, exc)
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if (lost := lost_connection(exc)) is not None:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, lost)
            # The server restarted or went away: every pooled connection is suspect, and each
            # is replaced on its next borrow instead of failing one more request.
            await services_of(request).pool.expire_connections()
            response = error_response(
                503,
                "service_unavailable",
                "the database is unavailable",
                params={"retry_after": RETRY_AFTER_S},
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


# The parser's messages run over several lines and quote what the client sent; the first line
# says what is wrong ("Invalid header value char"), cut to a length a client can show.
PARSE_ERROR_MESSAGE_MAX = 200


# How long a connection may take to send a request head (EXPORTER_HEADER_TIMEOUT_S), for the
# connection handler that ``exporter.serving`` builds itself.
HEADER_TIMEOUT_S = web.AppKey("header_timeout_s", float)


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse as the API answers any
    bad request, and logging it as the client's mistake.

    aiohttp 3 renders a parse error (a bad request line, a header over ``max_field_size``) in
    ``handle_error``, before any middleware: as text/plain, with an ERROR log and traceback.
    aiohttp 4 sends these requests through the middleware instead, which makes this unneeded.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        problem = exc.message.partition("\n")[0].rstrip(":")[:PARSE_ERROR_MESSAGE_MAX]
        log.warning("unreadable request from %s: %s", request.remote, problem)
        response = error_response(
            status, status_code_name(status), f"unreadable request: {problem}"
        )
        # What follows on the connection cannot be told apart from the bad request.
        response.force_close()
        # No application hook sees this answer, so the headers.private_headers hook cannot drop
        # the header; aiohttp only fills it in when it is missing, so a neutral value hides the
        # server's software and version here.
        response.headers[hdrs.SERVER] = "exporter"
        return response
