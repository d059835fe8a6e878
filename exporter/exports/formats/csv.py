"""CSV files: UTF-8 with a BOM so Excel reads Chinese text, RFC 4180 quoting, one header row.

The rows come from PostgreSQL's ``COPY … TO STDOUT (FORMAT csv)`` already shaped and quoted
(see :mod:`exporter.exports.formats.csv_copy`); this module shapes them, writes what precedes
them, and chooses one connection or several.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import aiofiles

from exporter.db import Connection
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats.base import FileJob, RowProgress
from exporter.exports.formats.csv_copy import copy_rows, copy_rows_in_parts
from exporter.exports.sql import label_sql, local_datetime_sql

UTF8_BOM = b"\xef\xbb\xbf"

# Excel evaluates a cell that starts with = @ tab CR LF, or with + or - unless a plain number
# follows ("+8613800138000", "-5"). Every such character is below 'A' (65) and outside
# '.' … '<' (46-60, the digits among them): most values, starting with a letter, a CJK
# character or a digit, leave at the first, cheap test. A value whose own quotes come before
# such a character is guarded too: an import takes one quote off a value that starts so
# (exporter/imports/checks.py), and the value must come back as it was.
_CSV_GUARD = (
    "CASE WHEN ascii({v}) > 64 OR ascii({v}) BETWEEN 46 AND 60 THEN {v}"
    " WHEN ascii({v}) IN (61, 64, 9, 13, 10)"
    " OR (ascii({v}) IN (43, 45) AND {v} !~ '^[+-][0-9]+([.][0-9]+)?$')"
    " OR (ascii({v}) = 39 AND (ascii(ltrim({v}, '''')) IN (61, 64, 9, 13, 10)"
    " OR (ascii(ltrim({v}, '''')) IN (43, 45)"
    " AND ltrim({v}, '''') !~ '^[+-][0-9]+([.][0-9]+)?$')))"
    " THEN '''' || {v} ELSE {v} END"
)


def csv_preamble(columns: Sequence[Column]) -> bytes:
    """The BOM and the header row, quoted the way COPY quotes the data rows."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([column.label for column in columns])
    return UTF8_BOM + header.getvalue().encode("utf-8")


class CsvFormat:
    """csv: one header row, then COPY's rows; large exports copied over several connections."""

    name = "csv"
    content_type = "text/csv; charset=utf-8"
    grows_at_end = True

    def value_sql(self, column: Column, value: str, args: list[Any]) -> str:
        if column.kind is ColumnKind.INTEGER:
            return value
        if column.kind is ColumnKind.DATETIME:
            return local_datetime_sql(value)
        guarded = _CSV_GUARD.format(v=value)
        if column.kind is ColumnKind.ENUM:
            # Labels are the handler's constants, checked when it registers; only an unknown
            # stored code, shown as it is, needs the guard.
            return label_sql(column, value, args, guarded)
        return guarded

    async def write(self, conn: Connection, job: FileJob, progress: RowProgress) -> int:
        parallel = job.parallel
        async with aiofiles.open(job.path, "wb") as file:
            await file.write(csv_preamble(job.columns))
            if parallel is None or parallel.encoders.processes < 2 or job.total < parallel.min_rows:
                return await copy_rows(conn, job.sql.rows, job.sql.args, file, progress)
            return await copy_rows_in_parts(
                conn,
                dsn=job.dsn,
                sql=job.sql,
                total=job.total,
                parts=parallel.encoders.processes,
                time_zone=job.time_zone,
                file=file,
                work_dir=job.path.parent,
                progress=progress,
            )


CSV = CsvFormat()
