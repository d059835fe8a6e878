"""Large xlsx exports, their rows rendered by the database, read back by openpyxl,
python-calamine and LibreOffice: every cell of every sheet, headers included, equals the database.

The accounts are the bench data set (bench/seed.sql), whose text is hostile: formula-looking
values, quotes, commas, LF and CR LF inside cells, NULLs. Each size is seeded and exported once,
then read by each reader in turn, one sheet at a time, against the database's rows streamed from
a cursor. The cases marked fidelity take minutes; `make fidelity` runs the whole suite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openpyxl.utils import get_column_letter

from bench.databases import EXPORT_PERMISSIONS, SELECT_ACTIVE_ACCOUNTS, seed_statements
from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from settings import Settings
from tests.conftest import SECRET, Servers, run_on, settings_for, with_database
from tests.expected import ACCOUNT_HEADER, each_account_row
from tests.support import ApiUser
from tests.workers import running_worker
from tests.xlsx_readers import CALAMINE, LIBREOFFICE, OPENPYXL, Reader

pytestmark = pytest.mark.slow

# A sheet's rows in Excel: a header and 1,048,575 data rows, then the next sheet.
SHEET_ROWS = 1_048_576
EXPORT_TIMEOUT_S = 300
# Enough differences to see a pattern in; the count says how many more there were.
SHOWN_DIFFERENCES = 20


@dataclass(frozen=True)
class Export:
    database_url: str
    workbook: Path


async def _seed(database_url: str, rows: int) -> int:
    """The bench data set of ``rows`` accounts; the id of one that may export them."""
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        for statement in seed_statements(rows):
            await conn.execute(statement)
        return int(await conn.fetchval(SELECT_ACTIVE_ACCOUNTS, 1, list(EXPORT_PERMISSIONS)))
    finally:
        await conn.close()


async def _export_accounts(settings: Settings, account_id: int, rows: int, path: Path) -> None:
    async with TestClient(TestServer(create_app(settings))) as client, running_worker(settings):
        user = ApiUser(client, issue_token(SECRET, account_id))
        created = await user.create("account", "xlsx")
        task = await user.finished(created["id"], timeout_s=EXPORT_TIMEOUT_S)
        assert (task["status"], task["row_count"]) == ("completed", rows), task
        status, content, _ = await user.download(task["id"])
        assert status == 200
        path.write_bytes(content)


def _exported(rows: int, service_urls: Servers, directory: Path) -> Iterator[Export]:
    """``rows`` accounts in a database of their own, exported as xlsx through the API and a
    worker with two encoding processes; the database is dropped after the module's tests."""
    name = f"exporter_fidelity_{uuid.uuid4().hex[:12]}"
    url = with_database(service_urls.database_url, name)
    settings = settings_for(url, service_urls, directory).model_copy(
        update={"encode_processes": 2, "job_timeout_s": EXPORT_TIMEOUT_S}
    )
    # The default settings split this export and have the database render its rows.
    assert rows >= settings.parallel_min_rows and settings.xlsx_rows_in_database
    asyncio.run(run_on(service_urls.database_url, f'CREATE DATABASE "{name}"'))
    try:
        account_id = asyncio.run(_seed(url, rows))
        workbook = directory / "accounts.xlsx"
        asyncio.run(_export_accounts(settings, account_id, rows, workbook))
        yield Export(url, workbook)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(run_on(service_urls.database_url, drop))


@pytest.fixture(scope="module")
def one_sheet(service_urls: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Export]:
    """The smallest export that is split by default (EXPORTER_PARALLEL_MIN_ROWS)."""
    yield from _exported(100_000, service_urls, tmp_path_factory.mktemp("one-sheet"))


@pytest.fixture(scope="module")
def two_sheets(service_urls: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Export]:
    """More rows than a sheet holds: the second sheet starts with its own header."""
    yield from _exported(1_100_000, service_urls, tmp_path_factory.mktemp("two-sheets"))


async def _expected_rows(db: asyncpg.Connection[Any]) -> AsyncIterator[tuple[int, int, list[Any]]]:
    """Sheet number, row number and values of each row the workbook must hold, in order."""
    sheet, number = 1, 1
    yield sheet, number, ACCOUNT_HEADER
    async for row in each_account_row(db):
        if number == SHEET_ROWS:
            sheet, number = sheet + 1, 1
            yield sheet, number, ACCOUNT_HEADER
        number += 1
        yield sheet, number, row


def _read_rows(
    reader: Reader, workbook: Path, scratch: Path
) -> Iterator[tuple[int, int, list[Any]]]:
    for sheet, rows in enumerate(reader.sheets(workbook, scratch), 1):
        for number, row in enumerate(rows, 1):
            yield sheet, number, list(row)


class Differences:
    """Where a reader differs from the database: the first few places, and how many there are."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.first: list[str] = []
        self.count = 0

    def add(self, where: str, database: Any, read: Any) -> None:
        self.count += 1
        if len(self.first) < SHOWN_DIFFERENCES:
            self.first.append(f"{where}: database {database!r}, {self.reader.name} read {read!r}")

    def compare(self, sheet: int, number: int, expected: list[Any], read: list[Any]) -> None:
        shown = list(map(self.reader.shown, expected))
        # Exact: 1 and 1.0, or "1" and 1, are different cells.
        if shown == read and list(map(type, shown)) == list(map(type, read)):
            return
        for column in range(max(len(expected), len(read))):
            value = expected[column] if column < len(expected) else None
            cell = read[column] if column < len(read) else None
            want = self.reader.shown(value)
            if type(want) is not type(cell) or want != cell:
                self.add(f"sheet {sheet} {get_column_letter(column + 1)}{number}", value, cell)


async def _differences(
    db: asyncpg.Connection[Any], reader: Reader, workbook: Path, scratch: Path
) -> Differences:
    differences = Differences(reader)
    read_rows = _read_rows(reader, workbook, scratch)
    async with db.transaction():
        async for sheet, number, expected in _expected_rows(db):
            read = next(read_rows, None)
            if read is None:
                differences.add(f"sheet {sheet} row {number}", expected, "no more rows")
            elif read[:2] != (sheet, number):
                where = f"sheet {read[0]} row {read[1]}"
                differences.add(f"sheet {sheet} row {number}", expected, where)
            else:
                differences.compare(sheet, number, expected, read[2])
    for sheet, number, extra in read_rows:
        differences.add(f"sheet {sheet} row {number}", "no such row", extra)
    return differences


async def _assert_read_back_equal(export: Export, reader: Reader, scratch: Path) -> None:
    db = await asyncpg.connect(export.database_url)
    try:
        differences = await _differences(db, reader, export.workbook, scratch)
    finally:
        await db.close()
    assert differences.count == 0, f"{differences.count} differences; the first:\n" + "\n".join(
        differences.first
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("reader", [OPENPYXL, CALAMINE, LIBREOFFICE], ids=lambda r: r.name)
async def test_every_cell_of_a_100000_row_export_reads_back_as_in_the_database(
    one_sheet: Export, reader: Reader, tmp_path: Path
) -> None:
    await _assert_read_back_equal(one_sheet, reader, tmp_path)


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param(CALAMINE, marks=[pytest.mark.fidelity, pytest.mark.timeout(600)]),
        pytest.param(OPENPYXL, marks=[pytest.mark.fidelity, pytest.mark.timeout(900)]),
        pytest.param(LIBREOFFICE, marks=[pytest.mark.fidelity, pytest.mark.timeout(900)]),
    ],
    ids=lambda r: r.name,
)
async def test_every_cell_of_both_sheets_of_a_1100000_row_export_reads_back_as_in_the_database(
    two_sheets: Export, reader: Reader, tmp_path: Path
) -> None:
    await _assert_read_back_equal(two_sheets, reader, tmp_path)
