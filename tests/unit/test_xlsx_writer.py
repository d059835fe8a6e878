"""The xlsx writer on its own: sheets past the row limit, cell types, refusals, and the
xlsxwriter release it relies on."""

from __future__ import annotations

import ast
import inspect
import tomllib
import zipfile
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import pytest
import xlsxwriter
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from python_calamine import CalamineWorkbook
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from exporter.errors import ExportFailed, UnsupportedDependency
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats import xlsx_workbook
from exporter.exports.formats.xlsx_workbook import (
    SUPPORTED_XLSXWRITER,
    XLSXWRITER_PRIVATE_MEMBERS,
    XlsxExportWriter,
    check_xlsxwriter,
)
from tests.support import xlsx_rows

COLUMNS = [
    Column("ID", "id", ColumnKind.INTEGER),
    Column("名字", "name"),
    Column("时间", "at", ColumnKind.DATETIME),
]


def write(path: Path, rows: list[tuple[object, ...]], max_sheet_rows: int) -> list[str]:
    writer = XlsxExportWriter(path, "测试:表/名", COLUMNS, max_sheet_rows=max_sheet_rows)
    writer.write_rows(rows)
    writer.close()
    workbook = openpyxl.load_workbook(path, read_only=True)
    names = workbook.sheetnames
    workbook.close()
    return names


def test_rows_past_the_sheet_limit_continue_on_a_new_sheet_with_the_header_repeated(
    tmp_path: Path,
) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5)
    rows = [(n, None, f"name {n}", at, None) for n in range(1, 8)]

    names = write(tmp_path / "out.xlsx", rows, max_sheet_rows=3)

    assert names == ["测试_表_名", "测试_表_名 (2)", "测试_表_名 (3)"]
    content = xlsx_rows((tmp_path / "out.xlsx").read_bytes())
    header = ["ID", "名字", "时间"]
    assert content == [
        header,
        [1, "name 1", at],
        [2, "name 2", at],
        [3, "name 3", at],
        header,
        [4, "name 4", at],
        [5, "name 5", at],
        [6, "name 6", at],
        header,
        [7, "name 7", at],
    ]


def test_an_integer_column_takes_the_number_or_else_its_text(tmp_path: Path) -> None:
    # The xlsx statement gives the text of a number Excel cannot hold exactly (10**15 on).
    write(
        tmp_path / "out.xlsx",
        [(None, "1000000000000000", "big", None, None), (10**15 - 1, None, "fits", None, None)],
        10,
    )

    content = xlsx_rows((tmp_path / "out.xlsx").read_bytes())

    assert content[1][:2] == ["1000000000000000", "big"]
    assert content[2][:2] == [999_999_999_999_999, "fits"]


def test_a_value_of_the_wrong_kind_fails_the_export_instead_of_vanishing(tmp_path: Path) -> None:
    writer = XlsxExportWriter(tmp_path / "out.xlsx", "t", COLUMNS)

    with pytest.raises(ExportFailed, match="sheet 1 row 2, column '时间': Unknown or unsupported"):
        writer.write_rows([(1, None, "ok", "not a datetime", None)])
    writer.abandon()


def test_the_installed_xlsxwriter_is_a_tested_release_with_every_private_member_used() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pinned = next(
        Requirement(line)
        for line in pyproject["project"]["dependencies"]
        if Requirement(line).name == "xlsxwriter"
    )

    assert pinned.specifier == SpecifierSet(SUPPORTED_XLSXWRITER)
    assert pinned.specifier.contains(xlsxwriter.__version__)
    check_xlsxwriter()


def test_every_private_member_the_writer_touches_is_listed() -> None:
    # A private attribute of anything but the writer itself is xlsxwriter's; a worksheet's
    # table of cells and row_data_* are its internals without the underscore. _replace is a
    # named tuple's own.
    tree = ast.parse(inspect.getsource(xlsx_workbook))
    touched = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (
            (node.attr.startswith("_") and not node.attr.startswith("__"))
            or node.attr == "table"
            or node.attr.startswith("row_data_")
        )
        and node.attr != "_replace"
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }

    assert touched == {member.name for member in XLSXWRITER_PRIVATE_MEMBERS}


class WorksheetWithoutTable(Worksheet):
    """A Worksheet as a release that renamed its table of cells would have it."""

    def __init__(self) -> None:
        super().__init__()
        del self.table


class WorksheetWithoutStringWriter(Worksheet):
    """A Worksheet as a release that made ``_write_string`` something else would have it."""

    _write_string = None


@pytest.mark.parametrize(
    ("worksheet", "missing"),
    [
        (WorksheetWithoutTable, "Worksheet.table"),
        (WorksheetWithoutStringWriter, "Worksheet._write_string()"),
    ],
)
def test_a_release_without_a_private_member_is_refused_naming_it_and_the_tested_releases(
    worksheet: type[Worksheet], missing: str
) -> None:
    with pytest.raises(UnsupportedDependency) as refused:
        check_xlsxwriter({"Format": Format, "Worksheet": worksheet})

    assert refused.value.message == (
        f"xlsxwriter {xlsxwriter.__version__} lacks {missing}, which the xlsx writer uses; "
        f"install xlsxwriter{SUPPORTED_XLSXWRITER}, the tested releases"
    )


@pytest.mark.parametrize("text", ["<r>&</r>", "<r><t>x</t></r><r><t>y</t></r>", "<r></r>"])
def test_a_text_that_looks_like_rich_text_xml_comes_back_as_it_was(
    tmp_path: Path, text: str
) -> None:
    # xlsxwriter's constant_memory mode wrote these unescaped, as rich-text runs: the first
    # made the sheet XML unreadable, the second came back as "xy".
    path = tmp_path / "out.xlsx"
    writer = XlsxExportWriter(path, "t", [Column("文本", "x")])
    writer.write_rows([(text,)])
    writer.close()

    with zipfile.ZipFile(path) as archive:
        ElementTree.fromstring(archive.read("xl/worksheets/sheet1.xml"))  # well-formed
    workbook = openpyxl.load_workbook(path, read_only=True)
    assert [row[0] for row in workbook.worksheets[0].iter_rows(min_row=2, values_only=True)] == [
        text
    ]
    workbook.close()
    calamine = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    assert calamine[1] == [text]
