"""Export types that fail on purpose, registered for the tests only."""

from __future__ import annotations

from exporter import Column, ColumnKind, ExportParams, RowQuery, export_handler


class NoParams(ExportParams):
    pass


@export_handler("test_raises", title="会失败", params=NoParams, columns=[Column("ID", "a.id")])
def raising_rows(params: NoParams) -> RowQuery:
    raise RuntimeError("the handler exploded on purpose")


# Fails mid-stream: thousands of rows are written before PostgreSQL divides by zero.
@export_handler(
    "test_fails_midway",
    title="中途失败",
    params=NoParams,
    columns=[Column("X", "100 / (15000 - a.id)", ColumnKind.INTEGER)],
)
def midway_rows(params: NoParams) -> RowQuery:
    return RowQuery("generate_series(1, 20000) AS a(id)", order_by="a.id")
