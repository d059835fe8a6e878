"""One workbook from parts deflated apart: deflate streams spliced into zip members, their
CRC-32s combined, the result a zip and a workbook that readers open."""

from __future__ import annotations

import random
import zipfile
import zlib
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from exporter.errors import FileTooLarge
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats.xlsx_workbook import XlsxExportWriter
from exporter.exports.formats.zip_splice import (
    ZIP32_LIMIT,
    Deflated,
    DeflateStream,
    SheetRows,
    assemble_workbook,
    crc32_combine,
    deflate_bytes,
)
from exporter.exports.ranges import plan_ranges
from tests.support import xlsx_rows

COLUMNS = (
    Column("ID", "id", ColumnKind.INTEGER),
    Column("名字", "name"),
    Column("时间", "at", ColumnKind.DATETIME),
)
HEADER = ["ID", "名字", "时间"]


def test_crc32_combine_agrees_with_zlib_on_the_joined_bytes() -> None:
    generator = random.Random(7)
    for _ in range(200):
        first = generator.randbytes(generator.randint(0, 3000))
        second = generator.randbytes(generator.randint(0, 3000))
        combined = crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
        assert combined == zlib.crc32(first + second)


def deflate_stream(path: Path, *chunks: bytes) -> Deflated:
    stream = DeflateStream(path)
    for chunk in chunks:
        stream.write(chunk)
    return stream.finish()


def test_streams_deflated_apart_inflate_as_one_when_only_the_last_is_final(
    tmp_path: Path,
) -> None:
    middle = "行 1 😀".encode() * 500
    pieces = [b"<sheetData>", middle, b"", b"</sheetData>"]

    streams = [
        deflate_bytes(pieces[0], final=False),
        # ISA-L's streams splice with zlib's; written in two chunks, one stream.
        deflate_stream(tmp_path / "middle.deflate", middle[:1000], middle[1000:]),
        deflate_bytes(pieces[2], final=False),
        deflate_bytes(pieces[3], final=True),
    ]

    raw = b"".join(piece.path.read_bytes() if piece.path else piece.data for piece in streams)
    assert zlib.decompress(raw, -zlib.MAX_WBITS) == b"".join(pieces)
    assert [piece.size for piece in streams] == [len(piece) for piece in pieces]
    assert [piece.compressed_size for piece in streams] == [
        len(piece.path.read_bytes() if piece.path else piece.data) for piece in streams
    ]


def row_xml(data_row: int, row: tuple[int, str, datetime, None]) -> bytes:
    """A data row of COLUMNS as xlsxwriter writes it (a date's serial number with style 2)."""
    number, name, at, _ = row
    serial = (at - datetime(1899, 12, 31)).total_seconds() / 86_400 + 1
    r = data_row + 1
    return (
        f'<row r="{r}"><c r="A{r}"><v>{number}</v></c>'
        f'<c r="B{r}" t="inlineStr"><is><t>{name}</t></is></c>'
        f'<c r="C{r}" s="2"><v>{serial:.16G}</v></c></row>'
    ).encode()


def frame_with_sheets(path: Path, sheets: int) -> Path:
    """A workbook of ``sheets`` sheets holding only their header rows."""
    frame = XlsxExportWriter(path, "表", COLUMNS)
    for _ in range(sheets - 1):
        frame.add_sheet()
    frame.close()
    return path


def test_parts_written_apart_splice_into_one_workbook_with_a_sheet_per_limit(
    tmp_path: Path,
) -> None:
    rows = [(n, f"名字 {n}", datetime(2026, 1, 1, 8, 0, n % 60), None) for n in range(1, 8)]
    ranges = plan_ranges(len(rows), 2, max_sheet_rows=3)
    parts = [
        deflate_stream(
            tmp_path / f"part-{index}.deflate",
            *(
                row_xml(part.first_row + number, rows[part.offset + number])
                for number in range(part.limit)
            ),
        )
        for index, part in enumerate(ranges)
    ]
    sheets = [
        SheetRows(
            rows=sum(r.limit for r in ranges if r.sheet == number),
            parts=[p for r, p in zip(ranges, parts, strict=True) if r.sheet == number],
        )
        for number in (1, 2, 3)
    ]

    assemble_workbook(frame_with_sheets(tmp_path / "frame.xlsx", 3), sheets, tmp_path / "out.xlsx")

    with zipfile.ZipFile(tmp_path / "out.xlsx") as archive:
        assert archive.testzip() is None  # every member inflates to its size and CRC-32
    assert xlsx_rows((tmp_path / "out.xlsx").read_bytes()) == [
        HEADER,
        *(list(row[:3]) for row in rows[0:3]),
        HEADER,
        *(list(row[:3]) for row in rows[3:6]),
        HEADER,
        list(rows[6][:3]),
    ]
    workbook = openpyxl.load_workbook(tmp_path / "out.xlsx", read_only=True)
    # Readers that trust the dimension see every spliced row.
    assert [sheet.calculate_dimension() for sheet in workbook.worksheets] == [
        "A1:C4",
        "A1:C4",
        "A1:C2",
    ]
    workbook.close()


def test_the_frames_other_members_are_carried_over_byte_for_byte(tmp_path: Path) -> None:
    frame = frame_with_sheets(tmp_path / "frame.xlsx", 1)

    assemble_workbook(frame, [SheetRows(rows=0, parts=[])], tmp_path / "out.xlsx")

    with zipfile.ZipFile(frame) as before, zipfile.ZipFile(tmp_path / "out.xlsx") as after:
        assert after.namelist() == before.namelist()
        for name in before.namelist():
            if name != "xl/worksheets/sheet1.xml":
                assert after.read(name) == before.read(name), name
                assert after.getinfo(name).CRC == before.getinfo(name).CRC, name
        assert after.read("xl/worksheets/sheet1.xml") == before.read("xl/worksheets/sheet1.xml")
    assert xlsx_rows((tmp_path / "out.xlsx").read_bytes()) == [HEADER]


def test_a_workbook_past_the_zip_formats_4_gib_is_refused(tmp_path: Path) -> None:
    frame = frame_with_sheets(tmp_path / "frame.xlsx", 1)
    # Only sizes are summed before anything is written: no 4 GiB of data is needed.
    huge = Deflated(path=None, data=b"", crc=0, size=ZIP32_LIMIT, compressed_size=1)

    with pytest.raises(FileTooLarge, match="larger than 4 GiB"):
        assemble_workbook(frame, [SheetRows(rows=1, parts=[huge])], tmp_path / "out.xlsx")
