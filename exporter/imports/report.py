"""The report of an import's rejected rows: their original cells, and why, as an xlsx.

It is written while the upload is read a second time, front to back, beside the rejected rows
as the database lists them in the same order: each sheet of the upload with rejected rows
gets a sheet of its own, its header row, its rejected rows and a 错误原因 column. A user can
correct it and import it again (the reasons column is not one of the type's, so it is
ignored).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from exporter.exports.formats.xlsx_workbook import text_safe_workbook
from exporter.imports.engine import Rejected
from exporter.imports.problems import reasons
from exporter.imports.readers import CellValue, ReadLimits
from exporter.imports.registry import ImportHandler
from exporter.imports.upload_rows import UploadRow, UploadRows

REASON_HEADER = "错误原因"
REPORT_LANGUAGE = "zh-CN"
# Excel's limit on a sheet's name.
SHEET_NAME_CHARS = 31


class RejectedRowsReport:
    """Writes the report; blocking, so run its methods in a thread."""

    def __init__(
        self, path: Path, upload: Path, handler: ImportHandler, limits: ReadLimits
    ) -> None:
        self._workbook = text_safe_workbook(path)
        self._bold = self._workbook.add_format({"bold": True})
        self._date = self._workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._rows = UploadRows(upload, handler, limits)
        self._rows.start()
        self._pending: list[UploadRow] = []
        self._sheets: dict[int, tuple[Worksheet, int]] = {}
        self._lines: dict[int, int] = {}
        self.rows_written = 0

    def add(self, rejected: Sequence[Rejected]) -> None:
        """Write these rejected rows (in the order read, after any written before)."""
        for found in rejected:
            row = self._find(found.sheet, found.row_no)
            problems = found.problems
            sheet, width = self._sheet(row.sheet)
            self._lines[row.sheet] += 1
            line = self._lines[row.sheet]
            # Cells past the header have no column to go under (and no meaning to an import).
            for column, value in enumerate(row.cells[:width]):
                self._write(sheet, line, column, value)
            sheet.write_string(line, width, reasons(problems, REPORT_LANGUAGE))
            self.rows_written += 1

    def close(self) -> None:
        """Write the workbook out and stop reading the upload."""
        self._rows.close()
        self._workbook.close()

    def _find(self, sheet: int, number: int) -> UploadRow:
        while True:
            if not self._pending:
                self._pending = self._rows.batch(1000)
                if not self._pending:
                    raise RuntimeError(f"the upload has no row {number} on a second read")
                self._pending.reverse()
            row = self._pending.pop()
            if (row.sheet, row.number) == (sheet, number):
                return row

    def _sheet(self, index: int) -> tuple[Worksheet, int]:
        if index not in self._sheets:
            header = self._rows.layouts[index].header
            name = self._rows.sheets[index][:SHEET_NAME_CHARS] or f"Sheet{index + 1}"
            if any(existing.name == name for existing, _ in self._sheets.values()):
                name = f"{name[: SHEET_NAME_CHARS - 4]} ({index + 1})"
            sheet = self._workbook.add_worksheet(name)
            sheet.freeze_panes(1, 0)
            for column, value in enumerate(header):
                self._write(sheet, 0, column, value, self._bold)
            sheet.write_string(0, len(header), REASON_HEADER, self._bold)
            sheet.set_column(len(header), len(header), 40)
            self._sheets[index] = (sheet, len(header))
            self._lines[index] = 0
        return self._sheets[index]

    def _write(
        self,
        sheet: Worksheet,
        line: int,
        column: int,
        value: CellValue,
        cell_format: Format | None = None,
    ) -> None:
        if value is None or value == "":
            return
        if isinstance(value, datetime.datetime):
            sheet.write_datetime(line, column, value, cell_format or self._date)
        elif isinstance(value, bool):
            sheet.write_boolean(line, column, value, cell_format)
        elif isinstance(value, int | float):
            sheet.write_number(line, column, value, cell_format)
        else:
            sheet.write_string(line, column, value, cell_format)
