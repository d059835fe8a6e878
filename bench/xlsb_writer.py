"""An xlsb writer: just the records that Excel writes and pyxlsb reads, so the tests and the
bench can build the binary workbooks they upload (no Python package writes them correctly).
Strings are counted in UTF-16 units, as the format measures them, and kept once each in the
shared strings, as Excel keeps them. Rows stream into the archive: a million-row sheet is never
held whole."""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

# Record ids as their bytes read (little-endian), the way pyxlsb's biff12 names them: 615
# (BrtBeginFmts) is written 0xE7 0x04, so 0x4E7.
WORKBOOK, WORKBOOK_END, SHEETS, SHEETS_END, SHEET = 0x183, 0x184, 0x18F, 0x190, 0x19C
WORKSHEET, WORKSHEET_END, DIMENSION, SHEETDATA, SHEETDATA_END = 0x181, 0x182, 0x194, 0x191, 0x192
ROW, RK, BOOL, FLOAT, STRING, FORMULA_STRING, FORMULA_FLOAT = 0, 2, 4, 5, 7, 8, 9
SST, SST_END, SI = 0x19F, 0x1A0, 0x13
WB_PROP = 0x199
STYLESHEET, STYLESHEET_END, FMTS, FMTS_END, FMT, XF = 0x296, 0x297, 0x4E7, 0x4E8, 0x2C, 0x2F
CELL_STYLE_XFS, CELL_STYLE_XFS_END, CELL_XFS, CELL_XFS_END = 0x4F2, 0x4F3, 0x4E9, 0x4EA
# Every workbook gets these cell styles (index: number format id); custom formats are numbered
# from 164, as Excel numbers them.
CUSTOM_FORMATS = {164: "yyyy-mm-dd hh:mm", 165: '0.0 "days"'}
GENERAL_STYLE, DATE_STYLE, DATETIME_STYLE, NUMBER_STYLE, DAYS_STYLE = range(5)
CELL_STYLE_FORMATS = [0, 14, 164, 4, 165]
# iStyleRef is a cell's style field's low 24 bits: Excel may set the phonetic flag above them.
PHONETIC_FLAG = 0x01000000
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}'
    "</Relationships>"
)
RELATIONSHIP = (
    '<Relationship Id="rId{n}" Target="worksheets/sheet{n}.bin" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/worksheet"/>'
)


class Styled:
    """A number in one of the cell styles above (``style`` may carry ``PHONETIC_FLAG``)."""

    def __init__(self, value: float, style: int) -> None:
        self.value = value
        self.style = style


XlsbCell = str | float | bool | Styled | None


class Formula:
    """A formula cell's cached value (the formula itself is not written: no reader needs it)."""

    def __init__(self, cached: str | float) -> None:
        self.cached = cached


def record(kind: int, body: bytes = b"") -> bytes:
    kind_bytes = bytes([kind & 0xFF]) + (bytes([kind >> 8]) if kind >= 0x80 else b"")
    length, size = b"", len(body)
    while True:
        low, size = size & 0x7F, size >> 7
        length += bytes([low | (0x80 if size else 0)])
        if not size:
            return kind_bytes + length + body


def wide(text: str) -> bytes:
    encoded = text.encode("utf-16-le")
    return struct.pack("<I", len(encoded) // 2) + encoded


class SharedStrings:
    """The workbook's strings, each once, their records spooled to a temporary file."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._records = tempfile.TemporaryFile()
        self.references = 0

    def add(self, text: str) -> int:
        self.references += 1
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self._index)
            self._records.write(record(SI, b"\x00" + wide(text)))
        return index

    def write_part(self, out: IO[bytes]) -> None:
        out.write(record(SST, struct.pack("<II", self.references, len(self._index))))
        self._records.seek(0)
        shutil.copyfileobj(self._records, out)
        out.write(record(SST_END))

    def close(self) -> None:
        self._records.close()


def cell_record(column: int, value: XlsbCell | Formula, strings: SharedStrings) -> bytes:
    if isinstance(value, Styled):
        head = struct.pack("<II", column, value.style)
        if value.value == int(value.value) and abs(value.value) < 2**29:
            # Excel writes a whole number as an RK: the integer shifted past two flag bits.
            return record(RK, head + struct.pack("<i", int(value.value) << 2 | 0x02))
        return record(FLOAT, head + struct.pack("<d", value.value))
    head = struct.pack("<II", column, 0)
    if isinstance(value, Formula):
        if isinstance(value.cached, str):
            return record(FORMULA_STRING, head + wide(value.cached) + b"\x00\x00")
        return record(FORMULA_FLOAT, head + struct.pack("<dH", value.cached, 0))
    if isinstance(value, bool):
        return record(BOOL, head + bytes([value]))
    if isinstance(value, str):
        return record(STRING, head + struct.pack("<I", strings.add(value)))
    assert value is not None
    return record(FLOAT, head + struct.pack("<d", value))


def xf(format_id: int, parent: int = 0) -> bytes:
    # BrtXF: parent style, number format, font, fill, border, rotation, indent, flags.
    return record(XF, struct.pack("<HHHHHBBHH", parent, format_id, 0, 0, 0, 0, 0, 0, 0))


def styles_part() -> bytes:
    parts = [record(STYLESHEET), record(FMTS, struct.pack("<I", len(CUSTOM_FORMATS)))]
    parts += [record(FMT, struct.pack("<H", n) + wide(code)) for n, code in CUSTOM_FORMATS.items()]
    # The named style's format is a date's, unlike any real workbook's, so that a reader taking
    # it for cell style 0 reads General numbers as dates.
    parts += [record(FMTS_END), record(CELL_STYLE_XFS, struct.pack("<I", 1)), xf(14, 0xFFFF)]
    parts += [record(CELL_STYLE_XFS_END)]
    parts.append(record(CELL_XFS, struct.pack("<I", len(CELL_STYLE_FORMATS))))
    parts += [xf(format_id) for format_id in CELL_STYLE_FORMATS]
    parts += [record(CELL_XFS_END), record(STYLESHEET_END)]
    return b"".join(parts)


Cells = Sequence[XlsbCell | Formula]


class XlsbWriter:
    """An xlsb written a sheet at a time; use as a context manager.

    ``add_sheet`` streams a sheet's rows into the archive; the shared strings, styles and
    workbook parts are written on close.
    """

    def __init__(self, path: Path, *, date1904: bool = False) -> None:
        self._archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self._strings = SharedStrings()
        self._names: list[str] = []
        self._date1904 = date1904

    def add_sheet(
        self, name: str, rows: Iterable[tuple[int, Cells]], *, last_row: int, width: int
    ) -> None:
        """A sheet of ``rows`` (row number as Excel shows it, cells from A on) in ascending
        order; its dimension is rows 1 to ``last_row`` and ``width`` columns."""
        self._names.append(name)
        part = f"xl/worksheets/sheet{len(self._names)}.bin"
        with self._archive.open(part, "w", force_zip64=True) as out:
            out.write(record(WORKSHEET))
            out.write(record(DIMENSION, struct.pack("<IIII", 0, last_row - 1, 0, width - 1)))
            out.write(record(SHEETDATA))
            for number, cells in rows:
                out.write(record(ROW, struct.pack("<I", number - 1) + bytes(17)))
                out.write(
                    b"".join(
                        cell_record(column, value, self._strings)
                        for column, value in enumerate(cells)
                        if value is not None
                    )
                )
            out.write(record(SHEETDATA_END) + record(WORKSHEET_END))

    def close(self) -> None:
        # BrtWbProp: flags (f1904 the lowest bit), theme version, code name.
        book = [
            record(WORKBOOK),
            record(WB_PROP, struct.pack("<II", int(self._date1904), 0) + wide("")),
            record(SHEETS),
        ]
        for n, name in enumerate(self._names, start=1):
            book.append(record(SHEET, struct.pack("<II", 0, n) + wide(f"rId{n}") + wide(name)))
        book += [record(SHEETS_END), record(WORKBOOK_END)]
        try:
            self._archive.writestr("xl/workbook.bin", b"".join(book))
            relationships = range(1, len(self._names) + 1)
            self._archive.writestr(
                "xl/_rels/workbook.bin.rels",
                RELS.format("".join(RELATIONSHIP.format(n=n) for n in relationships)),
            )
            with self._archive.open("xl/sharedStrings.bin", "w", force_zip64=True) as out:
                self._strings.write_part(out)
            self._archive.writestr("xl/styles.bin", styles_part())
        finally:
            self._strings.close()
            self._archive.close()

    def __enter__(self) -> XlsbWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_xlsb(
    path: Path, sheets: dict[str, dict[int, list[XlsbCell | Formula]]], date1904: bool = False
) -> None:
    """An xlsb holding ``sheets``: name → {row number as Excel shows it: cells from A on}."""
    with XlsbWriter(path, date1904=date1904) as book:
        for name, rows in sheets.items():
            book.add_sheet(
                name,
                sorted(rows.items()),
                last_row=max(rows, default=1),
                width=max((len(cells) for cells in rows.values()), default=1),
            )
