"""The plain form of the shared string table: each <si> one <t> (rich text and phonetic guides
are not plain and go to lxml), read with regular expressions as plain rows are."""

from __future__ import annotations

import re
from typing import Any, Final

from exporter.imports.readers.part_scan import Items
from exporter.imports.readers.plain_rows import TEXT, WS, plain_text_of, xml_text
from exporter.imports.readers.safe_xml import MAIN_NS

ITEM: Final = f'<si><t(?: xml:space="preserve")?>{TEXT}</t></si>'
TEXTS: Final = re.compile(r"<t[^>]*>([^<]*)</t>")


class PlainStrings:
    run = re.compile(f"(?:{WS}{ITEM})*+{WS}")

    def is_plain(self, data: bytes) -> str | None:
        """``data`` as text when it is nothing but whole <si> items in the plain form."""
        text = plain_text_of(data)
        return text if text is not None and self.run.fullmatch(text) is not None else None


def texts_of(run: str) -> list[str]:
    """The strings of a plain run, in order, their escapes still to decode."""
    return [xml_text(text) for text in TEXTS.findall(run)]


def strings_grammar(sst: Any) -> PlainStrings:
    return PlainStrings()


SHARED_STRINGS: Final = Items(
    # A start tag with a ">" in an attribute value is cut short here, and then read by lxml.
    container=re.compile(rb"<sst(?:[ \t\n][^>]*)?(?<!/)>"),
    container_tag=f"{MAIN_NS}sst",
    end=b"</sst>",
    item=b"<si",
    item_tag=f"{MAIN_NS}si",
    grammar=strings_grammar,
)
