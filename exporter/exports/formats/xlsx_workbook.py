"""xlsx files through xlsxwriter in constant_memory mode, rows strictly in order.

The only module that touches xlsxwriter's private members (for speed, and for the parts of a
parallel export); they are listed in XLSXWRITER_PRIVATE_MEMBERS and checked at worker start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from xml.sax.saxutils import escape as xml_escape

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from exporter.errors import CellRefused, ExportFailed, UnsupportedDependency
from exporter.exports.columns import Column, ColumnKind

# The xlsxwriter releases the private members below were tested with (pyproject.toml pins it).
SUPPORTED_XLSXWRITER = ">=3.3,<3.4"


def text_safe_workbook(path: Path) -> xlsxwriter.Workbook:
    """A constant_memory workbook (its scratch files beside ``path``) that writes every string
    as text: never as a formula, a number or a link, whatever it looks like."""
    return xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "tmpdir": str(path.parent),
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )


class PrivateMember(NamedTuple):
    owner: str
    name: str
    is_method: bool


# Every private member of xlsxwriter this module uses. A release may rename any of them, and a
# missing one would only show when an export reaches it.
XLSXWRITER_PRIVATE_MEMBERS = (
    PrivateMember("Format", "_get_xf_index", is_method=True),
    PrivateMember("Worksheet", "_write_datetime", is_method=True),
    PrivateMember("Worksheet", "_write_number", is_method=True),
    PrivateMember("Worksheet", "_write_string", is_method=True),
    PrivateMember("Worksheet", "_write_single_row", is_method=True),
    PrivateMember("Worksheet", "_opt_close", is_method=True),
    PrivateMember("Worksheet", "row_data_fh", is_method=False),
    PrivateMember("Worksheet", "row_data_filename", is_method=False),
    PrivateMember("Worksheet", "table", is_method=False),
)
XLSXWRITER_CLASSES: Mapping[str, Callable[[], object]] = {"Format": Format, "Worksheet": Worksheet}


def check_xlsxwriter(classes: Mapping[str, Callable[[], object]] = XLSXWRITER_CLASSES) -> None:
    """Raise UnsupportedDependency naming each private member the installed xlsxwriter lacks.

    Instances are probed, not classes: ``table`` and ``row_data_*`` are set by ``__init__``.
    """
    instances = {owner: make() for owner, make in classes.items()}
    missing = [
        f"{member.owner}.{member.name}" + ("()" if member.is_method else "")
        for member in XLSXWRITER_PRIVATE_MEMBERS
        if not hasattr(instances[member.owner], member.name)
        or (member.is_method and not callable(getattr(instances[member.owner], member.name)))
    ]
    if missing:
        raise UnsupportedDependency(
            f"xlsxwriter {xlsxwriter.__version__} lacks {', '.join(missing)}, which the xlsx "
            f"writer uses; install xlsxwriter{SUPPORTED_XLSXWRITER}, the tested releases",
            params={"missing": missing, "supported": SUPPORTED_XLSXWRITER},
        )


MAX_SHEET_DATA_ROWS = 1_048_575  # Excel's 1,048,576 rows less the header
# Excel counts a cell's text in UTF-16 units: a character above U+FFFF (an emoji) takes two.
MAX_CELL_UTF16_UNITS = 32_767
TRUNCATION_MARKER = "…[已截断]"
# What a cut text keeps, the marker after it.
KEEP_UTF16_UNITS = MAX_CELL_UTF16_UNITS - len(TRUNCATION_MARKER.encode("utf-16-le")) // 2
_HIGH_SURROGATES = range(0xD800, 0xDC00)

_WIDTHS = {ColumnKind.INTEGER: 12, ColumnKind.DATETIME: 20, ColumnKind.ENUM: 10}
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\']")

# Style numbers of the header and of dates, the same in every workbook: the frame of a large
# export and the rows the database renders for it, which write them as they are.
HEADER_STYLE_INDEX = 1
DATE_STYLE_INDEX = 2

CellWriter = Callable[[int, int, Any, Format | None], int]
# What xlsxwriter's string writers return for text longer than a cell holds.
STRING_TOO_LONG = -2


def cut_to_cell(text: str) -> str:
    """Text too long for one cell, cut to fit with the marker at its end; a character that
    takes two UTF-16 units is kept whole or not at all."""
    keep_bytes = 2 * KEEP_UTF16_UNITS
    # A character is one or two units, so the first keep_bytes / 2 characters hold enough.
    head = text[: keep_bytes // 2].encode("utf-16-le")[:keep_bytes]
    if int.from_bytes(head[-2:], "little") in _HIGH_SURROGATES:
        head = head[:-2]
    return head.decode("utf-16-le") + TRUNCATION_MARKER


def _too_long(text: str) -> bool:
    return len(text.encode("utf-16-le")) > 2 * MAX_CELL_UTF16_UNITS


def _sheet_name(title: str, number: int) -> str:
    base = _SHEET_NAME_FORBIDDEN.sub("_", title)[:24] or "Sheet"
    return base if number == 1 else f"{base} ({number})"


class XlsxExportWriter:
    """Writes header and rows of one export; a new sheet with the header past Excel's row limit.

    Every xlsxwriter call's return code is checked, so no cell is dropped silently. It also
    writes the frame of a split export, whose rows the database renders in the same bytes
    (:mod:`exporter.exports.formats.xlsx_row_sql`) or parts of it write.

    A *part* (``header`` false) writes no header and its rows at their final positions in the
    sheet (from data row ``first_row``); :meth:`finish_part` then hands over the sheet's row
    XML, which the frame's header row precedes.
    """

    def __init__(
        self,
        path: Path,
        title: str,
        columns: Sequence[Column],
        *,
        max_sheet_rows: int = MAX_SHEET_DATA_ROWS,
        first_row: int = 1,
        header: bool = True,
    ) -> None:
        self._workbook = text_safe_workbook(path)
        self._title = title
        self._max_sheet_rows = max_sheet_rows
        self._columns = tuple(columns)
        self._header_format = self._workbook.add_format({"bold": True})
        self._date_format = self._workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        # Style numbers are given on first use; fixed here, the numbers rendered rows name.
        if (self._header_format._get_xf_index(), self._date_format._get_xf_index()) != (
            HEADER_STYLE_INDEX,
            DATE_STYLE_INDEX,
        ):
            raise UnsupportedDependency("xlsxwriter numbered the header and date styles anew")
        self._sheets = 0
        self._row = 0
        self._sheet = self._new_sheet(header=header and first_row == 1)
        self._row = first_row - 1
        self.rows_written = 0

    def _new_sheet(self, *, header: bool = True) -> Worksheet:
        self._sheets += 1
        sheet = self._workbook.add_worksheet(_sheet_name(self._title, self._sheets))
        sheet.freeze_panes(1, 0)
        for index, column in enumerate(self._columns):
            sheet.set_column(index, index, _WIDTHS.get(column.kind, 18))
            if header and sheet.write_string(0, index, column.label, self._header_format):
                raise ExportFailed(f"xlsx writer refused the header {column.label!r}")
        self._row = 0
        # Bound to this sheet's undecorated _write_* methods: the public ones first try to read
        # the row as "A1" notation, which no call here uses. That check and a wrapper per cell
        # were about an eighth of the time spent writing 100,000 account rows.
        self._cell_writers = [
            (index, write, cell_format)
            for index, column in enumerate(self._columns)
            for write, cell_format in self._value_writers(sheet, column.kind)
        ]
        return sheet

    def _value_writers(
        self, sheet: Worksheet, kind: ColumnKind
    ) -> list[tuple[CellWriter, Format | None]]:
        if kind is ColumnKind.INTEGER:
            # The number Excel holds exactly, else its text: one of the two is None.
            return [(sheet._write_number, None), (sheet._write_string, None)]
        if kind is ColumnKind.DATETIME:
            # The date Excel can hold, else its text: one of the two is None.
            return [(sheet._write_datetime, self._date_format), (sheet._write_string, None)]
        return [(self._write_text, None)]

    def _write_text(self, row: int, col: int, value: str, cell_format: Format | None) -> int:
        # In constant_memory mode xlsxwriter writes a text that starts with "<r>" and ends with
        # "</r>" unescaped, as rich-text XML: "<r>&</r>" made the sheet unreadable. Such a text
        # is given as that XML instead: one run of plain text, escaped.
        if value.startswith("<r>") and value.endswith("</r>") and not _too_long(value):
            status = int(self._sheet._write_string(row, col, "", cell_format))
            if status == 0:
                cells = self._sheet.table[row]
                cells[col] = cells[col]._replace(string=f"<r><t>{xml_escape(value)}</t></r>")
            return status
        return int(self._sheet._write_string(row, col, value, cell_format))

    def _write_long_text(self, row: int, col: int, value: str) -> int:
        return int(self._sheet._write_string(row, col, cut_to_cell(value)))

    def write_rows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Append rows: a value per column, strs or None; an INTEGER column takes two, the int
        Excel holds exactly, else None and its text; a DATETIME column takes two, the naive
        datetime in the target zone when Excel can hold it, else None and its text."""
        row = col = 0
        writers = self._cell_writers
        try:
            for values in rows:
                if self._row == self._max_sheet_rows:
                    self._sheet = self._new_sheet()
                    writers = self._cell_writers
                self._row += 1
                row = self._row
                for (col, write, cell_format), value in zip(writers, values, strict=True):
                    if value is None:
                        continue
                    status = write(row, col, value, cell_format)
                    if status == STRING_TOO_LONG:
                        status = self._write_long_text(row, col, value)
                    if status:
                        raise ExportFailed("refused by xlsxwriter")
                self.rows_written += 1
        except (ExportFailed, TypeError, ValueError) as exc:
            label = self._columns[col].label
            raise CellRefused(
                f"cannot write sheet {self._sheets} row {row + 1}, column {label!r}: {exc}",
                params={"sheet": self._sheets, "row": row + 1, "column": label},
            ) from exc

    def add_sheet(self) -> None:
        """Start the next sheet (with its header) before the current one is full."""
        self._sheet = self._new_sheet()

    def close(self) -> None:
        """Finish the workbook (this is where xlsxwriter compresses the sheets)."""
        self._workbook.close()

    def finish_part(self) -> Path:
        """The ``<row>`` elements written so far, as a file: a part's share of a sheet.

        In constant_memory mode xlsxwriter writes each finished row to a scratch file that
        becomes the sheet's ``sheetData`` when the workbook closes; a part stops before that.
        ``_write_single_row`` writes out the row still held in memory.
        """
        self._sheet._write_single_row()
        self._sheet.row_data_fh.flush()
        return Path(self._sheet.row_data_filename)

    def abandon(self) -> None:
        """Release the sheets' scratch files without building the workbook.

        xlsxwriter has no public call for this; ``_opt_close`` is what its own ``close``
        uses to shut constant_memory scratch files. The files themselves are removed with
        the work directory they were created in.
        """
        for sheet in self._workbook.worksheets():
            sheet._opt_close()
