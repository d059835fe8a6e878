"""Export types that fail, dawdle or make large files on purpose, registered for the tests only.

Worker processes started by the tests load this module through EXPORTER_HANDLER_MODULES.
"""

from __future__ import annotations

import os
import signal

from pydantic import Field

from exporter import Column, ColumnKind, ExportParams, RowQuery, export_handler

# What EXPORTER_HANDLER_MODULES (Settings.handler_modules) names to load this module.
HANDLER_MODULES = __name__
# Only worker processes that the tests start set this: the pytest process must never die.
SUICIDE_ALLOWED_ENV = "EXPORTER_TEST_WORKER_MAY_DIE"


class NoParams(ExportParams):
    pass


class AtMostParams(ExportParams):
    at_most: int = 0


class SlowParams(ExportParams):
    rows: int = Field(2_000, ge=0, le=250_000)


# Declares its own permission, as a handler may, instead of the default "test_raises:read".
@export_handler(
    "test_raises",
    title="会失败",
    params=NoParams,
    columns=[Column("ID", "a.id")],
    permission="ops:read",
)
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


# About a millisecond per row inside PostgreSQL: slow enough to watch, cancel or kill. The
# rows come from an indexed table (tests/conftest.py makes it), so they stream without a sort.
SLOW_NUMBER = Column("N", "g.n + 0 * length(pg_sleep(0.001)::text)", ColumnKind.INTEGER)


@export_handler(
    "test_slow",
    title="慢速",
    params=SlowParams,
    columns=[SLOW_NUMBER, Column("文本", "'行 ' || g.n")],
)
def slow_rows(params: SlowParams) -> RowQuery:
    return RowQuery("test_series g", order_by="g.n").where("g.n <= {}", params.rows)


# About 60 bytes a row: 250,000 rows make a csv of ~15 MB, two parts of an upload to S3.
export_handler(
    "test_wide",
    title="宽行",
    params=SlowParams,
    columns=[Column("N", "g.n", ColumnKind.INTEGER), Column("文本", "repeat('宽', 16) || g.n")],
)(slow_rows)

# About 3 kB a row at about a millisecond a row: an upload of it is under way for seconds.
export_handler(
    "test_slow_wide",
    title="慢速宽行",
    params=SlowParams,
    columns=[SLOW_NUMBER, Column("文本", "repeat('宽', 1000)")],
)(slow_rows)


@export_handler("test_kills_worker", title="杀死进程", params=NoParams, columns=[Column("X", "1")])
def killing_rows(params: NoParams) -> RowQuery:
    if os.environ.get(SUICIDE_ALLOWED_ENV) != "1":
        raise RuntimeError("refusing to kill a process that is not a disposable test worker")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process is gone")


# test_series.n is an integer column: a value past int4 but within bigint passes validation and
# is refused only when asyncpg encodes it for the query, in the worker.
@export_handler(
    "test_int4_filter",
    title="整数过滤",
    params=AtMostParams,
    columns=[Column("N", "g.n", ColumnKind.INTEGER)],
)
def int4_rows(params: AtMostParams) -> RowQuery:
    return RowQuery("test_series g", order_by="g.n").where("g.n <= {}", params.at_most)
