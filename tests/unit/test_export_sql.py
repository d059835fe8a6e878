"""The statements of one export, as build_export_sql shapes them for csv and for xlsx."""

from __future__ import annotations

import re

import pytest

from exporter.exports.columns import Column, ColumnKind
from exporter.exports.formats import FORMATS
from exporter.exports.row_query import RowQuery
from exporter.exports.sql import build_export_sql

LABELS = {"active": "正常", "disabled": "禁用"}
COLUMNS = [
    Column("ID", "a.id", ColumnKind.INTEGER),
    Column("用户名", "a.username"),
    Column("创建时间", "a.created_at", ColumnKind.DATETIME),
    Column("状态", "a.status", ColumnKind.ENUM, labels=LABELS),
]
LATERAL = (
    "accounts a CROSS JOIN LATERAL (SELECT (a.id) AS c0, (a.username)::text AS c1,"
    " (a.created_at) AS c2, (a.status)::text AS c3) AS q"
)


ACCOUNTS = RowQuery("accounts a", order_by="a.id")


def filtered_query() -> RowQuery:
    return (
        RowQuery("accounts a", order_by="a.id")
        .where("a.role_id = {}", 3)
        .where("a.created_at >= {} AND a.created_at < {}", "2026-01-01", "2026-02-01")
    )


def placeholders(statement: str) -> set[int]:
    return {int(number) for number in re.findall(r"\$(\d+)", statement)}


def test_conditions_are_parenthesised_and_numbered_in_the_order_they_were_added() -> None:
    query = filtered_query()

    assert query.where_sql == (
        " WHERE (a.role_id = $1) AND (a.created_at >= $2 AND a.created_at < $3)"
    )
    assert query.args == [3, "2026-01-01", "2026-02-01"]
    assert RowQuery("roles r", order_by="r.id").where_sql == ""


def test_one_value_used_twice_in_a_condition_is_bound_once() -> None:
    query = RowQuery("accounts a", order_by="a.id").where(
        "a.username ILIKE {0} OR a.email ILIKE {0}", "%x%"
    )

    assert query.where_sql == " WHERE (a.username ILIKE $1 OR a.email ILIKE $1)"
    assert query.args == ["%x%"]


def test_the_count_reads_the_filtered_rows_without_shaping_them() -> None:
    sql = build_export_sql(COLUMNS, filtered_query(), FORMATS["csv"].value_sql)

    assert sql.count == (
        "SELECT count(*) FROM accounts a"
        " WHERE (a.role_id = $1) AND (a.created_at >= $2 AND a.created_at < $3)"
    )
    assert sql.count_args == (3, "2026-01-01", "2026-02-01")


@pytest.mark.parametrize("format_name", ["csv", "xlsx"])
def test_labels_are_bound_after_the_filters_and_the_range_after_the_labels(
    format_name: str,
) -> None:
    sql = build_export_sql(COLUMNS, filtered_query(), FORMATS[format_name].value_sql)

    assert sql.args == (3, "2026-01-01", "2026-02-01", "active", "正常", "disabled", "禁用")
    assert "CASE q.c3 WHEN $4 THEN $5 WHEN $6 THEN $7 ELSE " in sql.rows
    assert placeholders(sql.rows) == set(range(1, 8))
    assert placeholders(sql.ranged) == set(range(1, 10))
    assert sql.ranged.endswith(" ORDER BY a.id OFFSET $8 LIMIT $9) AS q")


@pytest.mark.parametrize("format_name", ["csv", "xlsx"])
def test_each_handler_expression_is_evaluated_once_in_a_lateral_subquery(format_name: str) -> None:
    sql = build_export_sql(COLUMNS, ACCOUNTS, FORMATS[format_name].value_sql)

    # Formatting refers to q.cN, however often it needs the value.
    for expression in ("(a.id)", "(a.username)", "(a.created_at)", "(a.status)"):
        assert sql.rows.count(expression) == 1, expression
        assert sql.ranged.count(expression) == 1, expression
    assert sql.rows.endswith(f" FROM {LATERAL} ORDER BY a.id")
    # The labels' four values come first.
    assert sql.ranged.endswith(
        f" FROM (SELECT q.* FROM {LATERAL} ORDER BY a.id OFFSET $5 LIMIT $6) AS q"
    )


def test_csv_guards_text_against_formulas_but_not_numbers_or_datetimes() -> None:
    columns = [
        Column("ID", "a.id", ColumnKind.INTEGER),
        Column("创建时间", "a.created_at", ColumnKind.DATETIME),
        Column("用户名", "a.username"),
    ]

    sql = build_export_sql(columns, ACCOUNTS, FORMATS["csv"].value_sql)

    select_list = sql.rows.removeprefix("SELECT ").split(" FROM ", 1)[0]
    assert select_list == (
        "q.c0, date_trunc('second', q.c1::timestamp),"
        " CASE WHEN ascii(q.c2) > 64 OR ascii(q.c2) BETWEEN 46 AND 60 THEN q.c2"
        " WHEN ascii(q.c2) IN (61, 64, 9, 13, 10)"
        " OR (ascii(q.c2) IN (43, 45) AND q.c2 !~ '^[+-][0-9]+([.][0-9]+)?$')"
        " OR (ascii(q.c2) = 39 AND (ascii(ltrim(q.c2, '''')) IN (61, 64, 9, 13, 10)"
        " OR (ascii(ltrim(q.c2, '''')) IN (43, 45)"
        " AND ltrim(q.c2, '''') !~ '^[+-][0-9]+([.][0-9]+)?$')))"
        " THEN '''' || q.c2 ELSE q.c2 END"
    )


def test_csv_guards_an_unknown_enum_code_but_not_the_labels() -> None:
    status = [Column("状态", "a.status", ColumnKind.ENUM, labels={"active": "正常"})]

    sql = build_export_sql(status, ACCOUNTS, FORMATS["csv"].value_sql)

    labelled, otherwise = sql.rows.split(" ELSE ", 1)
    assert labelled == "SELECT CASE q.c0 WHEN $1 THEN $2"
    assert otherwise.startswith("CASE WHEN ascii(q.c0) > 64")
    assert "THEN '''' || q.c0 ELSE q.c0 END END FROM " in otherwise


def test_xlsx_writes_text_and_labels_as_they_are_and_a_datetime_as_two_values() -> None:
    columns = [
        Column("用户名", "a.username"),
        Column("状态", "a.status", ColumnKind.ENUM, labels={"active": "正常"}),
        Column("创建时间", "a.created_at", ColumnKind.DATETIME),
    ]

    sql = build_export_sql(columns, ACCOUNTS, FORMATS["xlsx"].value_sql)

    in_excel = (
        "(q.c2 > '1900-03-03' AND q.c2 < '9999-12-29'"
        " OR q.c2::timestamp >= '1900-03-01' AND q.c2::timestamp < '10000-01-01')"
    )
    select_list = sql.rows.removeprefix("SELECT ").split(" FROM ", 1)[0]
    assert select_list == (
        "q.c0, CASE q.c1 WHEN $1 THEN $2 ELSE q.c1 END,"
        f" CASE WHEN {in_excel} THEN date_trunc('second', q.c2::timestamp) END,"
        f" CASE WHEN {in_excel} THEN NULL ELSE date_trunc('second', q.c2::timestamp)::text END"
    )
