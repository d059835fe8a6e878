"""Sheet rows rendered by PostgreSQL, byte for byte as xlsxwriter's constant_memory mode writes
them for the same values (:class:`~exporter.exports.formats.xlsx_workbook.XlsxExportWriter`).

xlsxwriter writes a finished row as ``<row r="N">`` and its cells: ``<c r="A2"><v>…</v></c>``
for a number (``%.16G``), ``<c r="B2" t="inlineStr"><is><t>…</t></is></c>`` for text, the date
style on a date's serial number; no element for a null, no row for a row of nulls. Here the
same text is concatenated in SQL over the values the xlsx statement yields (its ``value_sql``,
so kinds, labels and time zones stay defined there), one result row per sheet row.

Every step is an expression written inline: a SQL function is called once per value, and was
10 times slower. Each level of the statement computes its values once per row (see
``rendered_rows_sql``): a date's integer part and fraction, its digits, a row's texts joined
and numbered, then the XML. What makes a text need escaping, a ``preserve`` or a cut is rare,
so one regular expression over a row's texts sends nearly every row the short way, and only
the rare ones pay for the exact steps.

The differential test (``tests/integration/test_xlsx_row_sql.py``) writes hostile values and a
seeded random fuzz both ways and compares the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from xlsxwriter.utility import xl_col_to_name

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats.xlsx_workbook import (
    DATE_STYLE_INDEX,
    KEEP_UTF16_UNITS,
    MAX_CELL_UTF16_UNITS,
    TRUNCATION_MARKER,
)

_CONTROL_CHARACTERS = [*range(0x01, 0x09), *range(0x0B, 0x20)]
# Python's \s, which decides xml:space="preserve" (xlsxwriter's _preserve_whitespace), less
# the characters escaped before it looks: tested on the escaped text, the same answer.
_WHITESPACE = (
    0x09, 0x0A, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
    0x205F, 0x3000,
)  # fmt: skip
_WHITESPACE_CODES = ", ".join(str(code) for code in _WHITESPACE)
# A row's texts take the short way when one regular expression finds none of this in them all,
# joined with DEL (U+007F) before, between and after: what xlsxwriter's escaping looks for (a
# control character other than tab and newline, U+FFFE, U+FFFF, a literal _xHHHH_ escape), the
# three characters it writes as entities, Unicode whitespace anywhere, and ASCII whitespace next
# to a DEL, at the end of a text. DEL itself is written as it is: in a text it can only send the
# row the exact way. (Measured on the accounts, per row: this 1.3 µs, a test of each text's
# ends with right() 1.2 µs alone; concat() costs twice what || does.)
_SEPARATOR = "U&'\\007F'"
_UNICODE_WHITESPACE = "".join(f"\\u{code:04x}" for code in _WHITESPACE if code > 0x7F)
_NEEDS_MORE = (
    rf"'[&<>\x01-\x08\x0b-\x1f{_UNICODE_WHITESPACE}\ufffe\uffff]|_x[0-9A-Fa-f]{{4}}_"
    r"|\x7f[\t\n ]|[\t\n ]\x7f'"
)
# A row's texts of at most this many bytes together each have at most as many UTF-16 units.
_FITS_BYTES = MAX_CELL_UTF16_UNITS // 2

# Kinds the xlsx statement gives one value (the others: the number or date, else its text).
_ONE_VALUE = (ColumnKind.TEXT, ColumnKind.ENUM)

_TEXT_TAG = ' t="inlineStr"><is><t>'
_PRESERVED_TEXT_TAG = ' t="inlineStr"><is><t xml:space="preserve">'
_TEXT_END = "</t></is></c>"

# Every serial number from 61 on (1900-03-01, the first written as a date) is a multiple of
# 2 ** -47, the unit of its fraction's exact digits.
_FRACTION_UNIT = 2**47


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _control_escaped(value: str) -> str:
    """``value`` with xlsxwriter's control escapes: a literal ``_xHHHH_`` gets ``_x005F``
    before it, then each control character becomes ``_xHHHH_``, then U+FFFE and U+FFFF."""
    escaped = rf"regexp_replace({value}, '(_x[0-9A-Fa-f]{{4}}_)', '_x005F\1', 'g')"
    for code in [*_CONTROL_CHARACTERS, 0xFFFE, 0xFFFF]:
        escaped = f"replace({escaped}, chr({code}), '_x{code:04X}_')"
    return escaped


def _entities(value: str) -> str:
    return f"replace(replace(replace({value}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"


def _cut(value: str) -> str:
    """A text over a cell's UTF-16 units cut as ``cut_to_cell`` cuts it: the longest start that
    leaves room for the marker, a character of two units kept whole or not at all."""
    keep = KEEP_UTF16_UNITS
    head = (
        f"(SELECT string_agg(ch, '' ORDER BY n) FROM (SELECT ch, n, sum(CASE WHEN ascii(ch)"
        f" > 65535 THEN 2 ELSE 1 END) OVER (ORDER BY n) AS units FROM regexp_split_to_table("
        f"left({value}, {keep}), '') WITH ORDINALITY AS t(ch, n)) AS chars WHERE units <= {keep})"
    )
    astral = f"char_length(regexp_replace({value}, '[^\\U00010000-\\U0010FFFF]', '', 'g'))"
    return (
        f"CASE WHEN char_length({value}) + {astral} > {MAX_CELL_UTF16_UNITS}"
        f" THEN {head} || {_sql_string(TRUNCATION_MARKER)} ELSE {value} END"
    )


def _exact_body(value: str) -> str:
    """The cell body (after ``<c r="B2"``) of any text: cut, escaped, preserved or given as one
    run, as xlsxwriter writes it. A subquery names the escaped text once; it only runs for the
    rare values the regular expression sends here."""
    preserve = f"ascii(e) IN ({_WHITESPACE_CODES}) OR ascii(right(e, 1)) IN ({_WHITESPACE_CODES})"
    # A text that starts with "<r>" and ends with "</r>" would be taken by xlsxwriter for
    # rich-text XML; the writer gives it as one run of plain text (XlsxExportWriter).
    body = (
        f"CASE WHEN e LIKE '&lt;r&gt;%&lt;/r&gt;'"
        f""" THEN ' t="inlineStr"><is><r><t>' || e || '</t></r></is></c>'"""
        f" WHEN {preserve} THEN {_sql_string(_PRESERVED_TEXT_TAG)} || e || '{_TEXT_END}'"
        f" ELSE '{_TEXT_TAG}' || e || '{_TEXT_END}' END"
    )
    # In the C collation: a column's own may be nondeterministic, which pattern matching and
    # replace() refuse.
    bytewise = f'({value} COLLATE "C")'
    escaped = _entities(_control_escaped(_cut(bytewise)))
    return f"(SELECT {body} FROM (SELECT {escaped} AS e) AS x)"


def _joined_texts(values: Sequence[str]) -> str:
    joined = " || ".join(
        [_SEPARATOR, *(f"coalesce({value}, '') || {_SEPARATOR}" for value in values)]
    )
    return f'({joined}) COLLATE "C"'


def _plain_texts() -> str:
    """Whether every text of a row is written as it is between its cell tags (``joined``)."""
    return f"octet_length(joined) <= {_FITS_BYTES} AND joined !~ {_NEEDS_MORE}"


def _text_xml(start: str, value: str) -> str:
    """The cell of a text value (nothing for a null) in a row whose texts are ``plain``."""
    return (
        f"CASE WHEN {value} IS NULL THEN ''"
        f" WHEN plain THEN {start} || '{_TEXT_TAG}' || {value} || '{_TEXT_END}'"
        f" ELSE {start} || {_exact_body(value)} END"
    )


def _integer_part(value: str) -> str:
    """The integer part of a naive timestamp's serial number (whole seconds, from 1900-03-01):
    days since 1899-12-31, plus one for Excel's 1900-02-29. A day's fraction is at most 86399 /
    86400, never rounded up to 1 in the sum."""
    return f"(({value})::date - DATE '1899-12-31' + 1)"


def _fraction(value: str) -> str:
    """The fraction of the serial number as xlsxwriter computes it, ``days + seconds / 86400.0
    + 1`` in floating point, less its integer part (exact)."""
    serial = (
        f"(({value})::date - DATE '1899-12-31')::float8"
        f" + date_part('epoch', ({value})::time) / 86400::float8 + 1::float8"
    )
    return f"({serial} - {_integer_part(value)}::float8)"


def _scale(integer: str) -> str:
    """10 ** d, d the decimals ``%.16G`` keeps: 16 less the digits of the integer part."""
    cases = " ".join(
        f"WHEN {integer} >= {10**digits} THEN {10 ** (15 - digits)}::float8"
        for digits in range(6, 1, -1)
    )
    return f"CASE {cases} ELSE {10**14}::float8 END"


def _serial_text(integer: str, fraction: str, scale: str, product: str) -> str:
    """The ``%.16G`` text of a serial number from its parts: the integer part, then the
    fraction F to d decimals (``product`` is F * ``scale``, 10 ** d), rounded, trailing zeros
    dropped.

    F * 10**d in floating point is within 0.008 of the exact product (below 10**14, its unit
    in the last place is at most 2**-6), so rounding it is exact unless the product is that
    close to a half; then the digits come from the exact binary value: F = K / 2**47, and
    round(K * 10**d / 2**47) in numeric. A tie cannot happen: it needs F = odd / 2**(d+1),
    which a whole second never gives (86400 = 2**7 * 675), so rounding half up agrees with
    printf's half-even. 10**d is added to keep the leading zeros, its leading 1 dropped.
    """
    exact = (
        f"(div(({fraction} * {_FRACTION_UNIT}::float8)::bigint::numeric * {scale}::numeric"
        f" + {_FRACTION_UNIT // 2}, {_FRACTION_UNIT}) + {scale}::numeric)::bigint"
    )
    digits = (
        f"CASE WHEN abs({product} - floor({product}) - 0.5::float8) > 0.01::float8"
        f" THEN (round({product}) + {scale})::bigint ELSE {exact} END"
    )
    return (
        f"{integer}::text || CASE WHEN {fraction} = 0 THEN ''"
        f" ELSE '.' || rtrim(substr(({digits})::text, 2), '0') END"
    )


class _Cell:
    """One column's cell: the values the window level prepares, and the outer level's XML."""

    def __init__(self, column: Column, index: int, first_value: int) -> None:
        self.kind = column.kind
        self.index = index
        self.start = f"'<c r=\"{xl_col_to_name(index)}' || r || '\"'"
        self.value = f"v{first_value}"
        # An INTEGER's or a DATETIME's text, when Excel holds no number or date for it.
        self.text = f"v{first_value + 1}"

    def parts(self) -> list[str]:
        """A date's integer part and fraction (computed below the window level)."""
        if self.kind is not ColumnKind.DATETIME:
            return []
        n = self.index
        return [f"{_integer_part(self.value)} AS i{n}", f"{_fraction(self.value)} AS f{n}"]

    def prepared(self) -> list[str]:
        """A date's scale, and its fraction times it (computed in the window level)."""
        if self.kind is not ColumnKind.DATETIME:
            return []
        n = self.index
        return [f"{_scale(f'i{n}')} AS s{n}", f"f{n} * {_scale(f'i{n}')} AS y{n}"]

    def texts(self) -> list[str]:
        return [self.value if self.kind in _ONE_VALUE else self.text]

    def xml(self) -> str:
        n = self.index
        if self.kind is ColumnKind.INTEGER:
            # A bigint's text is the %.16G of a number below 10**15.
            number = f"{self.start} || '><v>' || {self.value} || '</v></c>'"
            return (
                f"CASE WHEN {self.value} IS NOT NULL THEN {number}"
                f" ELSE {_text_xml(self.start, self.text)} END"
            )
        if self.kind is ColumnKind.DATETIME:
            serial = _serial_text(f"i{n}", f"f{n}", f"s{n}", f"y{n}")
            return (
                f"CASE WHEN i{n} IS NOT NULL THEN {self.start}"
                f" || ' s=\"{DATE_STYLE_INDEX}\"><v>' || {serial} || '</v></c>'"
                f" ELSE {_text_xml(self.start, self.text)} END"
            )
        return _text_xml(self.start, self.value)


def rendered_rows_sql(columns: Sequence[Column], ranged: str, first_row_arg: int) -> str:
    """A statement giving each row of ``ranged`` (the xlsx statement of ``columns``, see
    :class:`~exporter.exports.sql.ExportSql`) as the UTF-8 bytes of its ``<row>`` element
    (empty for a row of nulls), in order. Its rows are numbered from the sheet row after the
    one bound as ``$first_row_arg``."""
    cells: list[_Cell] = []
    position = 0
    for index, column in enumerate(columns):
        cells.append(_Cell(column, index, position))
        position += 1 if column.kind in _ONE_VALUE else 2
    names = ", ".join(f"v{n}" for n in range(position))
    texts = [text for cell in cells for text in cell.texts()]
    parts = "".join(f", {part}" for cell in cells for part in cell.parts())
    prepared = "".join(f", {entry}" for cell in cells for entry in cell.prepared())
    row = " || ".join(cell.xml() for cell in cells)
    # Four levels, each computed once per row: OFFSET 0 keeps a subquery from being flattened
    # into the level above, where each use of one of its values would compute it again (a
    # date's value is used a dozen times); a window is never flattened. The rows are numbered
    # in the order the ranged statement yields them.
    with_parts = (
        f"SELECT v.*, {_joined_texts(texts)} AS joined{parts}"
        f" FROM ({ranged} OFFSET 0) AS v({names}) OFFSET 0"
    )
    prepared_row = (
        f"SELECT p.*, (row_number() OVER () + ${first_row_arg})::text AS r,"
        f" {_plain_texts()} AS plain{prepared} FROM ({with_parts}) AS p"
    )
    return (
        f"SELECT convert_to(coalesce('<row r=\"' || r || '\">' || nullif(({row}) COLLATE \"C\", '')"
        f" || '</row>', ''), 'UTF8') FROM ({prepared_row}) AS w"
    )
