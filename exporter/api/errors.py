"""One middleware turns every error into ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
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
    status: int, code: str, message: str, details: list[FieldError] | None = None
) -> web.Response:
    body = ErrorOut(error=ErrorDetail(code=code, message=message, details=details or []))
    return json_model(body, status=status)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ExporterError as exc:
        details = [FieldError(field=d.field, message=d.message) for d in exc.details]
        response = error_response(exc.status, exc.code, exc.message, details)
        if exc.status in (429, 503):
            response.headers["Retry-After"] = str(exc.retry_after_s or RETRY_AFTER_S)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _code_for(exc.status), exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception as exc:
        if request.transport is None:
            # The client closed its connection (an aborted body, a closed tab), and what failed
            # failed for want of it: a read of its body raises ConnectionResetError, which is
            # no sign of the database. Nothing to reset, and no answer can reach it.
            log.info("client left during %s %s: %r", request.method, request.path, exc)
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if (lost := lost_connection(exc)) is not None:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, lost)
            # The server restarted or went away: every pooled connection is suspect, and each
            # is replaced on its next borrow instead of failing one more request.
            await services_of(request).pool.expire_connections()
            response = error_response(503, "service_unavailable", "the database is unavailable")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
