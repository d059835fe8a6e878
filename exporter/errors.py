"""The exporter's error family. One middleware maps each class to its HTTP status.

ExporterError
├── InvalidRequest            400  the body is not what the endpoint takes
│   ├── InvalidParams         422  a field has a bad value (details name the field)
│   │   └── HandlerNotFound   422  no handler is registered for the export type
│   └── RequestTimeout        408  the body did not arrive in EXPORTER_BODY_TIMEOUT_S
├── Unauthorized              401
├── Forbidden                 403
│   └── AccountInactive       403  the account is disabled or locked
├── TaskNotFound              404
├── TaskNotReady              409  the task has no file to download (yet)
├── TaskStateConflict         409  the task's state does not allow the action
├── KeptBytesExceeded         409  the account's finished files take all the bytes it may keep
├── FileGone                  410  the task's file no longer exists (expired)
├── UploadTooLarge            413  an uploaded file is over EXPORTER_MAX_UPLOAD_BYTES
├── IdempotencyConflict       422  an Idempotency-Key reused with another body
├── QuotaExceeded             429  too many unfinished tasks for this account
├── TooManySignIns            429  too many failed sign-ins for a username or address; wait
├── TooManyStreams            429  the account has as many event streams open as it may
├── ServiceUnavailable        503  a backing service is down
│   ├── QueueFull             503  too many tasks waiting in all
│   └── StreamsFull           503  this API process has as many event streams open as it may
├── ExportFailed              the worker could not produce the file (stored on the task)
│   ├── TooManyRows           more rows than EXPORTER_MAX_ROWS
│   ├── FileTooLarge          a workbook past the zip format's 4 GiB
│   ├── ReplicaConflict       the replica cancelled the read (retried, on the primary)
│   └── CellRefused           the xlsx writer refused a value
├── DuplicateHandler          a second handler registered under a taken name (import time)
└── UnsupportedDependency     an installed library lacks what the exporter uses (start-up)
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class FieldProblem:
    """One bad field of a request: its dotted path, what is wrong in English, and the same as a
    stable code with the values its message names (what a page translates)."""

    field: str
    message: str
    code: str = "invalid"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose.

    ``code`` is stable and ``params`` holds the values the English ``message`` names, so that a
    page can say the same in its reader's language.
    """

    status = 500
    code = "internal_error"
    # Seconds a 429 or 503 asks the client to wait, when the error knows (else the default).
    retry_after_s: int | None = None
    # A task's attempt that fails with it is worth another (the runner queues the task again).
    transient = False

    def __init__(
        self,
        message: str,
        details: list[FieldProblem] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.params = params or {}


class InvalidRequest(ExporterError):
    """The request body or query string is not what the endpoint takes."""

    status = 400
    code = "invalid_request"


class InvalidParams(InvalidRequest):
    """A field has a bad value; details name each field."""

    status = 422
    code = "invalid_params"


class RequestTimeout(InvalidRequest):
    """The request body did not arrive in time."""

    status = 408
    code = "request_timeout"


class Unauthorized(ExporterError):
    """No valid credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(ExporterError):
    """Valid credentials, but the account may not do this."""

    status = 403
    code = "forbidden"


class AccountInactive(Forbidden):
    """The account is not active (disabled or locked): it may do nothing until it is again."""

    code = "account_inactive"


class TaskNotFound(ExporterError):
    """No such task for this user (another user's task looks exactly the same)."""

    status = 404
    code = "not_found"


class TaskNotReady(ExporterError):
    """The task exists but has no file to download in its current state."""

    status = 409
    code = "task_not_ready"


class TaskStateConflict(ExporterError):
    """The task's current state does not allow the action (cancel a finished task, …)."""

    status = 409
    code = "invalid_state"


class KeptBytesExceeded(ExporterError):
    """The account's finished exports keep as many bytes of files as it may.

    409, not 429: waiting does not help (files are kept for days); deleting some does.
    """

    status = 409
    code = "kept_bytes_exceeded"


class IdempotencyConflict(ExporterError):
    """The Idempotency-Key was first used with a different request body."""

    status = 422
    code = "idempotency_key_reused"


class QuotaExceeded(ExporterError):
    """The account has as many unfinished tasks as it may."""

    status = 429
    code = "quota_exceeded"


class TooManySignIns(ExporterError):
    """Too many failed sign-ins for this username or from this address; try again later."""

    status = 429
    code = "too_many_sign_ins"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, params={"minutes": -(-retry_after_s // 60)})
        self.retry_after_s = retry_after_s


class TooManyStreams(ExporterError):
    """The account has as many task event streams open as it may."""

    status = 429
    code = "too_many_streams"


class FileGone(ExporterError):
    """The task completed, but its file is gone."""

    status = 410
    code = "file_gone"


class UploadTooLarge(ExporterError):
    """The uploaded file is larger than an upload may be (params: limit)."""

    status = 413
    code = "upload_too_large"


class ServiceUnavailable(ExporterError):
    """A service the request needs is down; trying again later may work."""

    status = 503
    code = "service_unavailable"


class QueueFull(ServiceUnavailable):
    """Too many tasks are waiting in all."""

    code = "queue_full"


class StreamsFull(ServiceUnavailable):
    """This API process has as many task event streams open as it may."""

    code = "streams_full"


class HandlerNotFound(InvalidParams):
    """No export handler is registered under the requested type."""

    status = 422
    code = "unknown_type"


class ExportFailed(ExporterError):
    """The worker could not produce the file; code, params and message are stored on the task."""

    code = "export_failed"


class TooManyRows(ExportFailed):
    """The filters match more rows than one export may hold (params: rows, limit)."""

    code = "too_many_rows"


class ReplicaConflict(ExportFailed):
    """The replica cancelled the export's read to replay the primary's changes (a recovery
    conflict: rows vacuumed away, a lock taken, …); the next attempt reads from the primary."""

    code = "replica_conflict"
    transient = True


class FileTooLarge(ExportFailed):
    """The workbook would pass the 4 GiB a zip without its 64-bit extension can hold."""

    code = "file_too_large"


class CellRefused(ExportFailed):
    """The xlsx writer refused a value (params: sheet, row, column)."""

    code = "cell_refused"


class DuplicateHandler(ExporterError):
    """Two handlers claim the same type name."""

    code = "duplicate_handler"


class UnsupportedDependency(ExporterError):
    """An installed library lacks a member the exporter relies on: another release is needed."""

    code = "unsupported_dependency"
