"""SQL for one export: the handler's columns over its row query, shaped for each file format.

Formatting happens in PostgreSQL so that every format reads the same rows: a lateral subquery
yields the handler's typed values, the select list turns them into what the file holds. Both run
with the session time zone set to the configured one, so ``timestamptz`` values convert there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.registry import Column, ColumnKind, RowQuery

CSV_DATETIME_FORMAT = "YYYY-MM-DD HH24:MI:SS"

# Excel evaluates a cell that starts with one of these; "+8613800138000" and "-5" it cannot.
_CSV_GUARD = (
    "CASE WHEN left({v}, 1) IN ('=', '@', E'\\t', E'\\r', E'\\n')"
    " OR (left({v}, 1) IN ('+', '-') AND {v} !~ '^[+-][0-9]+([.][0-9]+)?$')"
    " THEN '''' || {v} ELSE {v} END"
)


@dataclass(frozen=True)
class ExportSql:
    """The statements of one export with their bound arguments."""

    count: str
    rows: str
    args: tuple[Any, ...]
    count_args: tuple[Any, ...]


def _label_sql(column: Column, value: str, args: list[Any]) -> str:
    branches = []
    for code, label in column.labels.items():
        args.extend((code, label))
        branches.append(f"WHEN ${len(args) - 1} THEN ${len(args)}")
    return f"CASE {value} {' '.join(branches)} ELSE {value} END"


def _xlsx_value(column: Column, value: str, args: list[Any]) -> str:
    if column.kind is ColumnKind.DATETIME:
        # Whole seconds, as the csv shows them; a float of days cannot hold microseconds exactly.
        return f"date_trunc('second', {value}::timestamp)"
    if column.kind is ColumnKind.ENUM:
        return _label_sql(column, value, args)
    return value


def _csv_value(column: Column, value: str, args: list[Any]) -> str:
    if column.kind is ColumnKind.INTEGER:
        return value
    if column.kind is ColumnKind.DATETIME:
        return f"to_char({value}, '{CSV_DATETIME_FORMAT}')"
    text = _label_sql(column, value, args) if column.kind is ColumnKind.ENUM else value
    return _CSV_GUARD.format(v=f"({text})")


def _inner_value(column: Column, index: int) -> str:
    cast = "" if column.kind in (ColumnKind.INTEGER, ColumnKind.DATETIME) else "::text"
    return f"({column.sql}){cast} AS c{index}"


def build_export_sql(columns: Sequence[Column], query: RowQuery, *, for_csv: bool) -> ExportSql:
    """The count and row statements for the handler's columns over its query."""
    args = list(query.args)
    shape = _csv_value if for_csv else _xlsx_value
    outer = ", ".join(shape(column, f"q.c{index}", args) for index, column in enumerate(columns))
    inner = ", ".join(_inner_value(column, index) for index, column in enumerate(columns))
    # The lateral names each value once, so the formatting can use it twice without
    # evaluating the handler's expression twice; the ORDER BY stays on the outer query.
    return ExportSql(
        count=f"SELECT count(*) FROM {query.source}{query.where_sql}",
        rows=(
            f"SELECT {outer} FROM {query.source} CROSS JOIN LATERAL (SELECT {inner}) AS q"
            f"{query.where_sql} ORDER BY {query.order_by}"
        ),
        args=tuple(args),
        count_args=tuple(query.args),
    )
