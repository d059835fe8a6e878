"""Why a task failed, as describe_failure words it for the task's error fields."""

from __future__ import annotations

import errno
from concurrent.futures.process import BrokenProcessPool

import asyncpg
import pytest

from exporter.errors import ReplicaConflict, TooManyRows
from exporter.exports.kind import ExportKind, ExportSettings
from exporter.exports.registry import HandlerRegistry
from exporter.tasks.failures import describe_failure, transient_cause
from exporter.tasks.kinds import TaskKind
from exporter.tasks.models import TaskFailure

TIMEOUT_S = 600
# Exports, the kind whose words these are; describing a failure reads nothing, so no pool.
EXPORTS = ExportKind(HandlerRegistry(), None, ExportSettings("UTC", 1))  # type: ignore[arg-type]


def describe(exc: BaseException, timeout_s: int, kind: TaskKind = EXPORTS) -> TaskFailure:
    return describe_failure(exc, kind, timeout_s)


def raised_while_handling(first: BaseException, second: BaseException) -> BaseException:
    """``second`` as Python leaves it when raised in an ``except`` block for ``first``."""
    try:
        try:
            raise first
        except BaseException:
            raise second  # noqa: B904  (the implicit chain is what asyncpg produces)
    except BaseException as exc:
        return exc


def caused_by(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def test_an_encoding_process_that_died_is_named_even_behind_another_error() -> None:
    stopped = TaskFailure("encoder_stopped", "an encoding process stopped unexpectedly")

    assert describe(BrokenProcessPool("gone"), TIMEOUT_S) == stopped
    assert describe(caused_by(RuntimeError("part 2"), BrokenProcessPool()), 1) == stopped


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            "connection was closed in the middle of operation",
        ),
        # asyncpg reports a killed connection twice: the server's error, then an InterfaceError
        # from leaving the transaction; the first says what happened.
        (
            raised_while_handling(
                asyncpg.exceptions.AdminShutdownError("terminating connection"),
                asyncpg.InterfaceError("the underlying connection is closed"),
            ),
            "terminating connection",
        ),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "Connection refused"),
        # A server on a unix socket that is down: no socket file, and no file name in the error.
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), "No such file or directory"),
    ],
    ids=["closed", "admin-shutdown-then-interface-error", "refused", "socket-missing"],
)
def test_a_lost_database_connection_is_told_apart_from_errors_in_the_query(
    exc: BaseException, lost: str
) -> None:
    failure = describe(exc, TIMEOUT_S)

    assert failure.code == "database_unavailable"
    assert failure.message.startswith("lost the database connection: ")
    assert lost in failure.message
    assert failure.params == {}


def test_a_timeout_names_the_seconds_it_allowed() -> None:
    assert describe(TimeoutError(), 90) == TaskFailure(
        "timed_out", "timed out after 90 s", {"seconds": 90}
    )


def test_the_exporters_own_error_keeps_its_code_message_and_params() -> None:
    error = TooManyRows("too many rows: 1,000,001 > 1,000,000", params={"rows": 1_000_001})

    assert describe(error, TIMEOUT_S) == TaskFailure(
        "too_many_rows", "too many rows: 1,000,001 > 1,000,000", {"rows": 1_000_001}
    )


def test_a_filter_value_the_column_cannot_take_is_the_users_to_change() -> None:
    unencodable = caused_by(
        asyncpg.DataError("invalid input for query argument $1: 3000000000"),
        OverflowError("value out of int32 range"),
    )

    assert describe(unencodable, TIMEOUT_S) == TaskFailure(
        "filter_value_out_of_range",
        "a filter value does not fit the data it is compared with: value out of int32 range",
    )


def test_an_error_the_server_raised_in_the_query_keeps_its_sqlstate() -> None:
    # A DataError subclass comes from the server, whatever it was raised while handling.
    division = caused_by(
        asyncpg.exceptions.DivisionByZeroError("division by zero"), OverflowError("unrelated")
    )

    assert describe(division, TIMEOUT_S) == TaskFailure(
        "database_error", "database error: division by zero", {"sqlstate": "22012"}
    )


def test_a_storage_error_says_what_and_where() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/var/exports/t.xlsx.part")

    assert describe(full, TIMEOUT_S) == TaskFailure(
        "storage_error", "storage error: No space left on device (/var/exports/t.xlsx.part)"
    )
    assert describe(PermissionError(errno.EACCES, "Permission denied"), 1) == (
        TaskFailure("storage_error", "storage error: Permission denied")
    )


def test_anything_else_is_named_by_its_class_and_message() -> None:
    assert describe(ValueError("bad row"), TIMEOUT_S) == TaskFailure(
        "export_failed", "export failed: ValueError: bad row"
    )


class Count:
    """Another kind of task: its own noun, no failures of its own."""

    name = noun = "count"

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        return None


def test_another_kind_names_its_own_failures_and_shares_the_rest() -> None:
    count: TaskKind = Count()  # type: ignore[assignment]

    assert describe(ValueError("bad row"), TIMEOUT_S, count) == TaskFailure(
        "count_failed", "count failed: ValueError: bad row"
    )
    assert describe(TimeoutError(), 5, count) == TaskFailure(
        "timed_out", "timed out after 5 s", {"seconds": 5}
    )


def test_a_read_the_replica_cancelled_is_worth_another_attempt_and_named_if_none_is_left() -> None:
    conflict = caused_by(
        ReplicaConflict("the replica cancelled the read to replay the primary's changes: …"),
        asyncpg.exceptions.SerializationError("canceling statement due to conflict with recovery"),
    )

    assert transient_cause(conflict) is conflict
    assert describe(conflict, TIMEOUT_S) == TaskFailure(
        "replica_conflict", "the replica cancelled the read to replay the primary's changes: …"
    )
    # A serialization failure elsewhere is the query's own: no retry.
    assert transient_cause(asyncpg.exceptions.SerializationError("could not serialize")) is None
