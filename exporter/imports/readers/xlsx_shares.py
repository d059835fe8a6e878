"""One share of an xlsx workbook's rows, for one of several processes reading it together.

Every process inflates each sheet and cuts it into the same runs (see ``scan_part``); process
``share`` of ``shares`` reads the runs whose place is ``share`` modulo ``shares``, and the
first run of every sheet as well (its first row is the header every share needs). A run is
read here only when it reads exactly as reading the whole sheet in order would read it: in the
plain form, its first row numbered (or the sheet's first run), every row within the limits.
Anything else ends the share at that run, and the rest is read in order by one process.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterator

from exporter.imports.readers.base import Row, RowGuard
from exporter.imports.readers.errors import UploadRejected
from exporter.imports.readers.part_scan import SKIPPED, PlainRun, scan_part
from exporter.imports.readers.plain_rows import SHEET_ROWS
from exporter.imports.readers.xlsx_parts import read_workbook
from exporter.imports.readers.xlsx_reader import SheetContext, plain_rows, sheet_context

# How a plain run whose first row is numbered starts (the grammar puts r first).
NUMBERED_ROW = '<row r="'


@dataclasses.dataclass(frozen=True)
class RunRead:
    """A run of a sheet: its place, and its rows (None when it cannot be read by a share:
    the share ends there)."""

    run: int
    rows: list[Row] | None


@dataclasses.dataclass
class SharedSheet:
    """One sheet of the workbook, streaming the runs of one share."""

    name: str
    runs: Iterator[RunRead]


def read_xlsx_share(
    archive: zipfile.ZipFile, guard: RowGuard, share: int, shares: int
) -> Iterator[SharedSheet]:
    """Every sheet in the workbook's order, each streaming its first run and the runs of
    ``share``. ``guard`` checks each row's size; the rows of all shares are counted by
    whoever puts them together."""
    parts = read_workbook(archive)
    context = sheet_context(archive, parts, guard.limits)
    try:
        for sheet in parts.sheets:
            runs = share_runs(archive, sheet.part, sheet.name, context, guard, share, shares)
            yield SharedSheet(sheet.name, runs)
    finally:
        context.strings.close()


def share_runs(
    archive: zipfile.ZipFile,
    part: str,
    name: str,
    context: SheetContext,
    guard: RowGuard,
    share: int,
    shares: int,
) -> Iterator[RunRead]:
    pieces = scan_part(archive, part, SHEET_ROWS, lambda run: run == 0 or run % shares == share)
    for run, piece in enumerate(pieces):
        if piece is SKIPPED:
            continue
        rows = run_rows(piece, run, name, context, guard) if isinstance(piece, PlainRun) else None
        yield RunRead(run, rows)
        if rows is None:
            return


def run_rows(
    piece: PlainRun, run: int, name: str, context: SheetContext, guard: RowGuard
) -> list[Row] | None:
    """The run's rows, or None when reading them takes the rows before (a row with no
    number follows the one before it) or refuses them (the error and the row it names are
    left to the reading in order)."""
    if run and not piece.text.lstrip(" \t\n").startswith(NUMBERED_ROW) and piece.text.strip():
        return None
    try:
        rows = list(plain_rows(piece, 0, name, context, guard.limits))
        for number, cells in rows:
            guard.check(name, number, cells)
    except UploadRejected:
        return None
    return rows
