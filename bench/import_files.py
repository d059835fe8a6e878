"""The files the import bench uploads: the accounts exported as csv and as xlsx through the API
(the files users would import back), the xlsx's rows written again as an xlsb, and the csv with
every username made new, so that importing it creates every row."""

from __future__ import annotations

import asyncio
import csv
import datetime
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.databases import BenchUser
from bench.exports import ApiUser, ExportFailed
from bench.stack import Stack
from bench.xlsb_writer import DATETIME_STYLE, Styled, XlsbCell, XlsbWriter
from exporter.imports.readers import ReadLimits, read_upload
from exporter.imports.readers.base import CellValue

USERNAME_HEADER = "用户名"
NEW_USERNAME_PREFIX = "new-"
EXCEL_EPOCH = datetime.datetime(1899, 12, 30)
SECONDS_PER_DAY = 86_400
WARM_UP_ROWS = 1000
# The bench's own file, read without the limits an upload is held to.
UNLIMITED = ReadLimits(max_rows=10**9)


@dataclass(frozen=True)
class ImportFiles:
    """The same rows in each format, and the csv whose rows are all new accounts."""

    csv: Path
    xlsx: Path
    xlsb: Path
    new_csv: Path
    warm_up_csv: Path  # the csv's first rows, imported by each fresh worker before measuring

    def by_format(self) -> dict[str, Path]:
        return {"csv": self.csv, "xlsx": self.xlsx, "xlsb": self.xlsb}


async def _exported(api: ApiUser, file_format: str, rows: int, work_dir: Path) -> Path:
    task = await api.wait_completed(await api.create(file_format))
    if task["row_count"] != rows:
        raise ExportFailed(f"task {task['id']}: {task['row_count']} rows, expected {rows}")
    dest = work_dir / f"accounts.{file_format}"
    await api.download(task, dest)
    return dest


def _xlsb_cell(value: CellValue) -> XlsbCell:
    """A cell as Excel keeps it: a date as a number in a date style, a number as a double."""
    if isinstance(value, datetime.datetime):
        serial = (value.replace(tzinfo=None) - EXCEL_EPOCH).total_seconds() / SECONDS_PER_DAY
        return Styled(serial, DATETIME_STYLE)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def write_xlsb_like(xlsx: Path, xlsb: Path, rows: int) -> None:
    """An xlsb of the xlsx export's sheet, cell for cell: its header row, then ``rows`` rows."""
    # Kept in a name: the generator holds the archive open until the function returns.
    sheets = read_upload(xlsx, UNLIMITED)
    sheet = next(sheets)
    read = iter(sheet.rows)
    header = next(read)
    last = header[0]

    def cells() -> Iterator[tuple[int, list[XlsbCell]]]:
        nonlocal last
        for number, values in itertools.chain([header], read):
            last = number
            yield number, [_xlsb_cell(value) for value in values]

    # The sheet's dimension comes before its rows: the header's row and width, and the rows
    # the export says it wrote after it.
    with XlsbWriter(xlsb) as book:
        book.add_sheet(sheet.name, cells(), last_row=header[0] + rows, width=len(header[1]))
    if last != header[0] + rows:
        raise ExportFailed(f"the xlsx export ends at row {last}, expected {header[0] + rows}")


def write_csv_like(source: Path, dest: Path, *, new_usernames: bool, rows: int | None) -> int:
    """The csv's header and first ``rows`` rows (all if None), with ``new-`` before every
    username if ``new_usernames``; how many rows it holds."""
    with (
        source.open(encoding="utf-8-sig", newline="") as given,
        dest.open("w", encoding="utf-8-sig", newline="") as out,
    ):
        reader = csv.reader(given)
        writer = csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        position = header.index(USERNAME_HEADER)
        written = 0
        for row in itertools.islice(reader, rows):
            if new_usernames:
                row[position] = NEW_USERNAME_PREFIX + row[position]
            writer.writerow(row)
            written += 1
    return written


async def import_files(
    stack: Stack, session: aiohttp.ClientSession, user: BenchUser, work_dir: Path
) -> ImportFiles:
    """Export the accounts as csv and xlsx through the API and make the other two files."""
    api = ApiUser(session, stack.base_url, user)
    rows = stack.database.rows
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_file = await _exported(api, "csv", rows, work_dir)
    xlsx_file = await _exported(api, "xlsx", rows, work_dir)
    xlsb_file = work_dir / "accounts.xlsb"
    await asyncio.to_thread(write_xlsb_like, xlsx_file, xlsb_file, rows)
    new_csv = work_dir / "new-accounts.csv"
    written = await asyncio.to_thread(
        write_csv_like, csv_file, new_csv, new_usernames=True, rows=None
    )
    if written != rows:
        raise ExportFailed(f"the csv export holds {written} rows, expected {rows}")
    warm_up = work_dir / "warm-up.csv"
    await asyncio.to_thread(
        write_csv_like, csv_file, warm_up, new_usernames=False, rows=WARM_UP_ROWS
    )
    return ImportFiles(csv_file, xlsx_file, xlsb_file, new_csv, warm_up)
