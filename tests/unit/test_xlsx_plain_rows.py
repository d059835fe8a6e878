"""The plain-form xlsx reading (regular expressions over runs of whole rows) gives exactly what
lxml gives, cuts runs only between rows, keeps rows in order, and leaves to lxml whatever is
not plain. Every file is built here, in tmp_path."""

from __future__ import annotations

import datetime
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from exporter.imports.readers import CorruptUpload, ReadLimits, part_scan, read_upload
from exporter.imports.readers.base import CellValue
from exporter.imports.readers.part_scan import boundary
from exporter.imports.readers.plain_rows import PlainRows
from exporter.imports.readers.plain_strings import PlainStrings

SHEET = "xl/worksheets/sheet1.xml"
WHEN = datetime.datetime(2024, 2, 29, 13, 45, 7)
Rows = dict[str, list[tuple[int, list[CellValue]]]]


def read_all(path: Path) -> Rows:
    return {sheet.name: list(sheet.rows) for sheet in read_upload(path, ReadLimits())}


def read_by_lxml(path: Path, monkeypatch: pytest.MonkeyPatch) -> Rows:
    with monkeypatch.context() as patch:
        patch.setattr(PlainRows, "is_plain", lambda self, data: None)
        patch.setattr(PlainStrings, "is_plain", lambda self, data: None)
        return read_all(path)


def write_accounts(path: Path, rows: int, constant_memory: bool) -> None:
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": constant_memory})
    dates = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet = workbook.add_worksheet("账户")
    for row in range(rows):
        sheet.write_number(row, 0, row)
        sheet.write_string(row, 1, f"用户{row} & <co> \"x\" 'y' _x0041_")
        sheet.write_datetime(row, 2, WHEN + datetime.timedelta(minutes=row), dates)
        sheet.write_number(row, 3, row / 7)
        sheet.write_boolean(row, 4, row % 2 == 0)
        if row % 5:
            sheet.write_string(row, 7, "far")
    sheet.write_formula(rows, 1, "=A2*2", None, 84)
    workbook.add_worksheet("second").write_string(3, 0, "two")
    workbook.close()


def replace_sheet(source: Path, target: Path, edit: bytes, by: bytes) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            data = original.read(member)
            if member.filename == SHEET:
                assert edit in data
                data = data.replace(edit, by, 1)
            copy.writestr(member, data, zipfile.ZIP_DEFLATED)


@pytest.mark.parametrize("block_bytes", [37, 1000, 1024 * 1024])
@pytest.mark.parametrize("constant_memory", [True, False], ids=["inline", "shared"])
def test_runs_of_any_size_read_what_lxml_reads_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int, constant_memory: bool
) -> None:
    path = tmp_path / "accounts.xlsx"
    write_accounts(path, 300, constant_memory)
    monkeypatch.setattr(part_scan, "BLOCK_BYTES", block_bytes)

    rows = read_all(path)

    assert rows == read_by_lxml(path, monkeypatch)
    numbers = [number for number, _ in rows["账户"]]
    assert numbers == list(range(1, 302))
    second = [
        1,
        "用户1 & <co> \"x\" 'y' _x0041_",
        WHEN + datetime.timedelta(minutes=1),
        float(f"{1 / 7:.16g}"),
    ]
    assert rows["账户"][1][1] == [*second, False, None, None, "far"]
    assert rows["second"] == [(4, ["two"])]


@pytest.mark.parametrize(
    "edit, by",
    [
        pytest.param(b'<row r="150"', b'<!-- a comment --><row r="150"', id="comment"),
        pytest.param(b'<c r="B150" t="s">', b'<c t="s" r="B150">', id="attribute order"),
        pytest.param(b'<c r="B150" t="s">', b'<c r="B150"\tt="s">', id="tab between attributes"),
        pytest.param(b"<v>149</v>", b"<v><![CDATA[149]]></v>", id="cdata"),
        pytest.param(b"<v>149</v>", b"<v>&#49;49</v>", id="character reference"),
        pytest.param(
            b'<c r="B150" t="s">',
            b'<c r="B150" t="str"><v>&#x4E2D;&#25991;&#38;lt;&amp;#65;&#13;&#x1F600;</v></c>'
            b'<c r="Z150" t="s">',
            id="character references in text",
        ),
        pytest.param(b"<v>149</v>", b"<v>&#1;49</v>", id="character reference to no character"),
        pytest.param(b"<v>149</v>", b"<v>&#xD800;</v>", id="character reference to a surrogate"),
        pytest.param(b"<v>149</v>", b"<f>&#1;</f><v>149</v>", id="bad reference in a formula"),
        pytest.param(
            b'<row r="150"', b'<row xmlns="urn:other" r="150"', id="namespace declaration"
        ),
        pytest.param(b'<row r="150"', b'<row r="150" r="151"', id="duplicate r"),
        pytest.param(
            b'<row r="150"', b'<row r="150" spans="1:8" spans="1:8"', id="duplicate spans"
        ),
        pytest.param(b"</row>", b"</row>\r\n", id="carriage return"),
        pytest.param(
            b'<c r="B150" t="s">',
            b'<c r="B150" t="str"><v>a\r\nb\rc</v></c><c r="Z150" t="s">',
            id="carriage return in text",
        ),
        pytest.param(b'<c r="B150" t="s">', b'<c r="B150" t="s"\x01>', id="control character"),
        pytest.param(b'<c r="B150" t="s">', b'<c r="B150" t="s" s="0">', id="s after t"),
        pytest.param(b"<sheetData>", b"<sheetData>\n", id="whitespace"),
        pytest.param(
            b"</sheetData>",
            b'<row r="400"><c r="A400"><v>9</v></c></row></sheetData>',
            id="one more row",
        ),
    ],
)
def test_what_is_not_plain_reads_as_lxml_reads_it_or_is_refused_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: bytes, by: bytes
) -> None:
    plain = tmp_path / "plain.xlsx"
    write_accounts(plain, 300, constant_memory=False)
    edited = tmp_path / "edited.xlsx"
    replace_sheet(plain, edited, edit, by)
    monkeypatch.setattr(part_scan, "BLOCK_BYTES", 1000)

    try:
        expected: Rows | type[CorruptUpload] = read_by_lxml(edited, monkeypatch)
    except CorruptUpload:
        expected = CorruptUpload
    if expected is CorruptUpload:
        with pytest.raises(CorruptUpload):
            read_all(edited)
    else:
        assert read_all(edited) == expected


def test_a_row_longer_than_a_run_may_be_is_left_to_lxml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "accounts.xlsx"
    write_accounts(path, 30, constant_memory=True)
    monkeypatch.setattr(part_scan, "BLOCK_BYTES", 37)
    monkeypatch.setattr(part_scan, "MAX_RUN_BYTES", 200)

    assert read_all(path) == read_by_lxml(path, monkeypatch)


@pytest.mark.parametrize("block_bytes", [29, 1024 * 1024])
def test_shared_strings_plain_or_rich_read_what_lxml_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    path = tmp_path / "rich.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    bold = workbook.add_format({"bold": True})
    sheet = workbook.add_worksheet("s")
    for row in range(50):
        sheet.write_string(row, 0, f" {row} & <b> _x0041_ 中文 ")
        if row % 7 == 3:
            sheet.write_rich_string(row, 1, "plain ", bold, f"bold {row}", " tail")
    workbook.close()
    monkeypatch.setattr(part_scan, "BLOCK_BYTES", block_bytes)

    rows = read_all(path)

    assert rows == read_by_lxml(path, monkeypatch)
    assert rows["s"][3] == (4, [" 3 & <b> _x0041_ 中文 ", "plain bold 3 tail"])


X14AC = b'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"'


@pytest.mark.parametrize("declared", [True, False])
def test_excel_row_heights_are_plain_only_where_their_namespace_is_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    plain = tmp_path / "plain.xlsx"
    write_accounts(plain, 10, constant_memory=False)
    with zipfile.ZipFile(plain) as archive:
        original = archive.read(SHEET)
    sheet = original.replace(b'spans="1:8"', b'spans="1:8" x14ac:dyDescent="0.25"')
    if declared:
        sheet = sheet.replace(b"<worksheet ", b"<worksheet " + X14AC + b" ", 1)
    edited = tmp_path / "edited.xlsx"
    replace_sheet(plain, edited, original, sheet)

    if declared:
        assert read_all(edited) == read_by_lxml(edited, monkeypatch) == read_all(plain)
    else:
        with pytest.raises(CorruptUpload):
            read_all(edited)


def test_rows_outside_sheet_data_are_read_as_lxml_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain.xlsx"
    write_accounts(plain, 10, constant_memory=True)
    edited = tmp_path / "edited.xlsx"
    replace_sheet(
        plain,
        edited,
        b"</sheetData>",
        b'</sheetData><extLst><row r="90"><c r="A90"><v>1</v></c></row></extLst>',
    )

    rows = read_all(edited)

    assert rows == read_by_lxml(edited, monkeypatch)
    assert rows["账户"][-1] == (90, [1])


def row_boundary(data: bytes) -> int:
    return boundary(data, b"<row")


def test_a_row_boundary_is_never_inside_a_row() -> None:
    rows = b'<row r="1"><c r="A1"><v>1</v></c></row><row r="2" spans="1:1"/><row r="3">'
    assert rows[row_boundary(rows) :] == b'<row r="3">'
    assert row_boundary(rows[: rows.index(b'<row r="3"')]) == rows.index(b'<row r="2"')
    assert row_boundary(b'<row r="1"><c r="A1"><v>1</v></c></row><rowBreaks') == 0
    assert row_boundary(b'<row r="1"><c r="A1"><v>1</v></c></row>') == 0
