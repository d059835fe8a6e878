"""The steps of one import on one connection, inside the transaction that applies it: stage the
upload's rows, check them, count what would happen, and write the valid rows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from exporter.db import Connection
from exporter.imports.checks import CHECKED, REPEATS, CheckPlan, TargetColumn, plan_checks
from exporter.imports.problems import Problem, RowError
from exporter.imports.readers import ReadLimits, UploadFormat
from exporter.imports.readers.csv_reader import CSV_SHEET_NAME
from exporter.imports.readers.detect import require_csv_encoding
from exporter.imports.registry import ImportHandler
from exporter.imports.staging import stage_csv, stage_rows
from exporter.imports.upload_rows import UploadRows
from exporter.tasks.kinds import Progress

# What a task shows of its rejected rows; the report holds all of them.
SHOWN_ERRORS = 100
REJECTED_BATCH = 2000
# For the import's own transaction: the checks hash the table's keys, which at a million rows
# spill to disk in sixteen batches with the default 4 MB.
WORK_MEM = "SELECT set_config('work_mem', '128MB', true)"
# ANALYZE of a staging table samples 300 times this many rows: its row count and the spread of
# its keys are all the checks' plans need, and the default (100) took 0.4 s of a million.
STATISTICS_TARGET = "SELECT set_config('default_statistics_target', '10', true)"

TARGET_COLUMNS = """
SELECT attname, attnotnull FROM pg_attribute
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
"""
COUNT_ACTIONS = f"SELECT action, count(*) FROM {CHECKED} GROUP BY action"
FIRST_REJECTED = f"""
SELECT sheet, row_no, problems FROM {CHECKED} WHERE action = 'reject' ORDER BY seq LIMIT $1
"""
ALL_REJECTED = f"""
SELECT sheet, row_no, problems FROM {CHECKED} WHERE action = 'reject' ORDER BY seq
"""


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
class Rejected:
    """A rejected row: its sheet (an index), its row number there, and its problems."""

    sheet: int
    row_no: int
    problems: list[Problem]


@dataclasses.dataclass(frozen=True)
class Checked:
    """The rows staged and checked: their counts and the first problems."""

    plan: CheckPlan
    counts: Counts
    errors: list[RowError]
    sheets: list[str]


async def stage_and_check(
    conn: Connection,
    handler: ImportHandler,
    upload: Path,
    upload_format: UploadFormat,
    limits: ReadLimits,
    progress: Progress,
    time_zone: str,
) -> Checked:
    """Read the upload into a staging table and check every row (in the open transaction)."""
    await conn.execute(WORK_MEM)
    await conn.execute(STATISTICS_TARGET)
    rows = UploadRows(upload, handler, limits)
    await asyncio.to_thread(rows.start)
    layout, sheets = rows.layout, list(rows.sheets)
    staged = None
    if upload_format is UploadFormat.CSV:
        rows.close()
        encoding = await asyncio.to_thread(require_csv_encoding, upload)
        staged = await stage_csv(conn, upload, encoding, layout, limits, progress)
        if staged is None:
            progress.done = 0
            rows = UploadRows(upload, handler, limits)
            await asyncio.to_thread(rows.start)
    if staged is None:
        staged = await stage_rows(conn, rows, progress)
        sheets = rows.sheets
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
        staged,
        unguard=upload_format is UploadFormat.CSV,
        time_zone=time_zone,
    )
    # Temporary tables are never analysed by autovacuum: without statistics the planner
    # guesses, and sorts a million rows to disk where a hash join takes a moment.
    await conn.execute(f"ANALYZE {staged.table}")
    await conn.execute(plan.find_repeats)
    await conn.execute(f"ANALYZE {REPEATS}")
    await conn.execute(plan.check_rows)
    by_action: dict[str, int] = {r[0]: r[1] for r in await conn.fetch(COUNT_ACTIONS)}
    rows_checked: int = await conn.fetchval(plan.count_rows)
    counts = Counts(
        created=by_action.get("create", 0),
        updated=by_action.get("update", 0),
        unchanged=rows_checked - sum(by_action.values()),
        rejected=by_action.get("reject", 0),
    )
    errors = list(_first_errors(await conn.fetch(FIRST_REJECTED, SHOWN_ERRORS), sheets))
    return Checked(plan, counts, errors[:SHOWN_ERRORS], sheets)


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


async def rejected_rows(conn: Connection, sheets: Sequence[str]) -> AsyncIterator[list[Rejected]]:
    """Every rejected row's place and problems, in the order read, a batch at a time."""
    batch: list[Rejected] = []
    async for record in conn.cursor(ALL_REJECTED, prefetch=REJECTED_BATCH):
        problems = [Problem.of(found, sheets) for found in record["problems"]]
        batch.append(Rejected(record["sheet"], record["row_no"], problems))
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
