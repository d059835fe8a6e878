"""Turning input into models, and pydantic's complaints into errors that name fields."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from exporter.errors import FieldProblem, InvalidParams

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
