"""The plain form of a sheet's rows, read with regular expressions instead of an XML parser.

Nearly every xlsx (xlsxwriter's, Excel's) writes its rows in one narrow form: attributes in
schema order, double quotes, no comments, no character references. Text in that form is
checked against a strict grammar that accepts only well-formed XML with the meaning lxml gives
it; anything else (a comment, a CDATA section, a namespace declaration, a carriage return) is
not plain and goes to lxml. Reading a cell this way costs a fraction of building its elements.
"""

from __future__ import annotations

import re
from typing import Any, Final

from exporter.imports.readers.part_scan import Items
from exporter.imports.readers.safe_xml import MAIN_NS

# What makes a run not plain wherever it is, looked for in its bytes once (keeping the classes
# below small keeps the grammar fast): the control characters XML forbids, carriage returns
# (XML turns them into line feeds), U+FFFE and U+FFFF, and "]]>".
CONTROL_BYTES: Final = bytes([*range(0x09), 0x0B, *range(0x0C, 0x20)])
NOT_PLAIN_BYTES: Final = re.compile(rb"\xef\xbf[\xbe\xbf]|]]>")
TEXT_CHAR: Final = "[^<&]"
# ">" is left out of attribute values so that the reading below may skip to the first ">".
# Whitespace that XML would turn into spaces is not: the values read (r, s, t) admit none.
VALUE_CHAR: Final = '[^"<&>]'
# The five predefined entities and character references (openpyxl writes every character past
# ASCII as one); nothing else is plain.
ENTITY: Final = r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});"
TEXT: Final = f"{TEXT_CHAR}*+(?:{ENTITY}{TEXT_CHAR}*+)*+"
WS: Final = r"[ \t\n]*+"
ROW_ATTRS: Final = (
    "spans",
    "s",
    "customFormat",
    "ht",
    "hidden",
    "customHeight",
    "outlineLevel",
    "collapsed",
    "thickTop",
    "thickBot",
    "ph",
)
FORMULA_ATTRS: Final = (
    "t",
    "aca",
    "ref",
    "dt2D",
    "dtr",
    "del1",
    "del2",
    "r1",
    "r2",
    "ca",
    "si",
    "bx",
)
# Excel's row attribute from the x14ac namespace: plain only where the sheet declares it.
DY_DESCENT: Final = "x14ac:dyDescent"
X14AC_NS: Final = "http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"
XML_ENTITIES: Final = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"))
REFERENCE: Final = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
NAMED: Final = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def optional_attrs(names: tuple[str, ...]) -> str:
    """Each attribute at most once and in this order, so that none can be given twice."""
    return "".join(f'(?: {name}="{VALUE_CHAR}*")?' for name in names)


CELL: Final = (
    f'<c(?: r="[A-Z]+[0-9]+")?(?: s="[0-9]+")?(?: t="[A-Za-z]+")?'
    f"{optional_attrs(('cm', 'vm', 'ph'))}"
    f"(?:/>|>(?:<f{optional_attrs(FORMULA_ATTRS)}(?:/>|>{TEXT}</f>))?"
    f"(?:<v>{TEXT}</v>)?"
    f'(?:<is><t(?: xml:space="preserve")?>{TEXT}</t></is>)?</c>)'
)
# Row starts and cells, read once the run is known to be plain: looser, hence faster, and
# reading the same parts because the grammar above leaves only one way to read each.
ITEMS: Final = re.compile(
    r'(<row)(?: r="([0-9]+)")?[^>]*>'
    r'|<c(?: r="([A-Z]+)[0-9]+")?(?: s="([0-9]+)")?(?: t="([A-Za-z]+)")?(?: [cvp][mh]="[^"]*")*'
    r'(?:/>|>(?:<f(?: [^=]+="[^"]*")*(?:/>|>[^<]*</f>))?(?:<v>([^<]*)</v>)?'
    r'(?:(<is>)<t(?: xml:space="preserve")?>([^<]*)</t></is>)?</c>)'
)
Item = tuple[str, str, str, str, str, str, str, str]


class PlainRows:
    """The plain grammar for one sheet (whether x14ac is declared changes what is plain)."""

    def __init__(self, x14ac_declared: bool) -> None:
        row_attrs = optional_attrs(ROW_ATTRS)
        if x14ac_declared:
            row_attrs += optional_attrs((DY_DESCENT,))
        row = f'<row(?: r="[0-9]+")?{row_attrs}(?:/>|>(?:{WS}{CELL})*+{WS}</row>)'
        self.run = re.compile(f"(?:{WS}{row})*+{WS}")

    def is_plain(self, data: bytes) -> str | None:
        """``data`` as text when it is nothing but whole rows in the plain form, else None."""
        text = plain_text_of(data)
        return text if text is not None and self.run.fullmatch(text) is not None else None


def plain_text_of(data: bytes) -> str | None:
    """``data`` as text, or None when something in it keeps it from being plain whatever
    the grammar (or it is no UTF-8)."""
    if len(data.translate(None, CONTROL_BYTES)) != len(data) or (
        (b"\xef\xbf" in data or b"]]>" in data) and NOT_PLAIN_BYTES.search(data)
    ):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "&#" in text and not references_allowed(text) else text


def items_of(text: str) -> list[Item]:
    """The row starts and cells of a plain run, in order: ("<row", its r or "", "" ...) for
    a row; ("", "", column letters, s, t, <v> text, "<is>" when it holds an inline string,
    that string) for a cell, "" for what it leaves out."""
    return ITEMS.findall(text)


def sheet_grammar(sheet_data: Any) -> PlainRows:
    return PlainRows(sheet_data.nsmap.get("x14ac") == X14AC_NS)


SHEET_ROWS: Final = Items(
    container=re.compile(rb"<sheetData>"),
    container_tag=f"{MAIN_NS}sheetData",
    end=b"</sheetData>",
    item=b"<row",
    item_tag=f"{MAIN_NS}row",
    grammar=sheet_grammar,
)


def xml_text(text: str) -> str:
    """Plain text with its entity and character references replaced."""
    if "&" not in text:
        return text
    if "&#" in text:
        # In one pass: a reference's character is never read again as markup.
        return REFERENCE.sub(referenced, text)
    for entity, char in XML_ENTITIES:
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")


def referenced(match: re.Match[str]) -> str:
    name = match.group(1)
    return NAMED[name] if name[0] != "#" else chr(code_of(name))


def code_of(reference: str) -> int:
    """#65 → 65, #x41 → 65."""
    return int(reference[2:], 16) if reference[1] == "x" else int(reference[1:])


def references_allowed(text: str) -> bool:
    """Whether every character reference in ``text`` (formulas' included) is to a character
    XML allows; lxml refuses a part where one is not."""
    return all(is_xml_char(code_of(name)) for name in REFERENCE.findall(text) if name[0] == "#")


def is_xml_char(code: int) -> bool:
    """Whether XML 1.0 allows the character (its Char production)."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )
