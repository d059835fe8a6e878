"""The seam between the lifecycle and the work: a kind of task says how to run one attempt.

The lifecycle (create, claim, lease, heartbeat, deadline, cancel, sweep, retention, history,
quotas, the event stream) is the same for every kind; a kind (``export`` today) brings what a
task of it does. It registers with :class:`TaskKinds`, which the API and the worker receive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from exporter.auth.accounts import Account
from exporter.storage.base import Storage, StoredFile
from exporter.tasks.models import Task, TaskFailure
from exporter.tasks.publishing import Publication, publishing


class Progress:
    """Rows done out of the total, kept in memory; the task's heartbeat saves it."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def advance(self, rows: int) -> None:
        # Never past the total: a writer counting lines may overcount rows; the total is exact.
        # Without one (an upload being read), the rows done are all that is known.
        done = self.done + rows
        self.done = done if self.total is None else min(done, self.total)


@dataclass(frozen=True)
class Upload:
    """A file a task is given, already in storage: its key, the name it was uploaded as, its
    size in bytes."""

    key: str
    name: str
    size: int


@dataclass(frozen=True)
class TaskSpec:
    """A checked request: what the new task will hold."""

    type: str
    format: str
    params: dict[str, Any]
    upload: Upload | None = None
    # Told of the task's end by a signed POST; checked for its shape (exporter.tasks.notify_url).
    notify_url: str | None = None


def published_name(task: Task, file: Path) -> str:
    """The name a task's file is kept under in storage: ``<task id>.<suffix>``."""
    return f"{task.id}{file.suffix}"


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task: the task as claimed, a scratch directory of its own, its
    progress, and the storage its file is published to."""

    task: Task
    work_dir: Path
    progress: Progress
    storage: Storage

    def publishing(self, file: Path) -> AbstractAsyncContextManager[Publication]:
        """Publish ``file`` while the block writes it (only at its end): the kind returns
        ``TaskResult(published=publication.stored)``."""
        return publishing(self.storage, file, published_name(self.task, file))


@dataclass(frozen=True)
class TaskResult:
    """What a finished attempt hands to the lifecycle: rows handled and, if any, a file to
    publish under ``file_name`` (the name its owner downloads it as), or one the kind
    published itself (``published``), the ``outcome`` the task then shows, and a ``note`` on
    how the work was done that the task's history keeps with its completion."""

    rows: int
    file: Path | None = None
    file_name: str | None = None
    published: StoredFile | None = None
    outcome: dict[str, Any] | None = None
    note: str | None = None


class FailedWithResult(Exception):
    """The attempt ended in a failure that still has a result to keep (an import refused for
    its rejected rows keeps its report and counts)."""

    def __init__(self, failure: TaskFailure, result: TaskResult) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.result = result


class TaskKind(Protocol):
    """A kind of work. ``name`` is stored in each task's ``kind``; ``noun`` names one task of
    it in messages ("the export is already running")."""

    @property
    def name(self) -> str: ...

    @property
    def noun(self) -> str: ...

    def validate(self, account: Account, request: Mapping[str, Any]) -> TaskSpec:
        """The task ``account`` asks for with ``request`` (the fields of its create request),
        checked: InvalidParams naming a bad field, Forbidden for a missing permission."""

    def timeout_s(self, task: Task) -> int | None:
        """This task's deadline, or None for the deployment's default."""

    async def run(self, attempt: Attempt) -> TaskResult:
        """Do the work; cancelled when the task is cancelled, lost or past its deadline."""

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        """Why the attempt failed, when the kind knows better than the lifecycle; else None."""


class TaskKinds:
    """The kinds a deployment runs, by name; registering a taken name raises."""

    def __init__(self, *kinds: TaskKind) -> None:
        self._kinds: dict[str, TaskKind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"a task kind named {kind.name!r} is already registered")
            self._kinds[kind.name] = kind

    def get(self, name: str) -> TaskKind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[TaskKind]:
        return iter(self._kinds.values())
