"""Asynchronous data export for admin back offices. What a handler author needs is here."""

from exporter.errors import ExporterError, InvalidParams
from exporter.exports.registry import Column, ColumnKind, ExportParams, RowQuery, export_handler

__all__ = [
    "Column",
    "ColumnKind",
    "ExportParams",
    "ExporterError",
    "InvalidParams",
    "RowQuery",
    "export_handler",
]
