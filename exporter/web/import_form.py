"""What the Import dialog of a list page says about its type: the templates to download and the
columns a file may have, in the reader's language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.imports.registry import ImportColumn, ImportHandler
from exporter.imports.requests import ImportMode, OnError
from exporter.web.i18n import type_key

TEMPLATE_FORMATS = ("xlsx", "csv")
# What the file chooser offers; the server judges a file by its bytes, whatever this lets by.
ACCEPTED_FILES = ".csv,.xlsx,.xlsb"


@dataclass(frozen=True)
class ImportForm:
    """The dialog of one import type."""

    type_name: str
    title: str
    # Each column as the dialog names it, with the values an enum column takes; the key column
    # first of those a row must have.
    required: tuple[str, ...]
    optional: tuple[str, ...]
    templates: tuple[tuple[str, str], ...]
    max_upload_bytes: int
    modes: tuple[str, ...] = tuple(ImportMode)
    on_error: tuple[str, ...] = tuple(OnError)
    accept: str = ACCEPTED_FILES


def _hint(handler: ImportHandler, column: ImportColumn, messages: Mapping[str, str]) -> str:
    # The type's own words where it has them, else what its export writes.
    label = messages.get(type_key(handler.name, f"column.{column.field}"), column.label)
    choices = [
        messages.get(type_key(handler.name, f"value.{column.field}.{code}"), text)
        for code, text in column.export.labels.items()
    ]
    if not choices:
        return label
    return label + messages["import.choices"].format(
        choices=messages["list.separator"].join(choices)
    )


def import_form(
    handler: ImportHandler, messages: Mapping[str, str], max_upload_bytes: int
) -> ImportForm:
    """The dialog of ``handler``'s type, in the language of ``messages``."""
    name = messages.get(type_key(handler.name, "name"), handler.title)
    base = f"/api/import-types/{handler.name}/template?format="
    others = [column for column in handler.columns if column.field != handler.key]
    return ImportForm(
        type_name=handler.name,
        title=name,
        required=tuple(
            _hint(handler, column, messages)
            for column in [handler.key_column, *others]
            if column.field == handler.key or column.declared.required
        ),
        optional=tuple(
            _hint(handler, column, messages) for column in others if not column.declared.required
        ),
        templates=tuple((file_format, base + file_format) for file_format in TEMPLATE_FORMATS),
        max_upload_bytes=max_upload_bytes,
    )
