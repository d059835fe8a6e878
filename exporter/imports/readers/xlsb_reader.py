"""Rows of an uploaded xlsb (Excel's binary workbook), read by pyxlsb.

A number whose cell style shows a date comes as a ``datetime``, as in an xlsx.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from pyxlsb import biff12
from pyxlsb.reader import BIFF12Reader
from pyxlsb.worksheet import Worksheet

from exporter.imports.readers.base import CellValue, Row, RowGuard, Sheet, too_many_columns
from exporter.imports.readers.excel_dates import serial_to_datetime
from exporter.imports.readers.safe_xml import PACKAGE_REL_NS, iter_elements
from exporter.imports.readers.string_table import StringTable
from exporter.imports.readers.xlsb_parts import WORKBOOK_PART, XlsbDates, read_dates
from exporter.imports.readers.xlsx_parts import part_path
from exporter.imports.readers.zip_guard import corrupt

# What pyxlsb raises on records that break off or point outside the sheet.
PYXLSB_FAILURES = (ValueError, IndexError, KeyError, TypeError, struct.error, EOFError)
CELL_RECORDS = range(biff12.BLANK, biff12.FORMULA_BOOLERR + 1)
NUMBER_RECORDS = frozenset([biff12.NUM, biff12.FLOAT, biff12.FORMULA_FLOAT])
STRINGS_PART = "xl/sharedStrings.bin"
COPY_BYTES = 1024 * 1024
# A cell record's iStyleRef is the low 24 bits of its style field (a phonetic flag is above).
STYLE_INDEX = 0xFFFFFF


def read_xlsb(archive: zipfile.ZipFile, guard: RowGuard) -> Iterator[Sheet]:
    """Every sheet in the workbook's order; formula cells give their cached value."""
    try:
        dates = read_dates(archive)
        sheets = read_sheets(archive)
        strings = read_strings(archive)
    except (*PYXLSB_FAILURES, zipfile.BadZipFile) as exc:
        raise corrupt(exc) from exc
    try:
        for name, part in sheets:
            yield Sheet(name, sheet_rows(archive, part, strings, dates, name, guard))
    finally:
        strings.close()


def read_sheets(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """Each sheet's name and part, in the workbook's order."""
    targets = {
        rel.get("Id", ""): part_path(rel.get("Target", ""))
        for rel in iter_elements(
            archive, "xl/_rels/workbook.bin.rels", (f"{PACKAGE_REL_NS}Relationship",)
        )
    }
    sheets = []
    for kind, item in BIFF12Reader(fp=io.BytesIO(archive.read(WORKBOOK_PART))):
        if kind == biff12.SHEET:
            if item.rId not in targets:
                raise corrupt(ValueError(f"sheet {item.name!r} has no part"))
            sheets.append((item.name, targets[item.rId]))
        elif kind == biff12.SHEETS_END:
            break
    return sheets


def read_strings(archive: zipfile.ZipFile) -> StringTable:
    """The shared strings, read as the sheet is: from a copy on disk, a record at a time
    (pyxlsb's own Workbook reads the part whole into memory, and keeps every string there)."""
    strings = StringTable()
    try:
        if STRINGS_PART in archive.namelist():
            with unpacked(archive, STRINGS_PART) as part:
                for kind, item in BIFF12Reader(fp=part):
                    # A string too long for a cell is refused where a cell holds it, by name.
                    if kind == biff12.SI:
                        strings.append(item.t or "")
                    elif kind == biff12.SST_END:
                        break
    except BaseException:
        strings.close()
        raise
    return strings.seal()


@contextlib.contextmanager
def unpacked(archive: zipfile.ZipFile, part: str) -> Iterator[IO[bytes]]:
    """The part, unpacked into a temporary file a piece at a time."""
    with tempfile.TemporaryFile() as copy:
        with archive.open(part) as member:
            shutil.copyfileobj(member, copy, COPY_BYTES)
        copy.seek(0)
        yield copy


def sheet_rows(
    archive: zipfile.ZipFile,
    part: str,
    strings: StringTable,
    dates: XlsbDates,
    name: str,
    guard: RowGuard,
) -> Iterator[Row]:
    try:
        with unpacked(archive, part) as copy:
            sheet = Worksheet(name=name, fp=copy)
            width = check_width(sheet, name, guard)
            # Not sheet.rows(): it drops each cell's style. The Worksheet leaves its record
            # reader at the start of the cells.
            for number, cells in record_rows(sheet._reader, width, strings, dates):
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


def record_rows(records: Any, width: int, strings: StringTable, dates: XlsbDates) -> Iterator[Row]:
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


def cell_value(kind: int, item: Any, strings: StringTable, dates: XlsbDates) -> CellValue:
    value: CellValue = strings[item.v] if kind == biff12.STRING else item.v
    if kind in NUMBER_RECORDS and item.style & STYLE_INDEX in dates.styles:
        return serial_to_datetime(item.v, dates.date1904)
    return value


def finished(number: int, cells: list[CellValue]) -> Row:
    while cells and cells[-1] is None:
        cells.pop()
    return number, cells
