"""A sheet part streamed as runs of whole rows in the plain form, or lxml rows where it is not.

The part is inflated in blocks and cut just before a ``<row``, so a run never splits a row.
What surrounds <sheetData> (the skeleton) still goes through lxml, with the same refusals as
every other part: the DTD check, entity rules and well-formedness. The first run that is not
plain hands the rest of the part, from that run on, to lxml; so does a sheet whose skeleton is
unusual (not UTF-8, rows outside <sheetData>, no plain <sheetData> tag).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

from exporter.imports.readers.plain_rows import PlainRows
from exporter.imports.readers.safe_xml import (
    MAIN_NS,
    PROLOG_BYTES,
    declares_dtd,
    dtd_refused,
    parse,
    refuse_dtd,
)
from exporter.imports.readers.zip_guard import corrupt

ROW_TAG = f"{MAIN_NS}row"
SHEET_DATA_TAG = f"{MAIN_NS}sheetData"
X14AC_NS = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"
BLOCK_BYTES = 1024 * 1024
# A run past this with no row boundary in it (one enormous row) is left to lxml.
MAX_RUN_BYTES = 16 * 1024 * 1024
SHEET_DATA_START = b"<sheetData>"
SHEET_DATA_END = b"</sheetData>"
ROW_START = b"<row"
ROW_START_NEXT = frozenset(b" \t\n/>")
UTF8_DECLARATION = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding=["']utf-8["']""", re.I)
ANY_DECLARATION = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding=", re.I)


@dataclasses.dataclass(frozen=True)
class PlainRun:
    """Whole rows in the plain form, as text."""

    text: str


def scan_sheet(archive: zipfile.ZipFile, part: str) -> Iterator[PlainRun | Any]:
    """The rows of ``part`` in order: ``PlainRun`` runs and lxml <row> elements (to ``forget``
    once read). Every failure to parse is a ``CorruptUpload``."""
    try:
        with archive.open(part) as stream:
            yield from scan(stream, part)
    except (etree.XMLSyntaxError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise corrupt(exc) from exc


def scan(stream: IO[bytes], part: str) -> Iterator[PlainRun | Any]:
    head = stream.read(BLOCK_BYTES)
    if declares_dtd(head[:PROLOG_BYTES]):
        raise dtd_refused(part)
    while SHEET_DATA_START not in head and len(head) < MAX_RUN_BYTES:
        block = stream.read(BLOCK_BYTES)
        if not block:
            break
        head += block
    start = head.find(SHEET_DATA_START)
    skeleton = Skeleton(part)
    grammar = skeleton.open(head[: start + len(SHEET_DATA_START)]) if start >= 0 else None
    if grammar is None:
        yield from parse(Chained(head, stream), part, (ROW_TAG,))
        return
    prefix = head[: start + len(SHEET_DATA_START)]
    pending = head[len(prefix) :]
    ended = False
    while not ended:
        end = pending.find(SHEET_DATA_END)
        if end >= 0:
            cut, ended = end, True
        else:
            block = stream.read(BLOCK_BYTES)
            pending += block
            # A part that breaks off ends here; the skeleton's close() refuses it.
            cut, ended = (row_boundary(pending), False) if block else (len(pending), True)
            if cut <= 0 and not ended and len(pending) < MAX_RUN_BYTES:
                continue
        run = plain_text(pending[:cut], grammar) if cut > 0 else None
        if run is None and (cut > 0 or not ended):
            yield from parse(Chained(prefix + pending, stream), part, (ROW_TAG,))
            return
        if run is not None:
            yield run
        pending = pending[cut:]
    yield from skeleton.close(pending, stream)


def row_boundary(data: bytes) -> int:
    """Where the last row that begins in ``data`` begins (0 when none does past the start)."""
    at = data.rfind(ROW_START)
    while at > 0:
        following = data[at + len(ROW_START) : at + len(ROW_START) + 1]
        if following and following[0] in ROW_START_NEXT:
            return at
        at = data.rfind(ROW_START, 0, at)
    return 0


def plain_text(data: bytes, grammar: PlainRows) -> PlainRun | None:
    text = grammar.is_plain(data)
    return None if text is None else PlainRun(text)


class Skeleton:
    """The part less its plain rows, parsed by lxml as it streams past."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.parser = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )

    def open(self, head: bytes) -> PlainRows | None:
        """Feed the part up to and including <sheetData>; the grammar for its rows, or None
        when the sheet is unusual enough to be read by lxml alone."""
        if ANY_DECLARATION.match(head) and not UTF8_DECLARATION.match(head):
            return None
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return None
        try:
            self.parser.feed(head)
        except etree.XMLSyntaxError:
            return None
        element = None
        for event, element in self.parser.read_events():
            refuse_dtd(element, self.part)
            if event == "end" and element.tag == ROW_TAG:
                return None
        if element is None or element.tag != SHEET_DATA_TAG:
            return None
        return PlainRows(element.nsmap.get("x14ac") == X14AC_NS)

    def close(self, rest: bytes, stream: IO[bytes]) -> Iterator[Any]:
        """Feed what follows the rows, to the end; rows found there (outside <sheetData>)
        are yielded as elements."""
        data = rest
        while data:
            self.parser.feed(data)
            yield from self.rows()
            data = stream.read(BLOCK_BYTES)
        self.parser.close()
        yield from self.rows()

    def rows(self) -> Iterator[Any]:
        for event, element in self.parser.read_events():
            if event == "end" and element.tag == ROW_TAG:
                yield element
            elif event == "end" and is_top_level(element):
                # Whatever is inside has been read by now, rows included.
                element.clear()


def is_top_level(element: Any) -> bool:
    parent = element.getparent()
    return parent is not None and parent.getparent() is None


class Chained:
    """Bytes already read, then the rest of a stream, read as one stream."""

    def __init__(self, first: bytes, rest: IO[bytes]) -> None:
        self.first = first
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self.first:
            return self.rest.read(size)
        if size < 0:
            data, self.first = self.first + self.rest.read(), b""
            return data
        data, self.first = self.first[:size], self.first[size:]
        return data
