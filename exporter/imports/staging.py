"""An upload's rows into a temporary table of the import's transaction, two ways.

A strict csv file (see ``readers.csv_grammar``) whose records all have the header's width is
handed to PostgreSQL's own csv parser (``COPY … FROM STDIN (FORMAT csv)``), about seven times
faster than reading it here; its row numbers are the records' (the header is row 1). Any other
upload, and a csv file COPY would read otherwise or refuses (a record of another width), is read
here, sheet by sheet, and its rows copied in.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from exporter.db import Connection
from exporter.imports.checks import Staged, ident
from exporter.imports.layout import SheetLayout
from exporter.imports.readers import ReadLimits, TooManyImportRows
from exporter.imports.readers.base import column_letters
from exporter.imports.readers.csv_grammar import is_strict_csv
from exporter.imports.readers.csv_reader import CSV_SHEET_NAME
from exporter.imports.readers.errors import CellTooLong
from exporter.imports.reading_thread import ReadingThread
from exporter.imports.upload_rows import RowSource
from exporter.tasks.kinds import Progress

ROWS_TABLE = "import_rows"
CSV_TABLE = "import_csv"
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 1024 * 1024
# Rows read per trip to the reading thread: large enough that the trips cost nothing, small
# enough that progress moves and a cancel is noticed at once.
BATCH_ROWS = 5000


async def stage_rows(
    conn: Connection, rows: RowSource, thread: ReadingThread, progress: Progress
) -> Staged:
    """Copy the rows read here into a staging table; ``rows`` has started (its layout known)."""
    fields = rows.layout.fields
    await conn.execute(
        f"CREATE TEMP TABLE {ROWS_TABLE} (seq integer, sheet smallint, row_no integer, "
        + ", ".join(f"{ident(field)} text" for field in fields)
        + ") ON COMMIT DROP"
    )
    await conn.copy_records_to_table(
        ROWS_TABLE,
        records=_records(rows, thread, progress),
        columns=("seq", "sheet", "row_no", *fields),
    )
    return Staged(ROWS_TABLE, "{s}.sheet", "{s}.row_no", {field: field for field in fields})


async def _records(
    rows: RowSource, thread: ReadingThread, progress: Progress
) -> AsyncIterator[tuple[Any, ...]]:
    while batch := await thread.call(functools.partial(rows.records, BATCH_ROWS)):
        progress.advance(len(batch))
        for record in batch:
            yield record


async def stage_csv(
    conn: Connection,
    path: Path,
    encoding: str,
    layout: SheetLayout,
    limits: ReadLimits,
    progress: Progress,
) -> Staged | None:
    """COPY the csv file into a staging table of the header's width; None when COPY would read
    it otherwise than Excel does, or refuses it (nothing staged then: read it here instead)."""
    bom = _bom_length(path, encoding)
    if not await asyncio.to_thread(is_strict_csv, path, bom):
        return None
    width = len(layout.header)
    columns = [f"c_{position}" for position in range(width)]
    try:
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE {CSV_TABLE} (seq integer GENERATED ALWAYS AS IDENTITY, "
                + ", ".join(f"{column} text" for column in columns)
                + ") ON COMMIT DROP"
            )
            await conn.copy_to_table(
                CSV_TABLE,
                source=_chunks(path, bom, progress),
                columns=columns,
                format="csv",
                encoding="UTF8" if encoding == "utf-8-sig" else "GB18030",
            )
    except (asyncpg.BadCopyFileFormatError, asyncpg.CharacterNotInRepertoireError):
        return None
    await _check_limits(conn, columns, limits)
    fields = {
        column.field: columns[position]
        for column, position in zip(layout.columns, layout.positions, strict=True)
    }
    given = " OR ".join(f"coalesce(s.{ident(column)}, '') <> ''" for column in fields.values())
    return Staged(CSV_TABLE, "0::smallint", "{s}.seq", fields, f"s.seq > 1 AND ({given})")


def _bom_length(path: Path, encoding: str) -> int:
    with path.open("rb") as upload:
        starts = upload.read(len(UTF8_BOM))
    return len(UTF8_BOM) if encoding == "utf-8-sig" and starts == UTF8_BOM else 0


async def _chunks(path: Path, skip: int, progress: Progress) -> AsyncIterator[bytes]:
    with path.open("rb") as upload:
        upload.seek(skip)
        while chunk := await asyncio.to_thread(upload.read, CHUNK_BYTES):
            # Lines, not records (a cell may span lines): progress only needs to move.
            progress.advance(chunk.count(b"\n"))
            yield chunk


async def _check_limits(conn: Connection, columns: list[str], limits: ReadLimits) -> None:
    """What the reader here checks row by row, checked once COPY has read them all."""
    records = await conn.fetchval(f"SELECT max(seq) FROM {CSV_TABLE}") or 0
    if records > limits.max_rows:
        raise TooManyImportRows(
            f"The file holds more than {limits.max_rows} rows",
            params={"limit": limits.max_rows},
        )
    limit = limits.max_cell_chars
    # Bytes first: a text of no more bytes than the limit has no more characters either.
    too_long = " OR ".join(
        f"(octet_length({column}) > {limit} AND char_length({column}) > {limit})"
        for column in columns
    )
    positions = ", ".join(f"coalesce(char_length({column}) > {limit}, false)" for column in columns)
    found = await conn.fetchrow(
        f"SELECT seq, array_position(ARRAY[{positions}], true) AS position FROM {CSV_TABLE}"
        f" WHERE {too_long} ORDER BY seq LIMIT 1"
    )
    if found is not None:
        column = column_letters(found["position"] - 1)
        raise CellTooLong(
            f"Cell {column}{found['seq']} holds more than {limit} characters",
            params={
                "sheet": CSV_SHEET_NAME,
                "row": found["seq"],
                "column": column,
                "limit": limit,
            },
        )
