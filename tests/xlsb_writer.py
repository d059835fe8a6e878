"""A test-only xlsb writer: just the records that Excel writes and pyxlsb reads, so the tests
can build the binary workbooks they upload (no Python package writes them correctly; see
NOTES.md). Strings are counted in UTF-16 units, as the format measures them."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

WORKBOOK, WORKBOOK_END, SHEETS, SHEETS_END, SHEET = 0x183, 0x184, 0x18F, 0x190, 0x19C
WORKSHEET, WORKSHEET_END, DIMENSION, SHEETDATA, SHEETDATA_END = 0x181, 0x182, 0x194, 0x191, 0x192
ROW, BOOL, FLOAT, STRING, FORMULA_STRING, FORMULA_FLOAT = 0x00, 0x04, 0x05, 0x07, 0x08, 0x09
SST, SST_END, SI = 0x19F, 0x1A0, 0x13
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}'
    "</Relationships>"
)
RELATIONSHIP = (
    '<Relationship Id="rId{n}" Target="worksheets/sheet{n}.bin" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/worksheet"/>'
)

XlsbCell = str | float | bool | None


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


def cell_record(column: int, value: XlsbCell | Formula, strings: list[str]) -> bytes:
    head = struct.pack("<II", column, 0)
    if isinstance(value, Formula):
        if isinstance(value.cached, str):
            return record(FORMULA_STRING, head + wide(value.cached) + b"\x00\x00")
        return record(FORMULA_FLOAT, head + struct.pack("<dH", value.cached, 0))
    if isinstance(value, bool):
        return record(BOOL, head + bytes([value]))
    if isinstance(value, str):
        strings.append(value)
        return record(STRING, head + struct.pack("<I", len(strings) - 1))
    assert value is not None
    return record(FLOAT, head + struct.pack("<d", value))


def sheet_part(rows: dict[int, list[XlsbCell | Formula]], strings: list[str]) -> bytes:
    width = max((len(cells) for cells in rows.values()), default=1)
    last_row = max(rows, default=1) - 1
    parts = [
        record(WORKSHEET),
        record(DIMENSION, struct.pack("<IIII", 0, last_row, 0, width - 1)),
        record(SHEETDATA),
    ]
    for number, cells in sorted(rows.items()):
        parts.append(record(ROW, struct.pack("<I", number - 1) + bytes(17)))
        parts.extend(
            cell_record(column, value, strings)
            for column, value in enumerate(cells)
            if value is not None
        )
    parts += [record(SHEETDATA_END), record(WORKSHEET_END)]
    return b"".join(parts)


def write_xlsb(path: Path, sheets: dict[str, dict[int, list[XlsbCell | Formula]]]) -> None:
    """An xlsb holding ``sheets``: name → {row number as Excel shows it: cells from A on}."""
    strings: list[str] = []
    sheet_parts = [sheet_part(rows, strings) for rows in sheets.values()]
    book = [record(WORKBOOK), record(SHEETS)]
    for n, name in enumerate(sheets, start=1):
        book.append(record(SHEET, struct.pack("<II", 0, n) + wide(f"rId{n}") + wide(name)))
    book += [record(SHEETS_END), record(WORKBOOK_END)]
    sst = [record(SST, struct.pack("<II", len(strings), len(strings)))]
    sst += [record(SI, b"\x00" + wide(text)) for text in strings]
    sst.append(record(SST_END))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.bin", b"".join(book))
        archive.writestr(
            "xl/_rels/workbook.bin.rels",
            RELS.format("".join(RELATIONSHIP.format(n=n) for n in range(1, len(sheets) + 1))),
        )
        archive.writestr("xl/sharedStrings.bin", b"".join(sst))
        for n, part in enumerate(sheet_parts, start=1):
            archive.writestr(f"xl/worksheets/sheet{n}.bin", part)
