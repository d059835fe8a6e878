"""Uploaded files read into numbered rows: csv in its encodings, xlsx written by xlsxwriter,
and hostile files (entity bombs, zip bombs, garbage, truncation, too many rows) refused with
their own codes. Every file is built here, in tmp_path."""

from __future__ import annotations

import datetime
import struct
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from bench.xlsb_writer import (
    CELL_XFS,
    DATE_STYLE,
    DATETIME_STYLE,
    DAYS_STYLE,
    DIMENSION,
    GENERAL_STYLE,
    NUMBER_STYLE,
    PHONETIC_FLAG,
    XF,
    Formula,
    Styled,
    XlsbCell,
    record,
    write_xlsb,
)
from exporter.imports.readers import (
    CellTooLong,
    CompressionTooHigh,
    CorruptUpload,
    MemberTooLarge,
    ReadLimits,
    TooManyColumns,
    TooManyImportRows,
    TooManyParts,
    UnsupportedUpload,
    UploadFormat,
    UploadRejected,
    XmlDtdRefused,
    read_upload,
    upload_format,
)
from exporter.imports.readers.base import CellValue
from exporter.imports.readers.excel_dates import is_date_format, serial_to_datetime
from exporter.imports.readers.xlsx_parts import unescape

LIMITS = ReadLimits()
WHEN = datetime.datetime(2024, 2, 29, 13, 45, 7)


def read_all(
    path: Path, limits: ReadLimits = LIMITS
) -> dict[str, list[tuple[int, list[CellValue]]]]:
    return {sheet.name: list(sheet.rows) for sheet in read_upload(path, limits)}


def refused(path: Path, error: type[UploadRejected], limits: ReadLimits = LIMITS) -> UploadRejected:
    with pytest.raises(error) as caught:
        read_all(path, limits)
    return caught.value


# csv


CSV_TEXT = '用户名,昵称\r\nalice,"Smith, ""Al"""\r\nbob,"two\r\nlines"\r\n中文,😀\r\n'
CSV_ROWS = [
    (1, ["用户名", "昵称"]),
    (2, ["alice", 'Smith, "Al"']),
    (3, ["bob", "two\r\nlines"]),
    (4, ["中文", "😀"]),
]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_each_encoding_reads_back_its_records_numbered_from_the_header(
    tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_bytes(CSV_TEXT.encode(encoding))

    assert upload_format(path, LIMITS) is UploadFormat.CSV
    assert read_all(path) == {"csv": CSV_ROWS}


def test_a_cell_spanning_lines_does_not_shift_the_row_numbers_after_it(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('a\n"1\n2\n3"\nafter\n', encoding="utf-8")

    assert read_all(path)["csv"] == [(1, ["a"]), (2, ["1\n2\n3"]), (3, ["after"])]


def test_csv_past_the_row_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("".join(f"{n}\n" for n in range(11)), encoding="utf-8")

    error = refused(path, TooManyImportRows, ReadLimits(max_rows=10))
    assert (error.code, error.params) == ("too_many_import_rows", {"limit": 10})
    assert len(read_all(path, ReadLimits(max_rows=11))["csv"]) == 11


def test_csv_cell_past_the_cell_limit_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("a,b\nx," + "y" * 40_000 + "\n", encoding="utf-8")

    error = refused(path, CellTooLong)
    assert error.code == "cell_too_long"
    assert error.params == {"sheet": "csv", "row": 2, "column": "B", "limit": 32_767}


def test_csv_with_an_unclosed_quote_stops_at_the_field_limit(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('a\n"' + "x\n" * 100_000, encoding="utf-8")

    assert refused(path, CellTooLong).params["row"] == 2


# detection


def test_binary_garbage_named_xlsx_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "accounts.xlsx"
    path.write_bytes(bytes(range(256)) * 64)

    with pytest.raises(UnsupportedUpload) as caught:
        upload_format(path, LIMITS)
    assert (caught.value.code, caught.value.status) == ("unsupported_file", 415)
    refused(path, UnsupportedUpload)


def test_a_zip_that_is_no_workbook_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "photos.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")

    refused(path, UnsupportedUpload)


# xlsx


def write_xlsx(path: Path, **options: object) -> None:
    workbook = xlsxwriter.Workbook(str(path), options)
    dates = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    first = workbook.add_worksheet("账户")
    first.write_row(0, 0, ["text", "中文", "😀 emoji", "_x0041_", '=HYPERLINK("x")'])
    first.write_string(0, 4, '=HYPERLINK("x")')
    first.write_row(1, 0, [42, 3.5, -7, True, False])
    first.write_datetime(2, 0, WHEN, dates)
    first.write_formula(2, 1, "=A2*2", None, 84)
    first.write_formula(2, 2, '="a"&"b"', None, "ab")
    first.write_string(5, 3, "after a gap")
    second = workbook.add_worksheet("second")
    second.write_string(0, 0, "two")
    workbook.add_worksheet("empty")
    workbook.close()


XLSX_SHEETS = {
    "账户": [
        (1, ["text", "中文", "😀 emoji", "_x0041_", '=HYPERLINK("x")']),
        (2, [42, 3.5, -7, True, False]),
        (3, [WHEN, 84, "ab"]),
        (6, [None, None, None, "after a gap"]),
    ],
    "second": [(1, ["two"])],
    "empty": [],
}


@pytest.mark.parametrize(
    "options",
    [{}, {"constant_memory": True}, {"date_1904": True}],
    ids=["shared strings", "inline strings", "1904 dates"],
)
def test_xlsx_reads_back_every_sheet_exactly(tmp_path: Path, options: dict[str, object]) -> None:
    path = tmp_path / "accounts.xlsx"
    write_xlsx(path, **options)

    assert upload_format(path, LIMITS) is UploadFormat.XLSX
    assert read_all(path) == XLSX_SHEETS


def test_escapes_decode_to_their_characters() -> None:
    assert unescape("_x0041_B") == "AB"
    assert unescape("_x005F_x0041_") == "_x0041_"
    assert unescape("_xD83D__xDE00_") == "😀"
    assert unescape("_x00zz_") == "_x00zz_"


def test_date_formats_are_told_from_number_formats() -> None:
    assert is_date_format(14, None) and is_date_format(57, None)
    assert not is_date_format(0, None) and not is_date_format(4, None)
    assert is_date_format(164, "yyyy/mm/dd;@") and is_date_format(165, "[h]:mm")
    assert is_date_format(166, '[$-804]yyyy"年"m"月"d"日"')
    assert not is_date_format(167, "0.00E+00") and not is_date_format(168, '[Red]#,##0;"dm"')
    assert serial_to_datetime(45351.5, date1904=False) == datetime.datetime(2024, 2, 29, 12)
    assert serial_to_datetime(1.0, date1904=False) == datetime.datetime(1900, 1, 1)
    assert serial_to_datetime(0.0, date1904=True) == datetime.datetime(1904, 1, 1)
    assert serial_to_datetime(60.0, date1904=False) == 60.0


def replace_part(source: Path, target: Path, part: str, content: bytes) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            data = content if member.filename == part else original.read(member)
            copy.writestr(member, data, zipfile.ZIP_DEFLATED)


ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE sst [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY file SYSTEM "file:///etc/passwd">
]>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">
<si><t>&f;&file;</t></si></sst>"""


def test_an_entity_bomb_in_the_shared_strings_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.xlsx"
    write_xlsx(plain)
    bomb = tmp_path / "bomb.xlsx"
    replace_part(plain, bomb, "xl/sharedStrings.xml", ENTITY_BOMB)

    error = refused(bomb, XmlDtdRefused)
    assert (error.code, error.params) == ("xml_dtd_refused", {"part": "xl/sharedStrings.xml"})


def test_a_dtd_in_a_sheet_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.xlsx"
    write_xlsx(plain)
    with zipfile.ZipFile(plain) as archive:
        sheet = archive.read("xl/worksheets/sheet2.xml")
    doctype = b'<!DOCTYPE worksheet [<!ENTITY x "y">]>'
    hostile = tmp_path / "hostile.xlsx"
    replace_part(
        plain, hostile, "xl/worksheets/sheet2.xml", sheet.replace(b"?>", b"?>" + doctype, 1)
    )

    with pytest.raises(XmlDtdRefused):
        for sheet_rows in read_upload(hostile, LIMITS):
            list(sheet_rows.rows)


def zip_bomb(path: Path, zeros: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", bytes(zeros))


def test_a_member_compressed_past_the_ratio_limit_is_a_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    zip_bomb(path, 2 * 1024 * 1024)
    limits = ReadLimits(ratio_floor_bytes=1024 * 1024)

    with pytest.raises(CompressionTooHigh) as caught:
        upload_format(path, limits)
    error = caught.value
    assert error.code == "compression_ratio_too_high"
    assert error.params["part"] == "xl/worksheets/sheet1.xml" and error.params["ratio"] > 100


def test_a_member_unpacking_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.xlsx"
    zip_bomb(path, 64 * 1024)

    error = refused(path, MemberTooLarge, ReadLimits(max_unpacked_bytes=32 * 1024))
    assert error.code == "unpacked_too_large" and error.params["bytes"] == 64 * 1024


def many_parts(path: Path, parts: int) -> None:
    """A workbook's zip with ``parts`` empty members besides (a directory of ~50 bytes each);
    past 65,535 members zipfile writes zip64's end records."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        for number in range(parts):
            archive.writestr(zipfile.ZipInfo(f"{number:x}"), b"")


@pytest.mark.parametrize("parts", [25_000, 70_000], ids=["zip", "zip64"])
def test_a_zip_whose_directory_is_larger_than_any_workbooks_is_refused_before_it_is_parsed(
    tmp_path: Path, parts: int
) -> None:
    path = tmp_path / "parts.xlsx"
    many_parts(path, parts)

    error = refused(path, TooManyParts)

    assert error.params["limit"] == 1024 * 1024
    assert error.params["bytes"] > 1024 * 1024
    with pytest.raises(TooManyParts):
        upload_format(path, LIMITS)


def test_a_zip_of_some_thousands_of_parts_is_read(tmp_path: Path) -> None:
    path = tmp_path / "parts.xlsx"
    many_parts(path, 5_000)

    assert upload_format(path, LIMITS) is UploadFormat.XLSX


def test_a_truncated_xlsx_is_corrupt(tmp_path: Path) -> None:
    plain = tmp_path / "plain.xlsx"
    write_xlsx(plain)
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])

    assert refused(truncated, CorruptUpload).code == "corrupt_file"


def test_a_sheet_whose_xml_breaks_off_is_corrupt(tmp_path: Path) -> None:
    plain = tmp_path / "plain.xlsx"
    write_xlsx(plain)
    with zipfile.ZipFile(plain) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    broken = tmp_path / "broken.xlsx"
    replace_part(plain, broken, "xl/worksheets/sheet1.xml", sheet[: len(sheet) // 2])

    refused(broken, CorruptUpload)


def test_xlsx_past_the_row_limit_counts_every_sheet(tmp_path: Path) -> None:
    path = tmp_path / "accounts.xlsx"
    write_xlsx(path)  # 4 rows in the first sheet, 1 in the second

    assert refused(path, TooManyImportRows, ReadLimits(max_rows=4)).params == {"limit": 4}
    assert read_all(path, ReadLimits(max_rows=5)) == XLSX_SHEETS


def test_xlsx_cell_past_the_cell_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.xlsx"
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    workbook.add_worksheet("s").write_string(1, 2, "x" * 40)
    workbook.close()

    error = refused(path, CellTooLong, ReadLimits(max_cell_chars=39))
    assert error.params == {"sheet": "s", "row": 2, "column": "C", "limit": 39}


def test_a_cell_past_the_last_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    workbook.add_worksheet("s").write_string(0, 20, "far")
    workbook.close()

    error = refused(path, TooManyColumns, ReadLimits(max_columns=10))
    assert error.params == {"sheet": "s", "columns": 21, "limit": 10}


@pytest.mark.parametrize("part", ["xl/worksheets/sheet1.xml", "xl/_rels/workbook.xml.rels"])
def test_a_workbook_without_a_part_it_names_is_corrupt(tmp_path: Path, part: str) -> None:
    path = tmp_path / "whole.xlsx"
    write_xlsx(path)
    missing = tmp_path / "missing.xlsx"
    with zipfile.ZipFile(path) as whole, zipfile.ZipFile(missing, "w") as copy:
        for member in whole.infolist():
            if member.filename != part:
                copy.writestr(member, whole.read(member), zipfile.ZIP_DEFLATED)

    assert part in refused(missing, CorruptUpload).params["reason"]


@pytest.mark.parametrize("number", ["0", "1048577", "99999999999999999999"])
@pytest.mark.parametrize("form", ["plain", "lxml"])
def test_an_xlsx_row_numbered_outside_excels_rows_is_corrupt(
    tmp_path: Path, number: str, form: str
) -> None:
    path = tmp_path / "rows.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("s")
    sheet.write_row(0, 0, ["用户名"])
    sheet.write_row(1, 0, ["zhang"])
    workbook.close()
    with zipfile.ZipFile(path) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml")
    # A comment is not the plain form: the rows are read by lxml.
    prefix = b"<sheetData><!-- by hand -->" if form == "lxml" else b"<sheetData>"
    forged = xml.replace(b'<row r="2"', f'<row r="{number}"'.encode()).replace(
        b"<sheetData>", prefix
    )
    hostile = tmp_path / "hostile.xlsx"
    replace_part(path, hostile, "xl/worksheets/sheet1.xml", forged)

    assert f"row {number} of sheet 's'" in refused(hostile, CorruptUpload).params["reason"]


def test_an_xlsb_row_numbered_past_excels_rows_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "rows.xlsb"
    write_xlsb(path, {"s": {1: ["用户名"], 3_000_000_000: ["zhang"]}})

    assert "row 3000000000" in refused(path, CorruptUpload).params["reason"]


# xlsb (written by bench/xlsb_writer.py; python-calamine reads the same cells back)
# xlsb (written by bench/xlsb_writer.py; python-calamine reads the same cells back)

XLSB_SHEETS: dict[str, dict[int, list[XlsbCell | Formula]]] = {
    "账户": {
        1: ["text", "中文", "😀 emoji", "_x0041_"],
        2: [42.0, 3.5, True, None, Formula(84.0), Formula("ab")],
        5: [None, None, "after a gap"],
    },
    "second": {1: ["two"]},
}


def test_xlsb_reads_back_every_sheet_with_formulas_cached_values(tmp_path: Path) -> None:
    path = tmp_path / "accounts.bin"
    write_xlsb(path, XLSB_SHEETS)

    assert upload_format(path, LIMITS) is UploadFormat.XLSB
    assert read_all(path) == {
        "账户": [
            (1, ["text", "中文", "😀 emoji", "_x0041_"]),
            (2, [42.0, 3.5, True, None, 84.0, "ab"]),
            (5, [None, None, "after a gap"]),
        ],
        "second": [(1, ["two"])],
    }


@pytest.mark.parametrize(("date1904", "day"), [(False, 45351), (True, 43889)])
def test_xlsb_numbers_in_date_styles_read_back_as_their_datetimes(
    tmp_path: Path, date1904: bool, day: int
) -> None:
    # The same serial numbers under each other style stay numbers: General, #,##0.00 and a
    # custom format whose "d" is quoted text.
    path = tmp_path / "dates.xlsb"
    serial = day + (13 * 3600 + 45 * 60 + 7) / 86_400
    write_xlsb(
        path,
        {
            "s": {
                1: [Styled(day, DATE_STYLE), Styled(serial, DATETIME_STYLE)],
                2: [Styled(day, DATE_STYLE | PHONETIC_FLAG), "text", Styled(day, NUMBER_STYLE)],
                3: [Styled(serial, GENERAL_STYLE), serial, Styled(2.5, DAYS_STYLE)],
            }
        },
        date1904=date1904,
    )

    assert read_all(path)["s"] == [
        (1, [datetime.datetime(2024, 2, 29), WHEN]),
        (2, [datetime.datetime(2024, 2, 29), "text", float(day)]),
        (3, [serial, serial, 2.5]),
    ]


def test_an_xlsb_without_styles_reads_its_dates_as_serial_numbers(tmp_path: Path) -> None:
    styled = tmp_path / "styled.xlsb"
    write_xlsb(styled, {"s": {1: [Styled(45351.5, DATETIME_STYLE)]}})
    path = tmp_path / "unstyled.xlsb"
    with zipfile.ZipFile(styled) as original, zipfile.ZipFile(path, "w") as copy:
        for member in original.infolist():
            if member.filename != "xl/styles.bin":
                copy.writestr(member, original.read(member))

    assert read_all(path)["s"] == [(1, [45351.5])]
    assert serial_to_datetime(45351.5, date1904=False) == datetime.datetime(2024, 2, 29, 12)


def test_an_xlsb_whose_styles_break_off_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "plain.xlsb"
    write_xlsb(path, {"s": {1: [1.0]}})
    broken = tmp_path / "broken.xlsb"
    styles = record(CELL_XFS, struct.pack("<I", 1)) + record(XF, b"\x00")
    replace_part(path, broken, "xl/styles.bin", styles)

    refused(broken, CorruptUpload)


def test_xlsb_limits_and_damage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.xlsb"
    write_xlsb(path, XLSB_SHEETS)
    assert refused(path, TooManyImportRows, ReadLimits(max_rows=3)).params == {"limit": 3}
    assert refused(path, CellTooLong, ReadLimits(max_cell_chars=6)).params["column"] == "C"

    truncated = tmp_path / "truncated.xlsb"
    truncated.write_bytes(path.read_bytes()[:-40])
    refused(truncated, CorruptUpload)


def test_an_xlsb_sheet_whose_records_break_off_is_corrupt_not_a_shorter_sheet(
    tmp_path: Path,
) -> None:
    path = tmp_path / "long.xlsb"
    write_xlsb(path, {"s": {number: [f"row {number}"] for number in range(1, 200)}})
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.bin")
    cut = tmp_path / "cut.xlsb"
    replace_part(path, cut, "xl/worksheets/sheet1.bin", sheet[: len(sheet) // 2])

    refused(cut, CorruptUpload)


def test_an_xlsb_declaring_a_huge_dimension_is_refused_before_rows_are_made(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain.xlsb"
    write_xlsb(plain, {"s": {1: ["x"]}})
    with zipfile.ZipFile(plain) as archive:
        sheet = archive.read("xl/worksheets/sheet1.bin")
    honest = record(DIMENSION, struct.pack("<IIII", 0, 0, 0, 0))
    wide = record(DIMENSION, struct.pack("<IIII", 0, 0, 0, 1_000_000_000))
    hostile = tmp_path / "hostile.xlsb"
    replace_part(plain, hostile, "xl/worksheets/sheet1.bin", sheet.replace(honest, wide))

    error = refused(hostile, TooManyColumns)
    assert error.params == {"sheet": "s", "columns": 1_000_000_001, "limit": 16_384}
