"""Parse an XML part of an uploaded workbook, streaming, with no DTD and no entity."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from typing import Any, Protocol

from lxml import etree

from exporter.imports.readers.errors import XmlDtdRefused
from exporter.imports.readers.zip_guard import corrupt

MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PACKAGE_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
PROLOG_BYTES = 64 * 1024
ROOT_START = re.compile(r"<[A-Za-z_]")
# What reading a part of the zip raises when the workbook is damaged: its XML does not parse,
# its bytes do not inflate or end early, or the part a relationship names is not there.
PART_FAILURES = (etree.XMLSyntaxError, zipfile.BadZipFile, EOFError, OSError, KeyError)


def iter_elements(archive: zipfile.ZipFile, part: str, tags: tuple[str, ...]) -> Iterator[Any]:
    """Each element named in ``tags`` of ``part``, complete, as its end tag is read.

    The caller clears what it has read (``forget``) so that memory stays flat. A part that
    declares a DTD is refused: entities are never expanded, nor is anything fetched.
    """
    try:
        with archive.open(part) as stream:
            if declares_dtd(stream.read(PROLOG_BYTES)):
                raise dtd_refused(part)
        with archive.open(part) as stream:
            yield from parse(stream, part, tags)
    except PART_FAILURES as exc:
        raise corrupt(exc) from exc


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def parse(stream: Readable, part: str, tags: tuple[str, ...]) -> Iterator[Any]:
    events = etree.iterparse(
        stream,
        events=("end",),
        tag=tags,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    checked = False
    for _, element in events:
        if not checked:
            refuse_dtd(element, part)
            checked = True
        yield element
    if not checked and events.root is not None:
        refuse_dtd(events.root, part)


def declares_dtd(head: bytes) -> bool:
    """Whether a part's first bytes declare a DTD before its root element. Looked for before
    parsing: libxml2 reads the whole internal subset (and may stop on an entity bomb with an
    error of its own) before a parsed element can show that there was one."""
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    text = head.decode(encoding, "ignore")
    root = ROOT_START.search(text)
    return "<!DOCTYPE" in (text if root is None else text[: root.start()])


def refuse_dtd(element: Any, part: str) -> None:
    """Refuse a DTD that a prolog longer than PROLOG_BYTES hid from ``declares_dtd``."""
    info = element.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise dtd_refused(part)


def dtd_refused(part: str) -> XmlDtdRefused:
    return XmlDtdRefused(f"{part} declares a DTD, which no workbook needs", params={"part": part})


def forget(element: Any) -> None:
    """Free an element that has been read, and the siblings read before it."""
    element.clear()
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
