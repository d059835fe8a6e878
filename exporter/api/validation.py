"""Reading a request's JSON body into a model."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import pydantic_core
from aiohttp import web
from pydantic import BaseModel

from exporter.api.services import services_of
from exporter.errors import FieldProblem, InvalidRequest, RequestTimeout
from exporter.validation import validate

M = TypeVar("M", bound=BaseModel)


async def read_json_body(request: web.Request, model: type[M]) -> M:
    """The request body parsed as JSON into ``model`` (size and time are capped by the app)."""
    return validate(model, await read_json_object(request))


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object (size and time are capped by the app)."""
    timeout_s = services_of(request).settings.body_timeout_s
    try:
        # aiohttp bounds a body's size but not how long it takes to arrive.
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    try:
        # pydantic's parser, not the json module: it refuses nesting past 200 levels and
        # integers past Python's 4,300 digits with a ValueError, where json.loads raised
        # RecursionError at 30,000 brackets; it refuses lone surrogates (not UTF-8) as well.
        data = pydantic_core.from_json(raw, allow_inf_nan=False) if raw else None
    except ValueError as exc:
        raise InvalidRequest(
            f"request body is not valid JSON: {exc}",
            [FieldProblem("body", str(exc), "json_invalid")],
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data
