"""The rows PostgreSQL renders are the bytes xlsxwriter writes: the same values written both
ways (xlsxwriter's constant_memory workbook, and the frame with rendered parts spliced in), and
every member of the two workbooks compared, sheet XML included, byte for byte. The values: a
corpus of hostile ones in three time zones, and a seeded random fuzz of 100,000 rows."""

from __future__ import annotations

import random
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.encoders import EncoderPool
from exporter.exports.formats.xlsx import XLSX
from exporter.exports.formats.xlsx_parts import write_xlsx_in_parts
from exporter.exports.formats.xlsx_workbook import XlsxExportWriter
from exporter.exports.row_query import RowQuery
from exporter.exports.sql import SESSION_SETTINGS, build_export_sql

TITLE = "对照"
COLUMNS = (
    Column("ID", "h.n", ColumnKind.INTEGER),
    Column("文本", "h.t"),
    Column("时间", "h.d", ColumnKind.DATETIME),
    Column(
        "状态",
        "h.e",
        ColumnKind.ENUM,
        labels={"a": "甲", "b": " 乙 ", "c": "<r>&</r>", "d": "_x0041_ & <b>"},
    ),
    Column("备注", "h.u"),
    # INTEGER columns of other number types: a sum of bigints is numeric.
    Column("小整数", "h.i4", ColumnKind.INTEGER),
    Column("合计", "h.total", ColumnKind.INTEGER),
    Column("浮点", "h.f8", ColumnKind.INTEGER),
)
# The last text column has a nondeterministic collation, which pattern matching refuses.
TABLE = """
CREATE COLLATION case_blind (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE hostile (
    pos bigint PRIMARY KEY, n bigint, t text, d timestamptz, e text, u text COLLATE case_blind,
    i4 integer, total numeric, f8 double precision
)"""
FIELDS = ("pos", "n", "t", "d", "e", "u", "i4", "total", "f8")
# The workbook's creation time, the one member written at a different moment.
UNCOMPARED = {"docProps/core.xml"}

EMOJI = "😀"
FAMILY = "👨‍👩‍👧"
CONTROL = [chr(code) for code in range(1, 32)]
UNICODE_SPACES = ["\u00a0", "\u0085", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029"]
UNICODE_SPACES += ["\u202f", "\u205f", "\u3000", "\u200b", "\ufeff"]

HOSTILE_TEXTS = [
    "",
    "plain",
    "张三",
    *CONTROL,
    *(f"a{c}b" for c in CONTROL),
    *(f"{c}edge{c}" for c in CONTROL),
    "_x0041_",
    "_x005F_",
    "_X0041_",
    "_x004G_",
    "__x0041__",
    "_x0041_x0042_",
    "_x0041__x0042_",
    "a_x00e9_b",
    "_x0001_\x01",
    " lead",
    "trail ",
    " both ",
    " ",
    "\t",
    "\n",
    "\ttab",
    "line\n",
    "a\nb",
    "a\r\nb",
    "\r",
    "\x0bvt",
    *(f"{space}x" for space in UNICODE_SPACES),
    *(f"x{space}" for space in UNICODE_SPACES),
    "\ue000",
    "a\ue000 b",
    "& < > \" '",
    "&amp;",
    "<b>bold</b>",
    "]]>",
    "<r>x</r>",
    "<r>&</r>",
    "<r></r>",
    "<r><t>a</t></r><r><t>b</t></r>",
    "<r>\x01 _x0041_</r>",
    " <r>x</r>",
    "<r>x</r> ",
    "<r>x",
    "x</r>",
    EMOJI,
    FAMILY,
    "𠀀𠀁",
    "\ufffe",
    "\uffff",
    "a\ufffeb\uffffc",
    "\ufffd",
    "=1+1",
    "+8613800138000",
    "@SUM(A1:A9)",
    "a" * 32_767,
    "a" * 32_768,
    "a" * 40_000,
    EMOJI * 16_383 + "a",
    EMOJI * 20_000,
    "a" + EMOJI * 20_000,
    "长" * 40_000,
    " " + "x" * 40_000,
    "\x01" + "x" * 40_000,
    "<r>" + "x" * 40_000 + "</r>",
    "<r>" + "x" * 100 + "</r>",
    "&" * 20_000,
]
INTEGERS = [0, 1, -1, 42, 10**15 - 1, -(10**15) + 1, 10**15, -(10**15), 2**63 - 1, -(2**63)]
DATES = [
    "1900-03-01 00:00:00+08:05:43",
    "1900-03-01 00:00:00",
    "1900-02-28 23:59:59",
    "1900-03-01 00:00:01",
    "1900-04-09 12:00:00",
    "1902-09-26 18:00:00",
    "1927-05-18 06:00:00",
    "1927-05-19 23:59:59",
    "2173-10-13 01:02:03",
    "2173-10-14 01:02:03",
    "4637-11-26 00:00:01",
    "1899-12-31 00:00:00",
    "0001-01-01 00:00:00",
    "0044-03-15 12:00:00 BC",
    "9999-12-31 23:59:59",
    "9999-12-31 23:59:59+14",
    "10000-01-01 00:00:00",
    "infinity",
    "-infinity",
    "2026-01-31 08:00:00.5",
    "2026-01-31 23:59:59.999999",
    "2026-03-08 07:30:00+00",
    "2026-11-01 05:30:00+00",
    "2026-11-01 06:30:00+00",
    "2000-02-29 12:34:56",
    # Wall times whose serial number's last digit floating point gets wrong (found by search:
    # 987.83625 prints as 987.8362499999999), in each test zone of their day.
    *(f"{wall}{offset}" for wall in ("1902-09-13 20:04:12", "1901-10-11 16:29:33",
                                      "1902-04-11 22:52:03")
      for offset in ("+00", "+08:05:43", "-05")),
    *(f"2026-06-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
      for day, hour, minute, second in ((1, 0, 0, 0), (2, 0, 0, 1), (3, 23, 59, 59),
                                        (4, 12, 0, 0), (5, 6, 0, 0), (6, 18, 0, 0),
                                        (7, 0, 0, 3), (8, 7, 7, 7), (9, 13, 13, 13))),
]  # fmt: skip
CODES = ["a", "b", "c", "d", "zz", "<r>x</r>", "\x01", " z", "_x0041_"]
SMALL_INTEGERS = [0, 1, -1, 2**31 - 1, -(2**31)]
TOTALS = [
    Decimal(text)
    for text in "10000 600000000000000 1200000000000000 10.10 0.0000000000 -5".split()
    + "999999999999999.0 -999999999999999 1e20 NaN Infinity".split()
]
FLOATS = [0.1 + 0.2, 1e15, 1e-7, 123456789.123456789, 42.0, -0.0, float("nan"), float("inf")]

Row = tuple[Any, ...]


PLAIN_ROW = (1, "plain", "2026-01-31 08:00:00", "a", "备注", 2, Decimal(3), 4.0)


def hostile_rows() -> list[Row]:
    """Each hostile value alone in a row of plain ones (one value needing escapes must not hide
    behind another), then all of them mixed, with nulls and a row of nulls among them."""
    columns: list[list[Any]] = [
        [*INTEGERS, None],
        [*HOSTILE_TEXTS, None],
        [*DATES, None],
        [*CODES, None],
        [None, "", " ", *HOSTILE_TEXTS[::-1]],
        [*SMALL_INTEGERS, None],
        [*TOTALS, None],
        [*FLOATS, None],
    ]
    alone = [
        tuple(value if index == column else plain for index, plain in enumerate(PLAIN_ROW))
        for column, values in enumerate(columns)
        for value in values
    ]
    count = max(len(values) for values in columns)
    mixed = [tuple(values[pos % len(values)] for values in columns) for pos in range(count)]
    nulls = (None,) * len(PLAIN_ROW)
    rows = [nulls, *alone, *mixed, (7, *nulls[1:])]
    # The last row has its ID: the reference's dimension ends at its last cell.
    return [(pos, *values) for pos, values in enumerate(rows)]


ATOMS = [
    *"abcXYZ019",
    " ",
    "\t",
    "\n",
    "\r",
    *CONTROL,
    "&",
    "<",
    ">",
    '"',
    "'",
    "_x",
    "_x00",
    "_x0041_",
    "_X0041_",
    "_x004g_",
    "x0041_",
    "长",
    "张",
    "é",
    EMOJI,
    FAMILY,
    "𠀀",
    *UNICODE_SPACES,
    "\ufffe",
    "\uffff",
    "\ue000",
    "<r>",
    "</r>",
]


def fuzz_text(generator: random.Random) -> str | None:
    roll = generator.random()
    if roll < 0.1:
        return None
    if roll < 0.12:
        return ""
    text = "".join(generator.choices(ATOMS, k=generator.randint(1, 12)))
    if roll < 0.14:
        return f"<r>{text}</r>"
    if roll < 0.1405:
        return text + generator.choice(["a", EMOJI, "长"]) * generator.randint(16_000, 33_000)
    return text


def fuzz_date(generator: random.Random) -> datetime | str | None:
    roll = generator.random()
    if roll < 0.1:
        return None
    if roll < 0.11:
        return generator.choice(["infinity", "-infinity"])
    low = datetime(1899, 6, 1, tzinfo=UTC) if roll < 0.2 else datetime(1900, 1, 1, tzinfo=UTC)
    high = datetime(9999, 12, 31, tzinfo=UTC) if roll >= 0.3 else datetime(2200, 1, 1, tzinfo=UTC)
    seconds = generator.randint(0, int((high - low).total_seconds()))
    micro = generator.choice([0, 0, 0, generator.randint(0, 999_999)])
    return low + timedelta(seconds=seconds, microseconds=micro)


def fuzz_integer(generator: random.Random) -> int | None:
    roll = generator.random()
    if roll < 0.1:
        return None
    if roll < 0.2:
        return generator.choice([10**15 - 1, 10**15, -(10**15), 1 - 10**15, 2**63 - 1, -(2**63)])
    if roll < 0.3:
        return generator.randint(-(2**63), 2**63 - 1)
    return generator.randint(-(10**6), 10**6)


def fuzz_rows(count: int, *, seed: int, sheet_rows: int) -> Iterator[Row]:
    generator = random.Random(seed)
    for pos in range(count):
        n = fuzz_integer(generator)
        if (pos + 1) % sheet_rows == 0 or pos + 1 == count:
            n = pos  # a sheet's last row has its ID: the reference's dimension ends there
        yield (
            pos,
            n,
            fuzz_text(generator),
            fuzz_date(generator),
            generator.choice([*CODES, None]),
            fuzz_text(generator) if generator.random() < 0.5 else generator.choice([None, "备注"]),
            generator.choice([*SMALL_INTEGERS, None, generator.randint(-(2**31), 2**31 - 1)]),
            generator.choice([*TOTALS, None, Decimal(generator.randint(-(10**18), 10**18))]),
            generator.choice([*FLOATS, None, generator.uniform(-1e16, 1e16)]),
        )


@pytest.fixture
async def encoders() -> AsyncIterator[EncoderPool]:
    pool = EncoderPool(2)
    yield pool
    pool.shutdown()


async def insert_rows(db: asyncpg.Connection[Any], rows: list[Row]) -> None:
    await db.execute(TABLE)
    # Dates go in as text, so that the server reads each in its own zone or keyword.
    text_rows = [(pos, n, t, None if d is None else str(d), *rest) for pos, n, t, d, *rest in rows]
    await db.executemany(
        "INSERT INTO hostile VALUES ($1, $2, $3, $4::text::timestamptz, $5, $6, $7, $8, $9)",
        text_rows,
    )


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if name not in UNCOMPARED}


def first_difference(expected: bytes, actual: bytes) -> str:
    """Where two sheet XMLs part, row by row, for a failure message a person can read."""
    wanted, got = expected.split(b"</row>"), actual.split(b"</row>")
    for number, (want, have) in enumerate(zip(wanted, got, strict=False)):
        if want != have:
            return (
                f"row element {number}:\n xlsxwriter {want[-600:]!r}\n rendered   {have[-600:]!r}"
            )
    return f"{len(wanted)} row elements against {len(got)}"


async def write_both_ways(
    db: asyncpg.Connection[Any],
    database_url: str,
    encoders: EncoderPool,
    tmp_path: Path,
    *,
    time_zone: str,
    max_sheet_rows: int,
    columns: tuple[Column, ...] = COLUMNS,
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    sql = build_export_sql(columns, RowQuery("hostile h", order_by="h.pos"), XLSX.value_sql)
    reference = tmp_path / "xlsxwriter" / "out.xlsx"
    rendered = tmp_path / "rendered" / "out.xlsx"
    reference.parent.mkdir()
    rendered.parent.mkdir()
    async with db.transaction(isolation="repeatable_read", readonly=True):
        await db.execute(SESSION_SETTINGS, time_zone)
        total = int(await db.fetchval(sql.count, *sql.count_args))
        writer = XlsxExportWriter(reference, TITLE, columns, max_sheet_rows=max_sheet_rows)
        cursor = await db.cursor(sql.rows, *sql.args)
        while batch := await cursor.fetch(5_000):
            writer.write_rows(batch)
        writer.close()
        await write_xlsx_in_parts(
            db,
            encoders=encoders.executor,
            parts_per_sheet=2,
            dsn=database_url,
            sql=sql.ranged,
            args=sql.args,
            total=total,
            title=TITLE,
            columns=columns,
            time_zone=time_zone,
            path=rendered,
            report_done=lambda rows: None,
            split=True,
            max_sheet_rows=max_sheet_rows,
        )
    assert writer.rows_written == total
    return members(reference), members(rendered)


def assert_same_workbooks(expected: dict[str, bytes], actual: dict[str, bytes]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, content in expected.items():
        assert actual[name] == content, (
            f"{name} differs at {first_difference(content, actual[name])}"
        )


@pytest.mark.parametrize("time_zone", ["Asia/Shanghai", "America/New_York", "UTC"])
async def test_hostile_values_render_as_the_bytes_xlsxwriter_writes(
    db: asyncpg.Connection[Any],
    database_url: str,
    encoders: EncoderPool,
    tmp_path: Path,
    time_zone: str,
) -> None:
    rows = hostile_rows()
    await insert_rows(db, rows)

    # Sheets of 40 rows: the corpus crosses several sheets and part boundaries.
    expected, actual = await write_both_ways(
        db, database_url, encoders, tmp_path, time_zone=time_zone, max_sheet_rows=40
    )

    assert len([name for name in expected if name.startswith("xl/worksheets/")]) > 3
    assert_same_workbooks(expected, actual)
    # Every kind of cell is there: numbers, text, dates (style 2) and their text, escapes,
    # the rich-looking run, a cut text.
    sheets = b"".join(content for name, content in actual.items() if "worksheets/" in name)
    for element in (
        b"><v>999999999999999</v>",
        b"<t>-9223372036854775808</t>",
        b' s="2"><v>',
        b"<t>infinity</t>",
        b"_x005F_x0041_",
        b"<t>_x0001_</t>",
        b'<t xml:space="preserve"> lead</t>',
        b"<r><t>&lt;r&gt;&amp;&lt;/r&gt;</t></r>",
        "…[已截断]</t>".encode(),
    ):
        assert element in sheets, element


async def test_a_sheet_of_numbers_alone_renders_as_the_bytes_xlsxwriter_writes(
    db: asyncpg.Connection[Any], database_url: str, encoders: EncoderPool, tmp_path: Path
) -> None:
    # No text column: the row's texts joined are those of the numbers Excel cannot hold.
    await insert_rows(db, hostile_rows())
    numbers = tuple(column for column in COLUMNS if column.kind is ColumnKind.INTEGER)

    expected, actual = await write_both_ways(
        db, database_url, encoders, tmp_path, time_zone="UTC", max_sheet_rows=100, columns=numbers
    )

    assert_same_workbooks(expected, actual)


FUZZ_ROWS = 100_000


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_random_fuzz_of_100_000_rows_renders_as_the_bytes_xlsxwriter_writes(
    db: asyncpg.Connection[Any], database_url: str, encoders: EncoderPool, tmp_path: Path
) -> None:
    sheet_rows = 40_000
    await db.execute(TABLE)
    rows = [
        (pos, n, t, d if isinstance(d, datetime | None) else None, *rest)
        for pos, n, t, d, *rest in fuzz_rows(FUZZ_ROWS, seed=16, sheet_rows=sheet_rows)
    ]
    await db.copy_records_to_table("hostile", records=rows, columns=FIELDS)
    # The keywords a timestamptz can hold besides dates, put in where the fuzz drew them.
    keywords = [
        (pos, d)
        for pos, _, _, d, *_ in fuzz_rows(FUZZ_ROWS, seed=16, sheet_rows=sheet_rows)
        if isinstance(d, str)
    ]
    await db.executemany("UPDATE hostile SET d = $2::text::timestamptz WHERE pos = $1", keywords)

    expected, actual = await write_both_ways(
        db, database_url, encoders, tmp_path, time_zone="Asia/Shanghai", max_sheet_rows=sheet_rows
    )

    assert sum(name.startswith("xl/worksheets/sheet") for name in expected) == 3
    assert_same_workbooks(expected, actual)
