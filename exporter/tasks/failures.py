"""Why an attempt failed, as its task keeps it, and whether another attempt could succeed."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

import asyncpg

from exporter.db import lost_connection
from exporter.errors import ExporterError
from exporter.tasks.kinds import TaskKind
from exporter.tasks.models import TaskFailure


def transient_cause(exc: BaseException) -> BaseException | None:
    """What makes a failure worth another attempt: a lost database connection or helper
    process, or an error of the exporter's that says so (``ExporterError.transient``)."""
    if isinstance(exc, ExporterError) and exc.transient:
        return exc
    return lost_connection(exc, BrokenProcessPool)


def describe_failure(exc: BaseException, kind: TaskKind, timeout_s: int) -> TaskFailure:
    """Why the task failed, as its error fields keep it: something a user can act on."""
    if (known := kind.describe_failure(exc)) is not None:
        return known
    if isinstance(lost := lost_connection(exc, BrokenProcessPool), BrokenProcessPool):
        return TaskFailure("helper_process_stopped", "a helper process stopped unexpectedly")
    if lost is not None:
        return TaskFailure("database_unavailable", f"lost the database connection: {lost}")
    if isinstance(exc, TimeoutError):
        return TaskFailure("timed_out", f"timed out after {timeout_s} s", {"seconds": timeout_s})
    if isinstance(exc, ExporterError):
        return TaskFailure(exc.code, exc.message, exc.params)
    if isinstance(exc, asyncpg.PostgresError):
        return TaskFailure("database_error", f"database error: {exc}", {"sqlstate": exc.sqlstate})
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return TaskFailure("storage_error", f"storage error: {exc.strerror or exc}{where}")
    noun = kind.noun
    return TaskFailure(f"{noun}_failed", f"{noun} failed: {type(exc).__name__}: {exc}")
