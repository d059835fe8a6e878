"""Uploaded files read into rows: csv, xlsx and xlsb, told apart by their bytes.

    for sheet in read_upload(path, ReadLimits()):
        for row_number, cells in sheet.rows:
            ...

Everything streams: a sheet's rows are read as they are asked for, so read each sheet's rows
before asking for the next sheet. Every failure is an ``UploadRejected`` with a stable code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from exporter.imports.readers.base import CellValue, ReadLimits, Row, RowGuard, Sheet
from exporter.imports.readers.csv_reader import read_csv
from exporter.imports.readers.detect import (
    UploadFormat,
    detect_format,
    require_csv_encoding,
    starts_as_zip,
)
from exporter.imports.readers.errors import (
    CellTooLong,
    CompressionTooHigh,
    CorruptUpload,
    MemberTooLarge,
    TooManyColumns,
    TooManyImportRows,
    TooManyParts,
    UnsupportedUpload,
    UploadRejected,
    XmlDtdRefused,
)
from exporter.imports.readers.xlsb_reader import read_xlsb
from exporter.imports.readers.xlsx_reader import read_xlsx
from exporter.imports.readers.zip_guard import open_checked_zip

__all__ = [
    "CellTooLong",
    "CellValue",
    "CompressionTooHigh",
    "CorruptUpload",
    "MemberTooLarge",
    "ReadLimits",
    "Row",
    "Sheet",
    "TooManyColumns",
    "TooManyImportRows",
    "TooManyParts",
    "UnsupportedUpload",
    "UploadFormat",
    "UploadRejected",
    "XmlDtdRefused",
    "read_upload",
    "upload_format",
]


def upload_format(path: Path, limits: ReadLimits) -> UploadFormat:
    """The upload's format, or ``UploadRejected`` when it is none we read or a zip bomb."""
    if not starts_as_zip(path):
        return detect_format(path)
    with open_checked_zip(path, limits) as archive:
        return detect_format(path, archive)


def read_upload(path: Path, limits: ReadLimits) -> Iterator[Sheet]:
    """The upload's sheets in order, each streaming its rows."""
    guard = RowGuard(limits)
    if not starts_as_zip(path):
        yield from read_csv(path, require_csv_encoding(path), guard)
        return
    with open_checked_zip(path, limits) as archive:
        if detect_format(path, archive) is UploadFormat.XLSX:
            yield from read_xlsx(archive, guard)
        else:
            yield from read_xlsb(archive, guard)
