"""A format's name as a request or an answer carries it: checked against, and documented as,
the names of the registered formats."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetPydanticSchema
from pydantic_core import core_schema

from exporter.exports.formats import FORMATS


def _registered_formats() -> type[StrEnum]:
    # The names are the registry's, so mypy cannot see the members.
    names = StrEnum("ExportFormat", [(name, name) for name in FORMATS])  # type: ignore[misc]
    names.__doc__ = "File formats a task can produce; the value is also the file extension."
    return names


def _format_name_schema(_source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # Checked and documented as an enum of the registered names, so that an unknown one gets
    # pydantic's "enum" error and the OpenAPI document lists them; kept as the plain name.
    return core_schema.no_info_after_validator_function(
        str, handler(_FORMAT_NAMES), serialization=core_schema.to_string_ser_schema()
    )


_FORMAT_NAMES = _registered_formats()
FormatName = Annotated[str, GetPydanticSchema(_format_name_schema)]
