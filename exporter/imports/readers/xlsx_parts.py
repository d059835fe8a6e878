"""The parts of an xlsx that its sheets need: the sheet list, shared strings, date styles."""

from __future__ import annotations

import dataclasses
import posixpath
import re
import zipfile
from typing import Any

from exporter.imports.readers.base import ReadLimits
from exporter.imports.readers.errors import CellTooLong
from exporter.imports.readers.excel_dates import date_styles
from exporter.imports.readers.part_scan import PlainRun, scan_part
from exporter.imports.readers.plain_strings import SHARED_STRINGS, texts_of
from exporter.imports.readers.safe_xml import (
    MAIN_NS,
    PACKAGE_REL_NS,
    REL_NS,
    forget,
    iter_elements,
)
from exporter.imports.readers.string_table import StringTable
from exporter.imports.readers.zip_guard import corrupt

# OOXML escapes a character XML cannot hold as _xHHHH_ (and a literal "_x" as _x005F_x).
ESCAPED_CHAR = re.compile(r"_x([0-9A-Fa-f]{4})_")
TEXT_TAG = f"{MAIN_NS}t"


@dataclasses.dataclass(frozen=True)
class SheetPart:
    name: str
    part: str


@dataclasses.dataclass(frozen=True)
class WorkbookParts:
    sheets: list[SheetPart]
    shared_strings_part: str | None
    styles_part: str | None
    date1904: bool


def read_workbook(archive: zipfile.ZipFile) -> WorkbookParts:
    """The sheets in their workbook order, where each lives, and the date system."""
    targets: dict[str, str] = {}
    shared_strings_part = styles_part = None
    for rel in iter_elements(
        archive, "xl/_rels/workbook.xml.rels", (f"{PACKAGE_REL_NS}Relationship",)
    ):
        target = part_path(rel.get("Target", ""))
        targets[rel.get("Id", "")] = target
        kind = rel.get("Type", "")
        if kind.endswith("/sharedStrings"):
            shared_strings_part = target
        elif kind.endswith("/styles"):
            styles_part = target
    sheets: list[SheetPart] = []
    date1904 = False
    for element in iter_elements(
        archive, "xl/workbook.xml", (f"{MAIN_NS}sheet", f"{MAIN_NS}workbookPr")
    ):
        if element.tag == f"{MAIN_NS}workbookPr":
            date1904 = element.get("date1904", "false").lower() in ("1", "true")
            continue
        sheet_part = targets.get(element.get(f"{REL_NS}id", ""))
        if sheet_part is None:
            raise corrupt(ValueError(f"sheet {element.get('name')!r} has no part"))
        sheets.append(SheetPart(element.get("name", ""), sheet_part))
    return WorkbookParts(
        sheets, present(archive, shared_strings_part), present(archive, styles_part), date1904
    )


def part_path(target: str) -> str:
    """A relationship's target as a path in the zip (targets are relative to xl/)."""
    if target.startswith("/"):
        return target[1:]
    return posixpath.normpath(posixpath.join("xl", target))


def present(archive: zipfile.ZipFile, part: str | None) -> str | None:
    if part is None:
        return None
    try:
        archive.getinfo(part)
    except KeyError:
        return None
    return part


def read_shared_strings(
    archive: zipfile.ZipFile, part: str | None, limits: ReadLimits
) -> StringTable:
    """The shared string table (sheets refer to it in any order)."""
    strings = StringTable()
    try:
        if part is not None:
            _read_strings(archive, part, limits, strings)
    except BaseException:
        strings.close()
        raise
    return strings.seal()


def _read_strings(
    archive: zipfile.ZipFile, part: str, limits: ReadLimits, strings: StringTable
) -> None:
    for piece in scan_part(archive, part, SHARED_STRINGS):
        if isinstance(piece, PlainRun):
            texts = [unescape(text) for text in texts_of(piece.text)]
        else:
            texts = [item_text(piece)]
            forget(piece)
        for text in texts:
            if len(text) > limits.max_cell_chars:
                raise shared_string_too_long(len(strings), limits)
            strings.append(text)


def shared_string_too_long(index: int, limits: ReadLimits) -> CellTooLong:
    """The error for a shared string longer than a cell may hold."""
    return CellTooLong(
        f"Shared string {index} holds more than {limits.max_cell_chars} characters",
        params={"sheet": None, "row": None, "column": None, "limit": limits.max_cell_chars},
    )


def item_text(item: Any) -> str:
    """The text of an <si> or <is>: its <t>, or its rich-text runs' <t> joined; the phonetic
    guides (<rPh>) that Japanese workbooks carry are not part of the text."""
    if len(item) == 1 and item[0].tag == TEXT_TAG:
        return unescape(item[0].text or "")
    parts = [
        node.text or "" for node in item.iter(TEXT_TAG) if node.getparent().tag != f"{MAIN_NS}rPh"
    ]
    return unescape("".join(parts))


def unescape(text: str) -> str:
    """Decode _xHHHH_ escapes; a pair of escaped surrogates becomes the character it encodes."""
    if "_x" not in text:
        return text
    decoded = ESCAPED_CHAR.sub(lambda match: chr(int(match.group(1), 16)), text)
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def read_date_styles(archive: zipfile.ZipFile, part: str | None) -> frozenset[int]:
    """The indexes of the cell styles whose number format shows a date or time."""
    if part is None:
        return frozenset()
    codes: dict[int, str] = {}
    dates: set[int] = set()
    for element in iter_elements(archive, part, (f"{MAIN_NS}numFmt", f"{MAIN_NS}cellXfs")):
        if element.tag == f"{MAIN_NS}numFmt":
            codes[int(element.get("numFmtId", "0"))] = element.get("formatCode", "")
            continue
        format_ids = (int(xf.get("numFmtId", "0")) for xf in element.iterchildren(f"{MAIN_NS}xf"))
        dates |= date_styles(format_ids, codes)
    return frozenset(dates)
