"""Turning request input into models, and pydantic's complaints into errors that name fields."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ValidationError

from exporter.api.services import services_of
from exporter.errors import FieldProblem, InvalidParams, InvalidRequest, RequestTimeout

M = TypeVar("M", bound=BaseModel)


def field_problems(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Each error of ``exc`` on its field, with pydantic's stable type as its code and its
    context (max_length, ge, …) as its params."""
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        # pydantic prefixes messages of custom validators with "Value error, ".
        message = error["msg"].removeprefix("Value error, ")
        params = {
            # A ValueError's context is the exception itself, already in the message.
            name: value if isinstance(value, str | int | float | bool) else str(value)
            for name, value in error.get("ctx", {}).items()
            if not isinstance(value, BaseException)
        }
        problems.append(FieldProblem(path or prefix or "body", message, error["type"], params))
    return problems


def validate(model: type[M], data: Any, *, prefix: str = "") -> M:
    """``model`` from ``data``, or InvalidParams listing every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = field_problems(exc, prefix)
        summary = "; ".join(f"{problem.field}: {problem.message}" for problem in problems)
        raise InvalidParams(f"invalid request: {summary}", problems) from None


async def read_json_body(request: web.Request, model: type[M]) -> M:
    """The request body parsed as JSON into ``model`` (size and time are capped by the app)."""
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
    return validate(model, data)
