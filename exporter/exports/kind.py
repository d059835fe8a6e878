"""Exports as a kind of task: what an export request is, and how one export task runs."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from exporter.auth.accounts import Account, require_permissions
from exporter.db import Pool, unencodable_argument
from exporter.errors import FieldProblem, HandlerNotFound
from exporter.exports.export_file import ExportRequest, export_to_file
from exporter.exports.formats import DEFAULT_FORMAT, FORMATS
from exporter.exports.formats.base import ParallelEncoding
from exporter.exports.formats.names import FormatName
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.exports.row_source import ReplicaSettings, RowSources
from exporter.tasks.failures import transient_cause
from exporter.tasks.kinds import Attempt, Progress, TaskResult, TaskSpec
from exporter.tasks.models import Task, TaskFailure
from exporter.tasks.notify_url import NotifyUrl
from exporter.validation import validate


class CreateTaskRequest(BaseModel):
    """Body of POST /api/export-tasks.

    ``params`` are checked by the type's own model, which names the field inside them, and an
    unknown ``type`` is refused by name.
    """

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64, description="a registered export type")
    format: FormatName = DEFAULT_FORMAT
    params: dict[str, Any] = Field(default_factory=dict, description="filters of the type")
    notify_url: NotifyUrl | None = None


@dataclass(frozen=True)
class ExportSettings:
    """What running an export takes from the deployment's settings; with ``replica``, exports
    read their rows there."""

    time_zone: str
    max_rows: int
    parallel: ParallelEncoding | None = None
    replica: ReplicaSettings | None = None


class ExportKind:
    """The ``export`` kind: a handler's rows, read in one snapshot, into a file of a format."""

    name = "export"
    noun = "export"

    def __init__(self, handlers: HandlerRegistry, pool: Pool, settings: ExportSettings) -> None:
        self.handlers = handlers
        self._rows = RowSources(pool, settings.replica)
        self._settings = settings

    def handler(self, type_name: str) -> ExportHandler[Any]:
        """The handler of ``type_name``; HandlerNotFound naming the ``type`` field if none."""
        if type_name not in self.handlers:
            known = ", ".join(handler.name for handler in self.handlers)
            raise HandlerNotFound(
                f"unknown export type {type_name!r}",
                [
                    FieldProblem(
                        "type", f"must be one of: {known}", "unknown_type", {"expected": known}
                    )
                ],
            )
        return self.handlers.get(type_name)

    def validate(self, account: Account, body: Mapping[str, Any]) -> TaskSpec:
        """The task a create request asks for, checked: type, permissions, then the filters."""
        request = validate(CreateTaskRequest, body)
        spec = self.check(account, request.type, request.format, request.params)
        return replace(spec, notify_url=request.notify_url)

    def check(
        self, account: Account, type_name: str, file_format: str, params: Mapping[str, Any]
    ) -> TaskSpec:
        """The task for these values, checked as a new request is (a retry is one)."""
        handler = self.handler(type_name)
        require_permissions(account, *handler.export_permissions)
        model = validate(handler.params_model, params, prefix="params")
        return TaskSpec(type_name, file_format, model.model_dump(mode="json", exclude_none=True))

    def timeout_s(self, task: Task) -> int | None:
        return self.handlers.get(task.type).timeout_s if task.type in self.handlers else None

    async def run(self, attempt: Attempt) -> TaskResult:
        task, settings = attempt.task, self._settings
        path = attempt.work_dir / f"export.{task.format}"
        request = ExportRequest(
            self.handlers.get(task.type),
            task.params,
            task.format,
            path,
            settings.time_zone,
            settings.max_rows,
            settings.parallel,
        )
        file_format = FORMATS.get(task.format)
        if file_format is None or not file_format.grows_at_end:
            rows, note = await self._write(task, request, attempt.progress)
            return TaskResult(rows, path, self._file_name(task), note=note)
        # Sent to storage while COPY writes it: an upload after the file would take about as
        # long again as the export (a 1M-row csv: ~1.2 s to write, ~1 s to send to an S3 store).
        async with attempt.publishing(path) as publication:
            rows, note = await self._write(task, request, attempt.progress)
        return TaskResult(
            rows, file_name=self._file_name(task), published=publication.stored, note=note
        )

    async def _write(
        self, task: Task, request: ExportRequest, progress: Progress
    ) -> tuple[int, str | None]:
        """The rows written, and where they were read (the note for the task's history)."""
        async with self._rows.open(task) as source:
            return await export_to_file(source, request, progress), source.note

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        if isinstance(transient_cause(exc), BrokenProcessPool):
            return TaskFailure("encoder_stopped", "an encoding process stopped unexpectedly")
        if (unencodable := unencodable_argument(exc)) is not None:
            # A filter value that passed validation but not the column's type (an int4 column
            # compared with a value within bigint): the user's to change, not the database's.
            return TaskFailure(
                "filter_value_out_of_range",
                f"a filter value does not fit the data it is compared with: {unencodable}",
            )
        return None

    def _file_name(self, task: Task) -> str:
        now = datetime.now(ZoneInfo(self._settings.time_zone))
        # The task id's first characters keep two exports of one second apart (curl -OJ refuses
        # to overwrite, and a browser would add "(1)").
        stamp = f"{now:%Y%m%d_%H%M%S}_{task.id.hex[:6]}"
        return f"{self.handlers.get(task.type).title}_{stamp}.{task.format}"
