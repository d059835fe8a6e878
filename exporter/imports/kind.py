"""Imports as a kind of task: what an import request is, and how one import task runs.

An attempt reads the upload into a staging table, checks every row in PostgreSQL, writes the
report of rejected rows, and (applying) writes the valid rows, all in one transaction that
also records on the task that it applied: a worker that dies mid-import leaves nothing
written, and one that dies after the commit leaves a task that the next attempt completes
without writing twice.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from exporter.audit.events import AuditAction, AuditEvent, AuditOutcome, Client, TaskRef
from exporter.audit.trail import append_on
from exporter.auth.accounts import Account, require_permissions
from exporter.db import Connection, Pool
from exporter.errors import ExporterError
from exporter.imports.engine import (
    Counts,
    ImportSettings,
    rejected_rows,
    stage_and_check,
    write_rows,
)
from exporter.imports.problems import RowError
from exporter.imports.readers import ReadLimits, UploadFormat
from exporter.imports.reading_thread import ReadingThread
from exporter.imports.registry import ImportHandler, ImportRegistry
from exporter.imports.report import RejectedRowsReport
from exporter.imports.requests import (
    ImportMode,
    ImportParams,
    ImportRequest,
    OnError,
    find_import_handler,
)
from exporter.storage.base import Storage, StoredFile
from exporter.tasks.kinds import Attempt, FailedWithResult, TaskResult, TaskSpec
from exporter.tasks.models import Task, TaskFailure
from exporter.validation import validate

# In the import's own transaction: the task says it applied, or nothing is written. No row
# means the attempt lost the task (cancelled, deleted, taken over) and the transaction rolls
# back. The task names its report at once: until it records its end (a worker that dies now
# leaves that to the next attempt), the janitor would take the report for an orphan.
MARK_APPLIED = """
UPDATE tasks SET outcome = $3, file_key = $4
WHERE id = $1 AND attempts = $2 AND status = 'running' AND NOT cancel_requested
RETURNING true
"""


class UploadGone(ExporterError):
    """The task's upload is no longer in storage (expired, or removed by hand)."""

    status = 410
    code = "upload_gone"


class AttemptLost(ExporterError):
    """The task stopped being this attempt's before its rows were written."""

    code = "attempt_lost"


class ImportOutcome(BaseModel):
    """What an import found, as its task keeps it (``tasks.outcome``)."""

    counts: dict[str, int]
    errors: list[RowError]
    applied: bool
    report_key: str | None = None
    report_size: int | None = None

    @classmethod
    def of(
        cls, counts: Counts, errors: list[RowError], applied: bool, report: StoredFile | None
    ) -> ImportOutcome:
        return cls(
            counts={
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "rejected": counts.rejected,
            },
            errors=errors,
            applied=applied,
            report_key=report and report.key,
            report_size=report and report.size,
        )

    def result(self, file_name: str) -> TaskResult:
        report = (
            None
            if self.report_key is None or self.report_size is None
            else StoredFile(self.report_key, self.report_size)
        )
        return TaskResult(
            rows=sum(self.counts.values()),
            file_name=file_name if report else None,
            published=report,
            outcome=self.model_dump(mode="json"),
        )


def _applied_event(task: Task, outcome: ImportOutcome) -> AuditEvent:
    """An apply's rows written, or refused for its rejected rows; the request that asked for
    it has its id (its own event, import.apply, has where it came from)."""
    return AuditEvent(
        action=AuditAction.IMPORT_APPLIED,
        outcome=AuditOutcome.OK if outcome.applied else AuditOutcome.REFUSED,
        client=Client(None, None, task.request_id),
        account_id=task.created_by_id,
        error_code=None if outcome.applied else "rows_rejected",
        task=TaskRef(task.id, task.kind, task.type),
        detail={"counts": outcome.counts},
    )


class ImportKind:
    """The ``import`` kind: an uploaded file's rows checked, and written in one transaction."""

    name = "import"
    noun = "import"

    def __init__(
        self, handlers: ImportRegistry, pool: Pool, storage: Storage, settings: ImportSettings
    ) -> None:
        self.handlers = handlers
        self._pool = pool
        self._storage = storage
        self._settings = settings

    @property
    def limits(self) -> ReadLimits:
        """What an upload may hold: judged as it is received, and again as it is read."""
        return self._settings.limits

    def handler(self, type_name: str) -> ImportHandler:
        """The handler of ``type_name``; HandlerNotFound naming the ``type`` field if none."""
        return find_import_handler(self.handlers, type_name)

    def validate(self, account: Account, request: Mapping[str, Any]) -> TaskSpec:
        """The form fields of an import request, checked: type, then permissions. The spec has
        no file yet: :func:`exporter.imports.requests.with_upload` adds it once stored."""
        fields = validate(ImportRequest, request)
        require_permissions(account, *self.handler(fields.type).import_permissions)
        return TaskSpec(
            fields.type,
            "",
            {"mode": fields.mode.value, "on_error": fields.on_error.value},
            notify_url=fields.notify_url,
        )

    def timeout_s(self, task: Task) -> int | None:
        return None

    async def run(self, attempt: Attempt) -> TaskResult:
        task = attempt.task
        if task.outcome is not None and task.outcome.get("applied"):
            # Written and committed by an attempt that stopped before the task could say so.
            return ImportOutcome.model_validate(task.outcome).result(self._report_name(task))
        handler = self.handlers.get(task.type)
        params = ImportParams.model_validate(task.params)
        upload = attempt.work_dir / f"upload.{task.format}"
        if not task.upload_key or not await self._storage.retrieve(task.upload_key, upload):
            raise UploadGone("The uploaded file is no longer in storage; upload it again")
        async with self._pool.acquire() as conn, conn.transaction():
            checked = await stage_and_check(
                conn,
                handler,
                upload,
                UploadFormat(task.format),
                self._settings,
                attempt.progress,
                writes=params.mode is ImportMode.APPLY,
            )
            counts = checked.counts
            attempt.progress.total = attempt.progress.done = counts.rows
            report = None
            if counts.rejected:
                report = await self._report(conn, attempt, handler, checked.sheets)
            apply = params.mode is ImportMode.APPLY and (
                counts.rejected == 0 or params.on_error is OnError.SKIP
            )
            outcome = ImportOutcome.of(counts, checked.errors, apply, report)
            if apply:
                await write_rows(conn, checked.plan)
                marked = await conn.fetchval(
                    MARK_APPLIED,
                    task.id,
                    task.attempts,
                    outcome.model_dump(mode="json"),
                    outcome.report_key,
                )
                if not marked:
                    raise AttemptLost("the import stopped being this attempt's; nothing written")
            if params.mode is ImportMode.APPLY:
                # In the transaction that writes the rows: written rows always have their event.
                await append_on(conn, _applied_event(task, outcome))
        result = outcome.result(self._report_name(task))
        if params.mode is ImportMode.APPLY and not apply:
            raise FailedWithResult(
                TaskFailure(
                    "rows_rejected",
                    f"{counts.rejected} rows rejected; nothing was imported",
                    {"rejected": counts.rejected},
                ),
                result,
            )
        return result

    async def _report(
        self, conn: Connection, attempt: Attempt, handler: ImportHandler, sheets: Sequence[str]
    ) -> StoredFile:
        """Write the rejected rows' report and store it (before the commit, so that a task
        whose rows were written always has its report)."""
        path = attempt.work_dir / "report.xlsx"
        upload = attempt.work_dir / f"upload.{attempt.task.format}"
        thread = ReadingThread()
        try:
            report = await thread.call(
                functools.partial(RejectedRowsReport, path, upload, handler, self._settings.limits)
            )
            try:
                async for batch in rejected_rows(conn, sheets):
                    await thread.call(functools.partial(report.add, batch))
            finally:
                await thread.call(report.close)
        finally:
            thread.close()
        # The attempt's own name: a stale attempt still finishing must not overwrite the
        # report of the one that took the task over.
        task = attempt.task
        return await self._storage.publish(path, f"{task.id}.report-{task.attempts}.xlsx")

    def _report_name(self, task: Task) -> str:
        now = datetime.now(ZoneInfo(self._settings.time_zone))
        stamp = f"{now:%Y%m%d_%H%M%S}_{task.id.hex[:6]}"
        return f"{self.handlers.get(task.type).title}_导入问题_{stamp}.xlsx"

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        return None
