"""A part's items (a sheet's rows, the shared strings) streamed as runs of whole items in the
plain form, or as lxml elements where they are not.

The part is inflated in blocks and cut just before an item's start tag, so a run never splits
an item. What surrounds the items' container (the skeleton) still goes through lxml, with the
same refusals as every other part: the DTD check, entity rules and well-formedness. The first
run that is not plain hands the rest of the part, from that run on, to lxml; so does a part
whose skeleton is unusual (not UTF-8, items outside their container, no plain container tag).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Final, Protocol

from lxml import etree

from exporter.imports.readers.safe_xml import (
    PART_FAILURES,
    PROLOG_BYTES,
    declares_dtd,
    dtd_refused,
    parse,
    refuse_dtd,
)
from exporter.imports.readers.zip_guard import corrupt

# Measured: smaller runs keep memory low at no cost in speed (64 KiB reads 100,000 rows as
# fast as 1 MiB, with 20 MB less peak RSS).
BLOCK_BYTES = 64 * 1024
# A run past this with no item boundary in it (one enormous row) is left to lxml.
MAX_RUN_BYTES = 16 * 1024 * 1024
TAG_NAME_END = frozenset(b" \t\n/>")
UTF8_DECLARATION = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding=["']utf-8["']""", re.I)
ANY_DECLARATION = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding=", re.I)


class Grammar(Protocol):
    def is_plain(self, data: bytes) -> str | None:
        """``data`` as text when it is nothing but whole items in the plain form, else None."""


@dataclasses.dataclass(frozen=True)
class Items:
    """Where a part keeps its items, and the grammar of their plain form."""

    container: re.Pattern[bytes]  # the container's start tag, as written in the plain form
    container_tag: str
    end: bytes  # the container's end tag
    item: bytes  # how an item's start tag begins
    item_tag: str
    # The grammar, from the container element (what it declares changes what is plain).
    grammar: Callable[[Any], Grammar]


@dataclasses.dataclass(frozen=True)
class PlainRun:
    """Whole items in the plain form, as text."""

    text: str


# A run that was cut where every reader of the part cuts it but neither checked nor decoded:
# another process reads it (see ``scan_part``'s ``wanted``).
SKIPPED: Final = PlainRun("")


def scan_part(
    archive: zipfile.ZipFile,
    part: str,
    items: Items,
    wanted: Callable[[int], bool] | None = None,
) -> Iterator[PlainRun | Any]:
    """The items of ``part`` in order: ``PlainRun`` runs and lxml elements (to ``forget`` once
    read). Every failure to parse is a ``CorruptUpload``.

    ``wanted`` picks the runs to read by their place among the pieces yielded; the others
    are yielded as ``SKIPPED`` unread. Runs are cut at the same places whichever are read, so
    processes reading the same part with complementary choices share its runs between them.
    """
    try:
        with archive.open(part) as stream:
            yield from scan(stream, part, items, wanted)
    except PART_FAILURES as exc:
        raise corrupt(exc) from exc


def scan(
    stream: IO[bytes], part: str, items: Items, wanted: Callable[[int], bool] | None = None
) -> Iterator[PlainRun | Any]:
    head, found = read_to_container(stream, part, items)
    skeleton = Skeleton(part, items)
    grammar = None if found is None else skeleton.open(head[: found.end()])
    if found is None or grammar is None:
        yield from parse(Chained(head, stream), part, (items.item_tag,))
        return
    prefix, pending = head[: found.end()], head[found.end() :]
    ended = False
    runs = 0
    while not ended:
        end = pending.find(items.end)
        if end >= 0:
            cut, ended = end, True
        else:
            # Read more at once while no boundary turns up, so that an enormous item costs
            # reading it a few times over, not once per block.
            block = stream.read(max(BLOCK_BYTES, len(pending)))
            pending += block
            # A part that breaks off ends here; the skeleton's close() refuses it.
            cut, ended = (boundary(pending, items.item), False) if block else (len(pending), True)
            if cut <= 0 and not ended and len(pending) < MAX_RUN_BYTES:
                continue
        if cut > 0 and wanted is not None and not wanted(runs):
            runs += 1
            yield SKIPPED
            pending = pending[cut:]
            continue
        text = grammar.is_plain(pending[:cut]) if cut > 0 else None
        if text is None and (cut > 0 or not ended):
            yield from parse(Chained(prefix + pending, stream), part, (items.item_tag,))
            return
        if text is not None:
            runs += 1
            yield PlainRun(text)
        pending = pending[cut:]
    yield from skeleton.close(pending, stream)


def read_to_container(
    stream: IO[bytes], part: str, items: Items
) -> tuple[bytes, re.Match[bytes] | None]:
    """The part's first bytes, up to its items' container start tag if there is one soon."""
    head = stream.read(BLOCK_BYTES)
    if declares_dtd(head[:PROLOG_BYTES]):
        raise dtd_refused(part)
    while (found := items.container.search(head)) is None and len(head) < MAX_RUN_BYTES:
        block = stream.read(BLOCK_BYTES)
        if not block:
            break
        head += block
    return head, found


def boundary(data: bytes, item: bytes) -> int:
    """Where the last item that begins in ``data`` begins (0 when none does past the start)."""
    at = data.rfind(item)
    while at > 0:
        following = data[at + len(item) : at + len(item) + 1]
        if following and following[0] in TAG_NAME_END:
            return at
        at = data.rfind(item, 0, at)
    return 0


class Skeleton:
    """The part less its plain items, parsed by lxml as it streams past."""

    def __init__(self, part: str, items: Items) -> None:
        self.part = part
        self.items = items
        self.parser = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )

    def open(self, head: bytes) -> Grammar | None:
        """Feed the part up to and including the container's start tag; the grammar for its
        items, or None when the part is unusual enough to be read by lxml alone."""
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
            if event == "end" and element.tag == self.items.item_tag:
                return None
        if element is None or element.tag != self.items.container_tag:
            return None
        return self.items.grammar(element)

    def close(self, rest: bytes, stream: IO[bytes]) -> Iterator[Any]:
        """Feed what follows the items, to the end; items found there (outside their
        container) are yielded as elements."""
        data = rest
        while data:
            self.parser.feed(data)
            yield from self.found_items()
            data = stream.read(BLOCK_BYTES)
        self.parser.close()
        yield from self.found_items()

    def found_items(self) -> Iterator[Any]:
        for event, element in self.parser.read_events():
            if event == "end" and element.tag == self.items.item_tag:
                yield element
            elif event == "end" and is_top_level(element):
                # Whatever is inside has been read by now, items included.
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
