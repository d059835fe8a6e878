"""What an xlsb's cells need to be read as dates: the 1904 flag and the date styles.

pyxlsb reads neither, so their records (MS-XLSB 2.4) are read here with pyxlsb's own record
reader, given handlers for the few records that hold them.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
from collections.abc import Iterator
from typing import Any, ClassVar

from pyxlsb import biff12
from pyxlsb.handlers import BasicHandler, Handler
from pyxlsb.reader import BIFF12Reader

from exporter.imports.readers.excel_dates import date_styles

# Excel writes its styles here, as pyxlsb assumes of the shared strings.
STYLES_PART = "xl/styles.bin"
WORKBOOK_PART = "xl/workbook.bin"
FMT = 0x002C  # BrtFmt, missing from pyxlsb's record ids
WB_PROP_1904 = 0x01  # BrtWbProp's f1904: the lowest bit of its leading flags
UINT16 = struct.Struct("<H")
UINT32 = struct.Struct("<I")
XF_HEAD = struct.Struct("<HH")


@dataclasses.dataclass(frozen=True)
class XlsbDates:
    """The styles (cell records' iStyleRef) that show a date, and the workbook's date system."""

    styles: frozenset[int]
    date1904: bool


class WbPropHandler(Handler):  # type: ignore[misc]
    def read(self, reader: Any, recid: int, reclen: int) -> int:
        flags: int = UINT32.unpack(reader.read(4))[0]
        return flags


class FmtHandler(Handler):  # type: ignore[misc]
    def read(self, reader: Any, recid: int, reclen: int) -> tuple[int, str]:
        format_id: int = UINT16.unpack(reader.read(2))[0]
        return format_id, reader.read_string() or ""


class XfHandler(Handler):  # type: ignore[misc]
    """BrtXF: its parent style's index, then its number format's id."""

    def read(self, reader: Any, recid: int, reclen: int) -> int:
        format_id: int = XF_HEAD.unpack(reader.read(4))[1]
        return format_id


class PartsReader(BIFF12Reader):  # type: ignore[misc]
    """Reads only the records below: every other one is skipped."""

    # Its own table: pyxlsb's is shared by every reader, so registering handlers there would
    # change how pyxlsb reads sheets.
    handlers: ClassVar[dict[int, Handler]] = {
        biff12.SHEETS: BasicHandler("sheets"),
        biff12.WORKBOOKPR: WbPropHandler(),
        FMT: FmtHandler(),
        biff12.XF: XfHandler(),
        biff12.CELLXFS: BasicHandler("cellXfs"),
        biff12.CELLXFS_END: BasicHandler("/cellXfs"),
    }


def read_dates(archive: zipfile.ZipFile) -> XlsbDates:
    """The date styles and date system of the workbook (none and 1900 when it says nothing)."""
    return XlsbDates(read_date_styles(archive), read_date1904(archive))


def read_date1904(archive: zipfile.ZipFile) -> bool:
    # BrtWbProp comes before the sheet list.
    for kind, item in records(archive, WORKBOOK_PART):
        if kind == biff12.WORKBOOKPR:
            return bool(item & WB_PROP_1904)
        if kind == biff12.SHEETS:
            break
    return False


def read_date_styles(archive: zipfile.ZipFile) -> frozenset[int]:
    codes: dict[int, str] = {}
    format_ids: list[int] = []
    # BrtXF records also describe the named cell styles (cellStyleXfs): only those between
    # BrtBeginCellXFs and its end are what cells point at.
    in_cell_xfs = False
    for kind, item in records(archive, STYLES_PART):
        if kind == FMT:
            codes[item[0]] = item[1]
        elif kind == biff12.CELLXFS:
            in_cell_xfs = True
        elif kind == biff12.XF and in_cell_xfs:
            format_ids.append(item)
        elif kind == biff12.CELLXFS_END:
            break
    return date_styles(format_ids, codes)


def records(archive: zipfile.ZipFile, part: str) -> Iterator[tuple[int, Any]]:
    """The part's records that the reader has a handler for; none when it is missing."""
    try:
        data = archive.read(part)
    except KeyError:
        return iter(())
    return iter(PartsReader(io.BytesIO(data)))
