"""SQL for one export: the handler's columns over its row query, shaped by the file format.

Formatting happens in PostgreSQL so that every format reads the same rows: a lateral subquery
yields the handler's typed values, the select list (the format's) turns them into what the file
holds. Both run with the session time zone set to the configured one (and DateStyle ISO), so
``timestamptz`` values convert there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.row_query import RowQuery

# Set in the export's transaction: the zone of datetimes, and their text form.
SESSION_SETTINGS = "SELECT set_config('TimeZone', $1, true), set_config('DateStyle', 'ISO', true)"


# How a file format turns a column's typed value (an SQL expression) into what its file holds:
# one or more select-list entries; constants it needs are bound by appending them to the args.
ValueSql = Callable[[Column, str, list[Any]], str]


@dataclass(frozen=True)
class ExportSql:
    """The statements of one export with their bound arguments."""

    count: str
    rows: str
    # The rows from OFFSET to LIMIT, bound after ``args``; formatted after the cut, so the
    # rows skipped to reach the range cost no formatting.
    ranged: str
    args: tuple[Any, ...]
    count_args: tuple[Any, ...]


def label_sql(column: Column, value: str, args: list[Any], otherwise: str) -> str:
    """An ENUM column's label for the stored code ``value`` (``otherwise`` for an unknown one);
    the codes and labels are bound by appending them to ``args``."""
    branches = []
    for code, label in column.labels.items():
        args.extend((code, label))
        branches.append(f"WHEN ${len(args) - 1} THEN ${len(args)}")
    return f"CASE {value} {' '.join(branches)} ELSE {otherwise} END"


def local_datetime_sql(value: str) -> str:
    """A ``timestamptz`` as the wall time the file shows, in the session's zone."""
    # Whole seconds: a float of days cannot hold microseconds exactly, and as text (DateStyle
    # ISO) it reads 2026-01-31 08:00:00, cheaper than to_char.
    return f"date_trunc('second', {value}::timestamp)"


def _inner_value(column: Column, index: int) -> str:
    cast = "" if column.kind in (ColumnKind.INTEGER, ColumnKind.DATETIME) else "::text"
    return f"({column.sql}){cast} AS c{index}"


def build_export_sql(columns: Sequence[Column], query: RowQuery, shape: ValueSql) -> ExportSql:
    """The count and row statements for the handler's columns over its query, each value
    shaped by ``shape`` (the file format's)."""
    args = list(query.args)
    outer = ", ".join(shape(column, f"q.c{index}", args) for index, column in enumerate(columns))
    inner = ", ".join(_inner_value(column, index) for index, column in enumerate(columns))
    # The lateral names each value once, so the formatting can use it twice without
    # evaluating the handler's expression twice; the ORDER BY stays on the outer query.
    typed = f"{query.source} CROSS JOIN LATERAL (SELECT {inner}) AS q{query.where_sql}"
    offset_at = len(args) + 1
    return ExportSql(
        count=f"SELECT count(*) FROM {query.source}{query.where_sql}",
        rows=f"SELECT {outer} FROM {typed} ORDER BY {query.order_by}",
        # PostgreSQL returns a subquery's ordered rows in that order to a plain projection.
        ranged=(
            f"SELECT {outer} FROM (SELECT q.* FROM {typed} ORDER BY {query.order_by}"
            f" OFFSET ${offset_at} LIMIT ${offset_at + 1}) AS q"
        ),
        args=tuple(args),
        count_args=tuple(query.args),
    )
