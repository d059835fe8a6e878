"""Rows of an uploaded xlsb (Excel's binary workbook), read by pyxlsb.

pyxlsb gives no cell's style, so a date comes as its serial number: the caller that knows a
column holds dates converts it (``excel_dates.serial_to_datetime``).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from typing import Any

from pyxlsb import Workbook

from exporter.imports.readers.base import CellValue, Row, RowGuard, Sheet, too_many_columns
from exporter.imports.readers.zip_guard import corrupt

# What pyxlsb raises on records that break off or point outside the sheet.
PYXLSB_FAILURES = (ValueError, IndexError, KeyError, TypeError, struct.error, EOFError)


def read_xlsb(archive: zipfile.ZipFile, guard: RowGuard) -> Iterator[Sheet]:
    """Every sheet in the workbook's order; formula cells give their cached value."""
    try:
        workbook = Workbook(archive)
    except (*PYXLSB_FAILURES, zipfile.BadZipFile) as exc:
        raise corrupt(exc) from exc
    try:
        for index, name in enumerate(workbook.sheets, start=1):
            yield Sheet(name, sheet_rows(workbook, index, name, guard))
    finally:
        # Not workbook.close(): that closes the archive, which its opener closes.
        if workbook.stringtable is not None:
            workbook.stringtable.close()


def sheet_rows(workbook: Any, index: int, name: str, guard: RowGuard) -> Iterator[Row]:
    try:
        with workbook.get_sheet(index) as sheet:
            check_width(sheet, name, guard)
            # sparse: a gap of empty rows is skipped, not yielded row by row.
            for row in sheet.rows(sparse=True):
                number, cells = row_values(row)
                guard.check(name, number, cells)
                yield number, cells
    except (*PYXLSB_FAILURES, zipfile.BadZipFile) as exc:
        raise corrupt(exc) from exc


def check_width(sheet: Any, name: str, guard: RowGuard) -> None:
    """pyxlsb makes every row as wide as the sheet's declared dimension: refuse a dimension
    wider than any sheet may be before it allocates rows that wide."""
    dimension = sheet.dimension
    if dimension is None:
        raise corrupt(ValueError(f"sheet {name!r} declares no dimension"))
    width = dimension.c + dimension.w
    if width > guard.limits.max_columns:
        raise too_many_columns(name, width, guard.limits.max_columns)


def row_values(row: list[Any]) -> Row:
    cells: list[CellValue] = [cell.v for cell in row]
    while cells and cells[-1] is None:
        cells.pop()
    return row[0].r + 1, cells
