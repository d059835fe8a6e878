"""Rows of an uploaded csv file (RFC 4180, as Excel writes and reads it)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from exporter.imports.readers.base import CellValue, Row, RowGuard, Sheet
from exporter.imports.readers.errors import CellTooLong, UploadRejected
from exporter.imports.readers.zip_guard import corrupt

CSV_SHEET_NAME = "csv"


def read_csv(path: Path, encoding: str, guard: RowGuard) -> Iterator[Sheet]:
    """The file as one sheet; each row is numbered by its record (the header is row 1), which
    is the row Excel shows even when a cell spans lines."""
    yield Sheet(CSV_SHEET_NAME, csv_rows(path, encoding, guard))


def csv_rows(path: Path, encoding: str, guard: RowGuard) -> Iterator[Row]:
    number = 0
    with path.open(encoding=encoding, newline="") as text:
        try:
            for number, record in enumerate(csv.reader(text), start=1):
                cells: list[CellValue] = record  # type: ignore[assignment]
                guard.check(CSV_SHEET_NAME, number, cells, all_text=True)
                yield number, cells
        except csv.Error as exc:
            raise csv_failure(exc, number + 1, guard.limits.max_cell_chars) from exc


def csv_failure(exc: csv.Error, row_number: int, max_chars: int) -> UploadRejected:
    """The csv module stops at its own field limit (131,072 characters, above ours) before a
    missing quote makes it read the rest of the file into one cell: that is a cell too long."""
    if "field larger than field limit" not in str(exc):
        return corrupt(exc)
    return CellTooLong(
        f"Row {row_number} holds a cell of more than {max_chars} characters",
        params={"sheet": CSV_SHEET_NAME, "row": row_number, "column": None, "limit": max_chars},
    )
