"""The rows an upload holds for an import type: every sheet whose first row is the type's
header, numbered in the order read, skipping rows with nothing in the type's columns."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from exporter.imports.layout import SheetLayout, match_header, no_header, same_columns
from exporter.imports.readers import CellValue, ReadLimits, Row, read_upload
from exporter.imports.registry import ImportHandler

# What is staged of a row: (seq, sheet, row number, the text of each of the type's columns).
Record = tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class UploadRow:
    """One row: its position among the rows read, its sheet (an index into
    ``UploadRows.sheets``), its number in that sheet, its cells, and its text in the type's
    columns."""

    seq: int
    sheet: int
    number: int
    cells: list[CellValue]
    values: list[str | None]


class RowSource(Protocol):
    """An upload's rows as staging reads them, however they are read."""

    @property
    def layout(self) -> SheetLayout:
        """The first matching sheet's layout (every other one holds the same columns)."""

    @property
    def sheets(self) -> list[str]:
        """The names of the matching sheets met so far (a record's sheet is an index here)."""

    def start(self) -> None:
        """Read up to the first matching sheet's header; HeaderMissing if there is none."""

    def records(self, size: int) -> list[Record]:
        """Up to ``size`` further records (more if that is cheaper); an empty list at the end."""

    def stop(self) -> None:
        """End at once whatever reads beside this thread (safe from any thread)."""

    def close(self) -> None:
        """Stop reading and let go of the file (in the thread that reads)."""


class MatchedSheets:
    """The sheets of one upload that are the type's, as they are met in order, and the
    positions of their rows."""

    def __init__(self, handler: ImportHandler) -> None:
        self.handler = handler
        self.sheets: list[str] = []
        self.layouts: list[SheetLayout] = []
        self.seq = 0

    def match(self, name: str, header: Sequence[CellValue] | None) -> int | None:
        """The sheet's index among the matching ones, or None when its first row (None: it
        has none) is not the type's header and the sheet is skipped."""
        layout = None if header is None else match_header(self.handler, header)
        if layout is None:
            return None
        if self.layouts:
            same_columns(self.layouts[0], name, layout, self.sheets[0])
        self.sheets.append(name)
        self.layouts.append(layout)
        return len(self.sheets) - 1

    def sheet_rows(self, name: str, rows: Iterator[Row]) -> Iterator[UploadRow]:
        """A sheet's rows from its first (its header) on."""
        first = next(rows, None)
        sheet = self.match(name, None if first is None else first[1])
        yield from self.rows_after_header(sheet, rows)

    def rows_after_header(self, sheet: int | None, rows: Iterator[Row]) -> Iterator[UploadRow]:
        """The rows of a matching sheet that hold something in the type's columns; those of a
        skipped one (None) are read, and so counted and checked, but give nothing."""
        if sheet is None:
            for _ in rows:
                pass
            return
        values_of = self.layouts[sheet].values
        for number, cells in rows:
            values = values_of(cells)
            if any(values):
                self.seq += 1
                yield UploadRow(self.seq, sheet, number, cells, values)

    def records(self, sheet: int, numbered: list[Record]) -> list[Record]:
        """(number, *values) of a sheet's rows, in order, as records."""
        seq = self.seq
        self.seq += len(numbered)
        return [(position, sheet, *row) for position, row in enumerate(numbered, seq + 1)]

    def finish(self) -> None:
        """Raise HeaderMissing if no sheet matched."""
        if not self.layouts:
            raise no_header(self.handler)


class UploadRows:
    """Reads an upload once, front to back, in this process. Blocking: run it in a thread.

    Two reads of the same file give the same rows with the same positions, which is how the
    report of rejected rows finds their original cells again.
    """

    def __init__(self, path: Path, handler: ImportHandler, limits: ReadLimits) -> None:
        self._matched = MatchedSheets(handler)
        self._rows = self._read(path, limits)
        self.sheets = self._matched.sheets
        self.layouts = self._matched.layouts

    @property
    def layout(self) -> SheetLayout:
        """The first matching sheet's layout (every other one holds the same columns)."""
        return self.layouts[0]

    def start(self) -> None:
        """Read up to the first matching sheet's header; HeaderMissing if there is none."""
        self._pending: UploadRow | None = next(self._rows, None)

    def stop(self) -> None:
        """Nothing reads beside the reading thread."""

    def close(self) -> None:
        """Stop reading (the file is closed)."""
        self._rows.close()

    def batch(self, size: int) -> list[UploadRow]:
        """Up to ``size`` further rows; an empty list at the end."""
        rows: list[UploadRow] = []
        if self._pending is not None:
            rows.append(self._pending)
            self._pending = None
        for row in self._rows:
            rows.append(row)
            if len(rows) >= size:
                break
        return rows

    def records(self, size: int) -> list[Record]:
        """Up to ``size`` further rows as staged; an empty list at the end."""
        return [(row.seq, row.sheet, row.number, *row.values) for row in self.batch(size)]

    def _read(self, path: Path, limits: ReadLimits) -> Generator[UploadRow, None, None]:
        for sheet in read_upload(path, limits):
            yield from self._matched.sheet_rows(sheet.name, sheet.rows)
        self._matched.finish()
