"""What every reader yields, and the limits that every reader enforces."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator

from exporter.imports.readers.errors import (
    CellTooLong,
    CorruptUpload,
    TooManyColumns,
    TooManyImportRows,
)

CellValue = str | int | float | bool | datetime.datetime | None
# (the row number the user sees in their file, that row's cells from column A on)
Row = tuple[int, list[CellValue]]

GIB = 1024**3
# Excel's last row: no workbook numbers a row past it (and rows are kept as integers).
LAST_SHEET_ROW = 1_048_576


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """What a hostile upload may cost before it is refused. The upload's own size is limited
    earlier, where it is received."""

    max_rows: int = 1_000_000
    # Excel's own limits: no file Excel wrote goes past them.
    max_cell_chars: int = 32_767
    max_columns: int = 16_384
    max_unpacked_bytes: int = GIB
    max_compression_ratio: float = 100.0
    # A member smaller than this is not a bomb whatever its ratio (a sheet of empty styled
    # cells compresses very well, and costs nothing to read).
    ratio_floor_bytes: int = 4 * 1024 * 1024
    # zipfile reads and parses a zip's whole directory before any member can be checked: one
    # of 700,000 empty members (a 60 MB upload) took 10 s and 400 MB. A workbook's takes about
    # 80 bytes a part: a few kilobytes, some hundreds for a thousand sheets.
    max_directory_bytes: int = 1024 * 1024


@dataclasses.dataclass
class Sheet:
    """One sheet of an upload (a csv file is one sheet named by the reader). ``rows`` streams:
    read it before asking for the next sheet."""

    name: str
    rows: Iterator[Row]


class RowGuard:
    """Counts the rows of one upload, all sheets together, and checks each row's size."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.rows_read = 0

    def check(
        self, sheet: str, row_number: int, cells: list[CellValue], *, all_text: bool = False
    ) -> None:
        """Raise when this row takes the upload past a limit; ``all_text`` says every cell is a
        str (a csv row), which spares looking for the others."""
        self.rows_read += 1
        if self.rows_read > self.limits.max_rows:
            raise self._too_many()
        if len(cells) > self.limits.max_columns:
            raise too_many_columns(sheet, len(cells), self.limits.max_columns)
        # Measured in C (map, max) rather than cell by cell: this runs for every row read.
        texts = cells if all_text else [cell for cell in cells if cell.__class__ is str]
        if max(map(len, texts), default=0) > self.limits.max_cell_chars:  # type: ignore[arg-type]
            self._too_long(sheet, row_number, cells)

    def count(self, rows: int) -> None:
        """Count rows read and checked elsewhere (by another process) against the limit."""
        self.rows_read += rows
        if self.rows_read > self.limits.max_rows:
            raise self._too_many()

    def _too_many(self) -> TooManyImportRows:
        return TooManyImportRows(
            f"The file holds more than {self.limits.max_rows} rows",
            params={"limit": self.limits.max_rows},
        )

    def _too_long(self, sheet: str, row_number: int, cells: list[CellValue]) -> None:
        max_chars = self.limits.max_cell_chars
        for index, value in enumerate(cells):
            if isinstance(value, str) and len(value) > max_chars:
                column = column_letters(index)
                raise CellTooLong(
                    f"Cell {column}{row_number} of sheet {sheet!r} holds more than "
                    f"{max_chars} characters",
                    params={
                        "sheet": sheet,
                        "row": row_number,
                        "column": column,
                        "limit": max_chars,
                    },
                )


def row_outside(sheet: str, number: int) -> CorruptUpload:
    """The error for a workbook row numbered outside Excel's rows (1 to LAST_SHEET_ROW): only a
    damaged or forged file has one. A csv file's records are numbered by the reader, and may go
    further."""
    reason = f"row {number} of sheet {sheet!r} is outside Excel's rows 1 to {LAST_SHEET_ROW}"
    return CorruptUpload(f"The file is damaged or incomplete: {reason}", params={"reason": reason})


def too_many_columns(sheet: str, columns: int, limit: int) -> TooManyColumns:
    """The error for a sheet wider than ``limit`` columns."""
    return TooManyColumns(
        f"Sheet {sheet!r} is {columns} columns wide; at most {limit} are read",
        params={"sheet": sheet, "columns": columns, "limit": limit},
    )


def column_letters(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: the column's name as Excel shows it."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters
