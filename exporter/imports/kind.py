"""Imports as a kind of task: what an import request is, and how one import task runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.auth.accounts import Account, require_permissions
from exporter.db import Pool
from exporter.imports.readers import ReadLimits
from exporter.imports.registry import ImportHandler, ImportRegistry
from exporter.imports.requests import ImportRequest, find_import_handler
from exporter.storage.base import Storage
from exporter.tasks.kinds import Attempt, TaskResult, TaskSpec
from exporter.tasks.models import Task, TaskFailure
from exporter.validation import validate


@dataclass(frozen=True)
class ImportSettings:
    """What running an import takes from the deployment's settings."""

    time_zone: str
    limits: ReadLimits


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
            fields.type, "", {"mode": fields.mode.value, "on_error": fields.on_error.value}
        )

    def timeout_s(self, task: Task) -> int | None:
        return None

    async def run(self, attempt: Attempt) -> TaskResult:
        raise NotImplementedError  # the engine lands in the next commit

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        return None
