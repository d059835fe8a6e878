"""Three independent xlsx readers, each giving a workbook's rows sheet by sheet as it shows them,
and the database's values put in the form each one shows.

A reader shows some values differently from the database, legitimately; each difference is
written once, in the reader's ``shown`` function, with the reason.
"""

from __future__ import annotations

import csv
import re
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import openpyxl
from python_calamine import CalamineWorkbook

Row = list[Any]
# A workbook's sheets, in order, each as its rows (header row included).
Sheets = Iterator[Iterator[Row]]


@dataclass(frozen=True)
class Reader:
    name: str
    # The workbook's sheets as this reader reads them; the directory is scratch space of its own.
    sheets: Callable[[Path, Path], Sheets]
    # A database value (int, str, naive datetime or None) as this reader shows it.
    shown: Callable[[Any], Any]


def _openpyxl_sheets(workbook: Path, _scratch: Path) -> Sheets:
    book = openpyxl.load_workbook(workbook, read_only=True)
    try:
        for sheet in book.worksheets:
            yield (list(row) for row in sheet.iter_rows(values_only=True))
    finally:
        book.close()


_ESCAPE_LOOKALIKE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f]")


def _openpyxl_shown(value: Any) -> Any:
    # openpyxl gives an inline string's XML text as it is, without decoding the _xHHHH_ escapes
    # that the file format (ECMA-376, ST_Xstring) stores control characters as: a carriage
    # return reads "_x000D_", a literal "_x0041_" reads "_x005F_x0041_".
    if isinstance(value, str):
        value = _ESCAPE_LOOKALIKE.sub(r"_x005F_\1", value)
        return _CONTROL_CHARACTER.sub(lambda match: f"_x{ord(match[0]):04X}_", value)
    return value


def _calamine_sheets(workbook: Path, _scratch: Path) -> Sheets:
    book = CalamineWorkbook.from_path(str(workbook))
    try:
        for name in book.sheet_names:
            # calamine reads a whole sheet at once (~800 MB per million rows): one at a time.
            yield iter(book.get_sheet_by_name(name).to_python())
    finally:
        book.close()


def _calamine_shown(value: Any) -> Any:
    # calamine gives every number as a float (xlsx stores numbers as doubles), an empty cell as
    # "", and a date cell whose time is midnight as a date.
    if value is None:
        return ""
    if isinstance(value, int):
        return float(value)
    if isinstance(value, datetime) and value.time() == time():
        return value.date()
    return value


# LibreOffice's csv filter: comma, double quote, UTF-8, from line 1, no column types, default
# language, quoted fields not forced to text, special numbers detected, cells saved as shown
# (dates in their own "yyyy-mm-dd hh:mm:ss" style), no formulas, spaces kept, and -1: every
# sheet, each to "<file>-<sheet name>.csv".
LIBREOFFICE_CSV = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1"
LIBREOFFICE_TIMEOUT_S = 900
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def sheet_names(workbook: Path) -> list[str]:
    """The names of the workbook's sheets in order, from its xl/workbook.xml."""
    with zipfile.ZipFile(workbook) as archive:
        root = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    return [sheet.attrib["name"] for sheet in root.iter(f"{_MAIN}sheet")]


def _libreoffice_sheets(workbook: Path, scratch: Path) -> Sheets:
    # A profile of its own: two soffice processes sharing one wait for each other or fail.
    done = subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={(scratch / 'profile').as_uri()}",
            "--headless",
            "--convert-to",
            LIBREOFFICE_CSV,
            "--outdir",
            str(scratch),
            str(workbook),
        ],
        capture_output=True,
        text=True,
        timeout=LIBREOFFICE_TIMEOUT_S,
        check=False,
    )
    for name in sheet_names(workbook):
        converted = scratch / f"{workbook.stem}-{name}.csv"
        assert converted.exists(), f"LibreOffice wrote no {converted.name}: {done}"
        with converted.open(encoding="utf-8", newline="") as file:
            yield csv.reader(file)


def _libreoffice_shown(value: Any) -> Any:
    # The csv has every cell's text as LibreOffice shows it: numbers in the General style, dates
    # in the cell's date style, an empty cell as an empty field. LibreOffice keeps a cell's text
    # as paragraphs and a CR LF is one paragraph break, written back as LF (as it is for the same
    # text in a workbook xlsxwriter writes); a lone CR stays.
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return value.replace("\r\n", "\n")
    return str(value)


OPENPYXL = Reader("openpyxl", _openpyxl_sheets, _openpyxl_shown)
CALAMINE = Reader("python-calamine", _calamine_sheets, _calamine_shown)
LIBREOFFICE = Reader("LibreOffice", _libreoffice_sheets, _libreoffice_shown)
