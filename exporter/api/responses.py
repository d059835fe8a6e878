"""JSON responses from the API's models, serialised by pydantic (UTF-8, not \\u escapes)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel


def json_model(body: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=body.model_dump_json(), status=status, content_type="application/json")
