"""The rows an upload holds for an import type: every sheet whose first row is the type's
header, numbered in the order read, skipping rows with nothing in the type's columns."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from pathlib import Path

from exporter.imports.layout import SheetLayout, match_header, no_header, same_columns
from exporter.imports.readers import CellValue, ReadLimits, read_upload
from exporter.imports.registry import ImportHandler


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


class UploadRows:
    """Reads an upload once, front to back. Blocking: run it in a thread.

    Two reads of the same file give the same rows with the same positions, which is how the
    report of rejected rows finds their original cells again.
    """

    def __init__(self, path: Path, handler: ImportHandler, limits: ReadLimits) -> None:
        self._handler = handler
        self._rows = self._read(path, limits)
        self.sheets: list[str] = []
        self.layouts: list[SheetLayout] = []

    @property
    def layout(self) -> SheetLayout:
        """The first matching sheet's layout (every other one holds the same columns)."""
        return self.layouts[0]

    def start(self) -> None:
        """Read up to the first matching sheet's header; HeaderMissing if there is none."""
        self._pending: UploadRow | None = next(self._rows, None)

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

    def _read(self, path: Path, limits: ReadLimits) -> Generator[UploadRow, None, None]:
        seq = 0
        for sheet in read_upload(path, limits):
            first = next(sheet.rows, None)
            layout = None if first is None else match_header(self._handler, first[1])
            if layout is None:
                # Not one of the type's sheets (a notes sheet, an empty one): skipped whole.
                for _ in sheet.rows:
                    pass
                continue
            if self.layouts:
                same_columns(self.layout, sheet.name, layout, self.sheets[0])
            index = len(self.sheets)
            self.sheets.append(sheet.name)
            self.layouts.append(layout)
            for number, cells in sheet.rows:
                values = layout.values(cells)
                if any(values):
                    seq += 1
                    yield UploadRow(seq, index, number, cells, values)
        if not self.layouts:
            raise no_header(self._handler)
