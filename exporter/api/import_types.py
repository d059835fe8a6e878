"""GET /api/import-types: what can be imported, with which columns; and each type's template."""

from __future__ import annotations

from aiohttp import web
from pydantic import ConfigDict

from exporter.api.auth import current_account
from exporter.api.import_schemas import ImportColumnOut, ImportTypeOut, ImportTypesOut
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.api.task_actions import content_disposition
from exporter.auth.accounts import Account, require_permissions
from exporter.exports.formats import FORMATS
from exporter.imports.readers import UploadFormat
from exporter.imports.registry import ImportHandler, ImportRegistry
from exporter.imports.template import (
    TemplateFormat,
    allowed_labels,
    template_bytes,
    template_file_name,
)
from exporter.input_model import InputModel
from exporter.validation import validate

routes = web.RouteTableDef()

TEMPLATE_PATH = "/api/import-types/{type}/template"


class TemplateQuery(InputModel):
    """Query string of GET /api/import-types/{type}/template."""

    model_config = ConfigDict(extra="forbid")

    format: TemplateFormat = TemplateFormat.XLSX


def describe_type(handler: ImportHandler) -> ImportTypeOut:
    return ImportTypeOut(
        name=handler.name,
        title=handler.title,
        key=handler.key,
        columns=[
            ImportColumnOut(
                label=column.label,
                field=column.field,
                required=column.declared.required,
                allowed=allowed_labels(column) if column.is_enum else None,
            )
            for column in handler.columns
        ],
        formats=list(UploadFormat),
        permissions=list(handler.import_permissions),
    )


def describe_types(handlers: ImportRegistry, account: Account) -> ImportTypesOut:
    """The types the account may import."""
    return ImportTypesOut(
        items=[
            describe_type(handler)
            for handler in handlers
            if account.may(*handler.import_permissions)
        ]
    )


@routes.get("/api/import-types")
async def list_import_types(request: web.Request) -> web.Response:
    account = await current_account(request)
    return json_model(describe_types(services_of(request).imports.handlers, account))


@routes.get(TEMPLATE_PATH)
async def import_template(request: web.Request) -> web.Response:
    account = await current_account(request)
    handler = services_of(request).imports.handler(request.match_info["type"])
    require_permissions(account, *handler.import_permissions)
    file_format = validate(TemplateQuery, dict(request.query)).format
    return web.Response(
        body=template_bytes(handler, file_format),
        headers={
            "Content-Type": FORMATS[file_format.value].content_type,
            "Content-Disposition": content_disposition(
                handler.name, template_file_name(handler, file_format)
            ),
        },
    )
