"""The steps of one import on one connection, inside the transaction that applies it: stage the
upload's rows, check them, count what would happen, and write the valid rows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from exporter.db import Connection
from exporter.imports.checks import CHECKED, STAGING, CheckPlan, TargetColumn, plan_checks
from exporter.imports.problems import Problem, RowError
from exporter.imports.readers.csv_reader import CSV_SHEET_NAME
from exporter.imports.registry import ImportHandler
from exporter.imports.upload_rows import UploadRows
from exporter.tasks.kinds import Progress

# Rows read per trip to the reading thread: large enough that the trips cost nothing, small
# enough that progress moves and a cancel is noticed at once.
BATCH_ROWS = 5000
# What a task shows of its rejected rows; the report holds all of them.
SHOWN_ERRORS = 100
REJECTED_BATCH = 2000

TARGET_COLUMNS = """
SELECT attname, attnotnull FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
"""
COUNT_ACTIONS = f"SELECT action, count(*) FROM {CHECKED} GROUP BY action"
FIRST_REJECTED = f"""
SELECT sheet, row_no, problems FROM {CHECKED} WHERE action = 'reject' ORDER BY seq LIMIT $1
"""
ALL_REJECTED = f"SELECT seq, problems FROM {CHECKED} WHERE action = 'reject' ORDER BY seq"


@dataclasses.dataclass(frozen=True)
class Counts:
    """What an import does (or, validating, would do) with its rows."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected


@dataclasses.dataclass(frozen=True)
class Checked:
    """The rows staged and checked: their counts and the first problems."""

    plan: CheckPlan
    counts: Counts
    errors: list[RowError]


async def _batches(rows: UploadRows, progress: Progress) -> AsyncIterator[list[tuple[Any, ...]]]:
    while batch := await asyncio.to_thread(rows.batch, BATCH_ROWS):
        progress.advance(len(batch))
        yield [(row.seq, row.sheet, row.number, *row.values) for row in batch]


async def _records(rows: UploadRows, progress: Progress) -> AsyncIterator[tuple[Any, ...]]:
    async for batch in _batches(rows, progress):
        for record in batch:
            yield record


async def stage_and_check(
    conn: Connection,
    handler: ImportHandler,
    rows: UploadRows,
    progress: Progress,
    *,
    unguard: bool,
) -> Checked:
    """Read the upload into a staging table and check every row (in the open transaction)."""
    await asyncio.to_thread(rows.start)
    layout = rows.layout
    targets = {
        record["attname"]: TargetColumn(record["attnotnull"])
        for record in await conn.fetch(TARGET_COLUMNS, handler.table)
    }
    labels = {
        column.field: str(layout.header[position]).strip()
        for column, position in zip(layout.columns, layout.positions, strict=True)
    }
    plan = plan_checks(
        handler,
        layout.columns,
        labels,
        {column.field: targets[column.declared.column] for column in layout.columns},
        unguard=unguard,
    )
    await conn.execute(plan.create_staging)
    await conn.copy_records_to_table(
        STAGING, records=_records(rows, progress), columns=plan.staging_columns
    )
    # Temporary tables are never analysed by autovacuum: without statistics the planner
    # would guess at a million rows.
    await conn.execute(f"ANALYZE {STAGING}")
    await conn.execute(plan.find_repeats)
    await conn.execute(plan.check_rows)
    by_action: dict[str, int] = {r[0]: r[1] for r in await conn.fetch(COUNT_ACTIONS)}
    counts = Counts(
        created=by_action.get("create", 0),
        updated=by_action.get("update", 0),
        unchanged=by_action.get("unchanged", 0),
        rejected=by_action.get("reject", 0),
    )
    errors = list(_first_errors(await conn.fetch(FIRST_REJECTED, SHOWN_ERRORS), rows.sheets))
    return Checked(plan, counts, errors[:SHOWN_ERRORS])


def _first_errors(records: Sequence[Any], sheets: Sequence[str]) -> Iterator[RowError]:
    # A csv file is one sheet, which its user knows by no name.
    named = list(sheets) != [CSV_SHEET_NAME]
    for record in records:
        for found in record["problems"]:
            problem = Problem.of(found, sheets)
            yield RowError(
                sheet=sheets[record["sheet"]] if named else None,
                row=record["row_no"],
                column=problem.column,
                code=problem.code,
                message=problem.message(),
                params=problem.params,
            )


async def rejected_rows(
    conn: Connection, sheets: Sequence[str]
) -> AsyncIterator[list[tuple[int, list[Problem]]]]:
    """Every rejected row's position and problems, in the order read, a batch at a time."""
    batch: list[tuple[int, list[Problem]]] = []
    async for record in conn.cursor(ALL_REJECTED, prefetch=REJECTED_BATCH):
        batch.append((record["seq"], [Problem.of(found, sheets) for found in record["problems"]]))
        if len(batch) >= REJECTED_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def write_rows(conn: Connection, plan: CheckPlan) -> None:
    """Update the changed rows and create the new ones (in the open transaction)."""
    if plan.update_rows is not None:
        await conn.execute(plan.update_rows)
    await conn.execute(plan.insert_rows)
