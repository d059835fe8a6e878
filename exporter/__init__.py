"""Asynchronous data export for admin back offices. What a handler author needs is here."""

from exporter.errors import ExporterError, InvalidParams
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.list_page import Choices, ListField, ListPage
from exporter.exports.registry import ExportParams, export_handler
from exporter.exports.row_query import RowQuery
from exporter.imports.registry import ImportField, Reference, import_handler

__all__ = [
    "Choices",
    "Column",
    "ColumnKind",
    "ExportParams",
    "ExporterError",
    "ImportField",
    "InvalidParams",
    "ListField",
    "ListPage",
    "Reference",
    "RowQuery",
    "export_handler",
    "import_handler",
]
