"""GET /api/export-types: what can be exported, in which formats, with which filters."""

from __future__ import annotations

from aiohttp import web

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.schemas import ColumnOut, ExportTypeOut, ExportTypesOut
from exporter.api.services import services_of
from exporter.models import ExportFormat
from exporter.registry import HandlerRegistry

routes = web.RouteTableDef()


def describe_types(handlers: HandlerRegistry) -> ExportTypesOut:
    return ExportTypesOut(
        items=[
            ExportTypeOut(
                name=handler.name,
                title=handler.title,
                formats=list(ExportFormat),
                columns=[ColumnOut(label=c.label, kind=c.kind.value) for c in handler.columns],
                params_schema=handler.params_model.model_json_schema(),
            )
            for handler in handlers
        ]
    )


@routes.get("/api/export-types")
async def list_export_types(request: web.Request) -> web.Response:
    await current_account(request)
    body = describe_types(services_of(request).handlers)
    return json_model(body)
