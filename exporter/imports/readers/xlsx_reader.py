"""Rows of an uploaded xlsx, streamed out of the zip: runs of rows in the plain form that
xlsxwriter and Excel write are read with regular expressions (see ``plain_rows``), anything
else one lxml <row> at a time. Both give the same values."""

from __future__ import annotations

import datetime
import functools
import zipfile
from collections.abc import Iterator
from typing import Any

from exporter.imports.readers.base import (
    CellValue,
    ReadLimits,
    Row,
    RowGuard,
    Sheet,
    too_many_columns,
)
from exporter.imports.readers.errors import CorruptUpload
from exporter.imports.readers.excel_dates import serial_to_datetime
from exporter.imports.readers.part_scan import PlainRun, scan_part
from exporter.imports.readers.plain_rows import SHEET_ROWS, items_of, xml_text
from exporter.imports.readers.safe_xml import MAIN_NS, forget
from exporter.imports.readers.string_table import StringTable
from exporter.imports.readers.xlsx_parts import (
    item_text,
    read_date_styles,
    read_shared_strings,
    read_workbook,
    unescape,
)
from exporter.imports.readers.zip_guard import corrupt

VALUE_TAG = f"{MAIN_NS}v"
INLINE_TAG = f"{MAIN_NS}is"
BOOLEAN_TEXT = {"1": True, "0": False, "true": True, "false": False}


class SheetContext:
    """What decoding one sheet's cells needs from the rest of the workbook."""

    def __init__(self, strings: StringTable, date_styles: frozenset[int], date1904: bool) -> None:
        self.strings = strings
        self.date_styles = date_styles
        self.date1904 = date1904
        self.style_is_date: dict[str, bool] = {}

    def is_date_style(self, style: str) -> bool:
        """Whether the cell style ``s`` shows its number as a date (remembered: a sheet uses
        a handful of styles in every one of its cells)."""
        known = self.style_is_date.get(style)
        if known is None:
            known = self.style_is_date[style] = int(style) in self.date_styles
        return known


def read_xlsx(archive: zipfile.ZipFile, guard: RowGuard) -> Iterator[Sheet]:
    """Every sheet in the workbook's order. A formula cell gives the value Excel cached
    when it last saved the file; nothing is evaluated."""
    parts = read_workbook(archive)
    date_styles = read_date_styles(archive, parts.styles_part)
    strings = read_shared_strings(archive, parts.shared_strings_part, guard.limits)
    try:
        context = SheetContext(strings, date_styles, parts.date1904)
        for sheet in parts.sheets:
            yield Sheet(sheet.name, sheet_rows(archive, sheet.part, sheet.name, context, guard))
    finally:
        strings.close()


def sheet_rows(
    archive: zipfile.ZipFile, part: str, name: str, context: SheetContext, guard: RowGuard
) -> Iterator[Row]:
    previous = 0
    for piece in scan_part(archive, part, SHEET_ROWS):
        if isinstance(piece, PlainRun):
            for number, cells in plain_rows(piece, previous, name, context, guard.limits):
                previous = number
                guard.check(name, number, cells)
                yield number, cells
            continue
        try:
            number = int(piece.get("r") or previous + 1)
            cells = row_cells(piece, name, context, guard.limits)
        except (ValueError, IndexError, KeyError) as exc:
            raise corrupt_row(exc, previous, name) from exc
        forget(piece)
        previous = number
        guard.check(name, number, cells)
        yield number, cells


def plain_rows(
    run: PlainRun, previous: int, sheet: str, context: SheetContext, limits: ReadLimits
) -> Iterator[Row]:
    """The rows of a plain run, read as ``row_cells`` reads their elements."""
    max_columns = limits.max_columns
    number = 0
    cells: list[CellValue] | None = None
    try:
        for is_row, reference, letters, style, kind, value, inline, text in items_of(run.text):
            if is_row:
                if cells is not None:
                    yield number, cells
                    previous = number
                number = int(reference) if reference else previous + 1
                cells = []
                continue
            # A plain run begins with a row: the grammar admits cells only inside one.
            assert cells is not None
            index = letters_index(letters) if letters else len(cells)
            if index == len(cells) and index < max_columns:
                cells.append(plain_value(kind, style, value, inline, text, context))
            else:
                make_room(cells, index, sheet, max_columns)
                cells[index] = plain_value(kind, style, value, inline, text, context)
    except (ValueError, IndexError, KeyError) as exc:
        raise corrupt_row(exc, previous, sheet) from exc
    if cells is not None:
        yield number, cells


def plain_value(
    kind: str, style: str, value: str, inline: str, text: str, context: SheetContext
) -> CellValue:
    if inline:
        return text if "&" not in text and "_x" not in text else unescape(xml_text(text))
    if not value:
        return None
    if "&" in value:
        value = xml_text(value)
    if not kind:
        return number_value(value, style or None, context)
    if kind == "s":
        return context.strings[int(value)]
    return typed_value(kind, value, style or None, context)


def make_room(cells: list[CellValue], index: int, sheet: str, limit: int) -> None:
    """Make ``cells[index]`` a place for a cell's value (the columns skipped stay empty);
    refuse a column past the limit before the cell's value is read."""
    if index >= limit:
        raise too_many_columns(sheet, index + 1, limit)
    if index >= len(cells):
        cells.extend([None] * (index + 1 - len(cells)))


def corrupt_row(exc: Exception, previous: int, sheet: str) -> CorruptUpload:
    return corrupt(ValueError(f"row {previous + 1} of sheet {sheet!r}: {exc}"))


def row_cells(row: Any, sheet: str, context: SheetContext, limits: ReadLimits) -> list[CellValue]:
    cells: list[CellValue] = []
    for cell in row:
        reference = cell.get("r")
        index = column_index(reference) if reference else len(cells)
        make_room(cells, index, sheet, limits.max_columns)
        cells[index] = cell_value(cell, context)
    return cells


def column_index(reference: str) -> int:
    """B7 → 1: the 0-based column of a cell reference."""
    return letters_index(reference.rstrip("0123456789"))


@functools.lru_cache(maxsize=1024)
def letters_index(letters: str) -> int:
    index = 0
    if not letters:
        raise ValueError("a cell reference with no column")
    for char in letters:
        if not "A" <= char <= "Z":
            raise ValueError(f"{letters!r} is no column")
        index = index * 26 + ord(char) - 64
    return index - 1


def cell_value(cell: Any, context: SheetContext) -> CellValue:
    kind = cell.get("t", "n")
    # The children are walked rather than looked up by path: lxml parses a path on every call,
    # which cost a third of the time of reading a sheet.
    value = None
    for child in cell:
        if child.tag == VALUE_TAG:
            value = child.text
        elif child.tag == INLINE_TAG:
            return item_text(child)
    if value is None:
        return None
    return typed_value(kind, value, cell.get("s"), context)


def typed_value(kind: str, value: str, style: str | None, context: SheetContext) -> CellValue:
    """A cell's value from its type (t), the text of its <v> and its style (s)."""
    if kind == "s":
        return context.strings[int(value)]
    if kind == "n":
        return number_value(value, style, context)
    if kind == "b":
        return BOOLEAN_TEXT[value.lower()]
    if kind == "d":
        return datetime.datetime.fromisoformat(value)
    # "str" (a formula's text result) and "e" (an error such as #DIV/0!) are text.
    return unescape(value)


def number_value(text: str, style: str | None, context: SheetContext) -> CellValue:
    if style is not None and context.is_date_style(style):
        return serial_to_datetime(float(text), context.date1904)
    try:
        return int(text)
    except ValueError:
        return float(text)
