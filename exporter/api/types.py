"""GET /api/export-types: what can be exported, in which formats, with which filters."""

from __future__ import annotations

from aiohttp import web

from exporter.api.auth import current_account
from exporter.api.responses import json_model
from exporter.api.schemas import ColumnOut, ExportTypeOut, ExportTypesOut
from exporter.api.services import services_of
from exporter.auth.accounts import Account
from exporter.exports.formats import FORMATS
from exporter.exports.registry import HandlerRegistry

routes = web.RouteTableDef()


def describe_types(handlers: HandlerRegistry, account: Account) -> ExportTypesOut:
    """The types whose list the account may see."""
    return ExportTypesOut(
        items=[
            ExportTypeOut(
                name=handler.name,
                title=handler.title,
                formats=list(FORMATS),
                columns=[ColumnOut(label=c.label, kind=c.kind.value) for c in handler.columns],
                params_schema=handler.params_model.model_json_schema(),
            )
            for handler in handlers
            if account.may(handler.permission)
        ]
    )


@routes.get("/api/export-types")
async def list_export_types(request: web.Request) -> web.Response:
    account = await current_account(request)
    return json_model(describe_types(services_of(request).exports.handlers, account))
