"""Rows of an uploaded xlsb (Excel's binary workbook), read by pyxlsb.

A number whose cell style shows a date comes as a ``datetime``, as in an xlsx.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from typing import Any

from pyxlsb import Workbook, biff12

from exporter.imports.readers.base import (
    LAST_SHEET_ROW,
    CellValue,
    Row,
    RowGuard,
    Sheet,
    row_outside,
    too_many_columns,
)
from exporter.imports.readers.excel_dates import serial_to_datetime
from exporter.imports.readers.xlsb_parts import XlsbDates, read_dates
from exporter.imports.readers.zip_guard import corrupt

# What pyxlsb raises on records that break off or point outside the sheet.
PYXLSB_FAILURES = (ValueError, IndexError, KeyError, TypeError, struct.error, EOFError)
CELL_RECORDS = range(biff12.BLANK, biff12.FORMULA_BOOLERR + 1)
NUMBER_RECORDS = frozenset([biff12.NUM, biff12.FLOAT, biff12.FORMULA_FLOAT])
# A cell record's iStyleRef is the low 24 bits of its style field (a phonetic flag is above).
STYLE_INDEX = 0xFFFFFF


def read_xlsb(archive: zipfile.ZipFile, guard: RowGuard) -> Iterator[Sheet]:
    """Every sheet in the workbook's order; formula cells give their cached value."""
    try:
        dates = read_dates(archive)
        workbook = Workbook(archive)
    except (*PYXLSB_FAILURES, zipfile.BadZipFile) as exc:
        raise corrupt(exc) from exc
    try:
        for index, name in enumerate(workbook.sheets, start=1):
            yield Sheet(name, sheet_rows(workbook, dates, index, name, guard))
    finally:
        # Not workbook.close(): that closes the archive, which its opener closes.
        if workbook.stringtable is not None:
            workbook.stringtable.close()


def sheet_rows(
    workbook: Any, dates: XlsbDates, index: int, name: str, guard: RowGuard
) -> Iterator[Row]:
    try:
        with workbook.get_sheet(index) as sheet:
            width = check_width(sheet, name, guard)
            # Not sheet.rows(): it drops each cell's style. get_sheet leaves the sheet's record
            # reader at the start of its cells.
            for number, cells in record_rows(sheet._reader, width, workbook.stringtable, dates):
                if not 1 <= number <= LAST_SHEET_ROW:
                    raise row_outside(name, number)
                guard.check(name, number, cells)
                yield number, cells
    except (*PYXLSB_FAILURES, zipfile.BadZipFile) as exc:
        raise corrupt(exc) from exc


def check_width(sheet: Any, name: str, guard: RowGuard) -> int:
    """Every row is made as wide as the sheet's declared dimension: refuse a dimension wider
    than any sheet may be before rows that wide are allocated."""
    dimension = sheet.dimension
    if dimension is None:
        raise corrupt(ValueError(f"sheet {name!r} declares no dimension"))
    width: int = dimension.c + dimension.w
    if width > guard.limits.max_columns:
        raise too_many_columns(name, width, guard.limits.max_columns)
    return width


def record_rows(records: Any, width: int, strings: Any, dates: XlsbDates) -> Iterator[Row]:
    """The rows of a sheet's cell records; a gap of empty rows is skipped, as pyxlsb's
    rows(sparse=True) does, and a row's records split in two are one row."""
    number: int | None = None
    cells: list[CellValue] = []
    for kind, item in records:
        if kind == biff12.ROW and item.r + 1 != number:
            if number is not None:
                yield finished(number, cells)
            number, cells = item.r + 1, [None] * width
        elif kind in CELL_RECORDS:
            cells[item.c] = cell_value(kind, item, strings, dates)
        elif kind == biff12.SHEETDATA_END:
            if number is not None:
                yield finished(number, cells)
            return
    # The records ran out before the sheet's data ended: a sheet cut short, whose rows so far
    # are not all of it.
    raise ValueError("the sheet's records break off before the end of its data")


def cell_value(kind: int, item: Any, strings: Any, dates: XlsbDates) -> CellValue:
    value: CellValue = strings[item.v] if kind == biff12.STRING and strings is not None else item.v
    if kind in NUMBER_RECORDS and item.style & STYLE_INDEX in dates.styles:
        return serial_to_datetime(item.v, dates.date1904)
    return value


def finished(number: int, cells: list[CellValue]) -> Row:
    while cells and cells[-1] is None:
        cells.pop()
    return number, cells
