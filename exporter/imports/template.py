"""The file a user fills in to import a type: its header row and one example row.

The header is the export's labels, so that a template, an export and a filled-in template are
one shape. In xlsx, each enum column offers its labels in a drop-down list and every cell is
text (a phone number keeps its leading zero); the csv is UTF-8 with a BOM, as exports are.
"""

from __future__ import annotations

import csv
import io
from enum import StrEnum

import xlsxwriter

from exporter.imports.registry import ImportColumn, ImportHandler

UTF8_BOM = "\ufeff"
# Excel's last row (1-based 1,048,576): the drop-down lists cover every row a user may fill.
LAST_ROW = 1_048_575
# Characters of a column's width beyond its header's, and the least width.
WIDTH_PADDING = 4
MIN_WIDTH = 12


class TemplateFormat(StrEnum):
    XLSX = "xlsx"
    CSV = "csv"


def allowed_labels(column: ImportColumn) -> list[str]:
    """The labels an enum column takes, as the export writes them; empty for other columns."""
    return list(column.export.labels.values()) if column.is_enum else []


def example_value(column: ImportColumn) -> str:
    return column.declared.example or next(iter(allowed_labels(column)), "")


def _sheet_name(handler: ImportHandler) -> str:
    # Excel refuses these characters in a sheet's name, and names past 31 characters.
    name = "".join(c for c in handler.title if c not in "[]:*?/\\")[:31].strip("'")
    return name or handler.name


def template_file_name(handler: ImportHandler, file_format: TemplateFormat) -> str:
    return f"{handler.title}导入模板.{file_format.value}"


def template_bytes(handler: ImportHandler, file_format: TemplateFormat) -> bytes:
    """The template of ``handler`` in ``file_format``; a few kilobytes, made in memory."""
    header = [column.label for column in handler.columns]
    example = [example_value(column) for column in handler.columns]
    if file_format is TemplateFormat.CSV:
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerows([header, example])
        return (UTF8_BOM + text.getvalue()).encode("utf-8")
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = workbook.add_worksheet(_sheet_name(handler))
    as_text = workbook.add_format({"num_format": "@"})
    bold = workbook.add_format({"bold": True, "num_format": "@"})
    for number, column in enumerate(handler.columns):
        width = max(MIN_WIDTH, len(column.label) * 2 + WIDTH_PADDING)
        sheet.set_column(number, number, width, as_text)
        sheet.write_string(0, number, column.label, bold)
        sheet.write_string(1, number, example[number])
        labels = allowed_labels(column)
        if labels:
            sheet.data_validation(
                1, number, LAST_ROW, number, {"validate": "list", "source": labels}
            )
    sheet.freeze_panes(1, 0)
    workbook.close()
    return buffer.getvalue()
