"""Values at the edge of what a cell holds: long text with characters above U+FFFF, and dates
Excel cannot hold, through the real API and worker on every way an xlsx file is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats.xlsx import XLSX
from exporter.exports.formats.xlsx_workbook import (
    MAX_CELL_UTF16_UNITS,
    TRUNCATION_MARKER,
    XlsxExportWriter,
    cut_to_cell,
)
from exporter.exports.row_query import RowQuery
from exporter.exports.sql import SESSION_SETTINGS, build_export_sql
from settings import Settings
from tests.support import ApiUser, csv_rows, xlsx_cell_types, xlsx_rows
from tests.workers import running_worker

EMOJI = "😀"


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# How each xlsx export can be written: by the worker itself (no encoding processes), by one
# encoding process (fewer rows than EXPORTER_PARALLEL_MIN_ROWS), in parts by several, their
# rows rendered by the database or written by xlsxwriter.
WRITE_PATHS = {
    "in_the_worker": {"encode_processes": 0},
    "by_one_encoding_process": {"encode_processes": 2},
    "in_parts": {"encode_processes": 2, "parallel_min_rows": 1},
    "in_parts_by_xlsxwriter": {
        "encode_processes": 2,
        "parallel_min_rows": 1,
        "xlsx_rows_in_database": False,
    },
}


@pytest.fixture(params=list(WRITE_PATHS))
async def xlsx_path_worker(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[None]:
    async with running_worker(settings.model_copy(update=WRITE_PATHS[request.param])):
        yield


def test_text_is_cut_by_utf16_units_and_never_between_the_halves_of_a_character() -> None:
    keep = MAX_CELL_UTF16_UNITS - utf16_units(TRUNCATION_MARKER)
    assert keep % 2 == 1  # so a text of emoji alone has one straddling the limit

    across_a_pair = cut_to_cell(EMOJI * 20_000)
    on_a_boundary = cut_to_cell("a" + EMOJI * 20_000)

    # The character that would straddle the limit is left out whole.
    assert across_a_pair == EMOJI * (keep // 2) + TRUNCATION_MARKER
    assert utf16_units(across_a_pair) == MAX_CELL_UTF16_UNITS - 1
    assert on_a_boundary == "a" + EMOJI * (keep // 2) + TRUNCATION_MARKER
    assert utf16_units(on_a_boundary) == MAX_CELL_UTF16_UNITS
    assert cut_to_cell("长" * 40_000) == "长" * keep + TRUNCATION_MARKER


def test_the_writer_cuts_text_that_fits_in_characters_but_not_in_utf16_units(
    tmp_path: Path,
) -> None:
    fits_exactly = EMOJI * 16_383 + "a"  # 32,767 units
    writer = XlsxExportWriter(tmp_path / "out.xlsx", "t", [Column("文本", "x")])

    writer.write_rows([(EMOJI * 20_000,), (fits_exactly,)])
    writer.close()

    workbook = openpyxl.load_workbook(tmp_path / "out.xlsx", read_only=True)
    cut, kept = (row[0] for row in workbook.worksheets[0].iter_rows(min_row=2, values_only=True))
    workbook.close()
    assert cut == cut_to_cell(EMOJI * 20_000)
    assert kept == fits_exactly


LONG_TEXTS = {
    "long_mixed": "长文本abc😀" * 5_714,
    "long_emoji": EMOJI * 20_000,
    "long_odd": "a" + EMOJI * 20_000,
    "long_fits": EMOJI * 16_383 + "a",
}


@pytest.fixture
async def long_nicknames(db: asyncpg.Connection[Any]) -> None:
    await db.executemany(
        "INSERT INTO accounts (username, nickname) VALUES ($1, $2)", LONG_TEXTS.items()
    )


@pytest.mark.usefixtures("long_nicknames", "xlsx_path_worker")
async def test_text_over_the_cell_limit_with_emoji_is_cut_in_every_xlsx_path(
    admin: ApiUser,
) -> None:
    rows = xlsx_rows(await admin.export("account", "xlsx", keyword="long_"))

    nicknames = {row[1]: row[2] for row in rows[1:]}
    assert nicknames["long_fits"] == LONG_TEXTS["long_fits"]
    for username in ("long_mixed", "long_emoji", "long_odd"):
        cell, whole = nicknames[username], LONG_TEXTS[username]
        assert cell.endswith(TRUNCATION_MARKER), username
        kept = cell.removesuffix(TRUNCATION_MARKER)
        assert whole.startswith(kept), username
        # As much as fits: only a character of two units may be left short by one.
        assert MAX_CELL_UTF16_UNITS - 1 <= utf16_units(cell) <= MAX_CELL_UTF16_UNITS, username


@pytest.mark.usefixtures("long_nicknames", "worker")
async def test_csv_keeps_long_text_with_emoji_whole(admin: ApiUser) -> None:
    rows = csv_rows(await admin.export("account", "csv", keyword="long_"))

    assert {row[1]: row[2] for row in rows[1:]} == LONG_TEXTS


# Wall times in Asia/Shanghai (the tests' EXPORTER_TIME_ZONE) as stored, and what a cell holds:
# a real date, or the csv's text where Excel cannot hold the date exactly.
EDGE_DATES: list[tuple[str, str, datetime | str]] = [
    ("edge_1800", "1800-01-01 12:00:00", "1800-01-01 12:00:00"),
    ("edge_1899", "1899-12-31 00:00:00", "1899-12-31 00:00:00"),
    ("edge_1900", "1900-01-01 00:00:00", "1900-01-01 00:00:00"),
    ("edge_before", "1900-02-28 23:59:59", "1900-02-28 23:59:59"),
    ("edge_first", "1900-03-01 00:00:00", datetime(1900, 3, 1)),
    ("edge_last", "9999-12-31 23:59:59", datetime(9999, 12, 31, 23, 59, 59)),
    ("edge_after", "10000-01-01 04:00:00", "10000-01-01 04:00:00"),
    ("edge_bc", "0044-03-15 12:00:00 BC", "0044-03-15 12:00:00 BC"),
    ("edge_inf", "infinity", "infinity"),
    ("edge_neginf", "-infinity", "-infinity"),
]


@pytest.fixture
async def edge_dates(db: asyncpg.Connection[Any]) -> None:
    # Written as Shanghai wall times: 1900-03-01 00:00:00 there is still 1900-02-28 in UTC
    # (the zone was 8:05:43 ahead), and 10000-01-01 04:00:00 is 9999-12-31 in UTC.
    for username, wall_time, _ in EDGE_DATES:
        await db.execute(
            "INSERT INTO accounts (username, created_at)"
            " VALUES ($1, $2::text::timestamp AT TIME ZONE 'Asia/Shanghai')",
            username,
            wall_time,
        )


def as_csv_text(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.usefixtures("edge_dates", "xlsx_path_worker")
async def test_dates_excel_cannot_hold_are_written_as_text_in_every_xlsx_path(
    admin: ApiUser,
) -> None:
    content = await admin.export("account", "xlsx", keyword="edge_")

    created = {row[1]: row[7] for row in xlsx_rows(content)[1:]}
    assert created == {username: cell for username, _, cell in EDGE_DATES}
    expected_types = ["s" if isinstance(cell, str) else "d" for _, _, cell in EDGE_DATES]
    assert xlsx_cell_types(content, 7) == expected_types


@pytest.mark.usefixtures("edge_dates", "worker")
async def test_csv_writes_the_same_text_for_dates_excel_cannot_hold(admin: ApiUser) -> None:
    rows = csv_rows(await admin.export("account", "csv", keyword="edge_"))

    created = {row[1]: row[7] for row in rows[1:]}
    assert created == {username: as_csv_text(cell) for username, _, cell in EDGE_DATES}


def test_the_writer_takes_a_date_or_its_text_for_a_datetime_column(tmp_path: Path) -> None:
    columns = [Column("时间", "at", ColumnKind.DATETIME), Column("N", "n", ColumnKind.INTEGER)]
    writer = XlsxExportWriter(tmp_path / "out.xlsx", "t", columns)

    writer.write_rows([(datetime(2026, 1, 2, 3, 4, 5), None, 1, None), (None, "infinity", 2, None)])
    writer.close()

    assert xlsx_rows((tmp_path / "out.xlsx").read_bytes()) == [
        ["时间", "N"],
        [datetime(2026, 1, 2, 3, 4, 5), 1],
        ["infinity", 2],
    ]


# Zones far from UTC on both sides, and Shanghai, whose offset in 1900 was 8:05:43.
FAR_ZONES = ["Asia/Shanghai", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns"]
BOUNDARY_WALL_TIMES = {
    "1900-02-28 23:59:59": "1900-02-28 23:59:59",
    "1900-03-01 00:00:00": datetime(1900, 3, 1),
    "9999-12-31 23:59:59": datetime(9999, 12, 31, 23, 59, 59),
    "10000-01-01 00:00:00": "10000-01-01 00:00:00",
}  # in time order


@pytest.mark.parametrize("zone", FAR_ZONES)
async def test_excels_date_range_is_judged_on_the_wall_time_in_the_export_zone(
    db: asyncpg.Connection[Any], zone: str
) -> None:
    columns = [Column("时间", "v.at", ColumnKind.DATETIME)]
    query = RowQuery(
        "(SELECT w, w::timestamp AT TIME ZONE current_setting('TimeZone') AS at"
        " FROM unnest($1::text[]) AS w) AS v",
        order_by="v.at",
    )
    query.args.append(list(BOUNDARY_WALL_TIMES))
    sql = build_export_sql(columns, query, XLSX.value_sql)

    async with db.transaction():
        await db.execute(SESSION_SETTINGS, zone)
        cells = [
            date if date is not None else text for date, text in await db.fetch(sql.rows, *sql.args)
        ]

    assert cells == list(BOUNDARY_WALL_TIMES.values())
