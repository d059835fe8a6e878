"""A reading process: one share of an xlsx upload's runs of rows, turned into the text of the
type's columns and sent, run by run, to the process that stages them (``parallel_rows``).

The process ends, without a word, at the first run it cannot read exactly as reading the
whole upload in order would (see ``read_xlsx_share``); its pipe's end tells the stager to
read on from there itself. Rows are counted by the stager, all shares together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from multiprocessing.connection import Connection
from pathlib import Path

from exporter.imports.layout import CellPicker, HeaderNames
from exporter.imports.readers import CellValue, ReadLimits, UploadRejected
from exporter.imports.readers.base import RowGuard
from exporter.imports.readers.xlsx_shares import read_xlsx_share
from exporter.imports.readers.zip_guard import open_checked_zip
from exporter.imports.upload_rows import Record
from exporter.processes import die_with_parent


@dataclasses.dataclass(frozen=True)
class RunRows:
    """One run of a sheet, read: how many rows it holds (empty ones included), the number of
    its last row (None: it has none), the sheet's first row when this is its first run, and
    (number, *values) of the rows after the header with text in the type's columns."""

    rows_read: int
    last_number: int | None
    header: list[CellValue] | None
    numbered: list[Record]


@dataclasses.dataclass(frozen=True)
class SheetDone:
    """The sheet has no further runs."""


@dataclasses.dataclass(frozen=True)
class ShareJob:
    """What a reading process reads: its share of the upload's runs, for one import type."""

    upload: Path
    limits: ReadLimits
    names: HeaderNames
    share: int
    shares: int


def read_share(job: ShareJob, out: Connection, parent_pid: int) -> None:
    """The reading process's whole life: send ``RunRows`` for each of its runs and
    ``SheetDone`` after each sheet, in the workbook's order."""
    die_with_parent(parent_pid)
    # Rows are counted where all shares' rows meet; here each row's size is checked.
    guard = RowGuard(dataclasses.replace(job.limits, max_rows=sys.maxsize))
    # An upload refused here is refused by the reading in order too, which says why.
    with (
        out,
        contextlib.suppress(UploadRejected),
        open_checked_zip(job.upload, job.limits) as archive,
    ):
        for sheet in read_xlsx_share(archive, guard, job.share, job.shares):
            picker: CellPicker | None = None
            for read in sheet.runs:
                if read.rows is None or (read.run == 0 and not read.rows):
                    # A sheet whose first run holds no row takes its header from a later one.
                    return
                header = read.rows[0][1] if read.run == 0 else None
                if header is not None:
                    picker = job.names.picker(header)
                if read.run % job.shares != job.share:
                    continue
                data = read.rows[1:] if header is not None else read.rows
                numbered: list[Record] = []
                if picker is not None:
                    values_of = picker.values
                    numbered = [
                        (number, *values)
                        for number, cells in data
                        if any(values := values_of(cells))
                    ]
                last = read.rows[-1][0] if read.rows else None
                out.send(RunRows(len(read.rows), last, header, numbered))
            out.send(SheetDone())
