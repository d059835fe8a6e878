"""The lifecycle runs any kind of task: a kind made here, knowing nothing of exports, is created,
claimed, run with progress, published, counted, listed apart and failed by the same code as
exports, on the real database and storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from exporter.auth.accounts import Account
from exporter.db import Pool, create_pool
from exporter.errors import IdempotencyConflict, TaskNotFound
from exporter.exports.kind import ExportKind, ExportSettings
from exporter.exports.registry import load_handlers
from exporter.storage.deployment import deployment_id
from exporter.storage.local import LocalStorage
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.kinds import Attempt, TaskKinds, TaskResult, TaskSpec
from exporter.tasks.models import Task, TaskFailure, TaskStatus
from exporter.tasks.repository import NewTask, Quotas, TaskRepository
from exporter.tasks.runner import Outcome, RunnerConfig, TaskRunner
from settings import Settings
from tests.conftest import account_id

QUOTAS = Quotas(max_active_per_user=10, max_kept_bytes_per_user=10**9, queue_full=False)


class Count:
    """A kind of work that counts to a number into a csv file, one row per number."""

    name = "count"
    noun = "count"

    def validate(self, account: Account, request: Mapping[str, Any]) -> TaskSpec:
        return TaskSpec("numbers", "csv", {"to": int(request["to"])})

    def timeout_s(self, task: Task) -> int | None:
        return None

    async def run(self, attempt: Attempt) -> TaskResult:
        to = int(attempt.task.params["to"])
        if to < 0:
            raise ArithmeticError("cannot count down")
        attempt.progress.total = to
        path = attempt.work_dir / "count.csv"
        with path.open("w") as file:
            for number in range(1, to + 1):
                file.write(f"{number}\n")
                attempt.progress.advance(1)
        await asyncio.sleep(0)
        return TaskResult(to, path, f"count_to_{to}.csv")

    def describe_failure(self, exc: BaseException) -> TaskFailure | None:
        return None


@dataclass(frozen=True)
class Lifecycle:
    tasks: TaskRepository
    runner: TaskRunner
    exports: ExportKind
    count: Count
    owner: Account


@pytest.fixture
async def lifecycle(settings: Settings, db: asyncpg.Connection[Any]) -> AsyncIterator[Lifecycle]:
    pool: Pool = await create_pool(settings.database_url)
    try:
        deployment = await deployment_id(pool)
        storage = LocalStorage(settings.storage_dir, deployment)
        exports = ExportKind(load_handlers(), pool, ExportSettings("UTC", 1000))
        count = Count()
        config = RunnerConfig(
            worker_id="kinds-test", lease_s=30, max_attempts=1, default_timeout_s=30
        )
        runner = TaskRunner(
            TaskRepository(pool),
            pool,
            storage,
            ScratchSpace(settings.scratch_dir, deployment),
            TaskKinds(exports, count),
            config,
        )
        owner = Account(await account_id(db, "admin"), "admin", "active", frozenset({"*"}))
        yield Lifecycle(TaskRepository(pool), runner, exports, count, owner)
    finally:
        await pool.close()


async def _create(lifecycle: Lifecycle, to: int) -> Task:
    spec = lifecycle.count.validate(lifecycle.owner, {"to": to})
    creation = await lifecycle.tasks.create(
        NewTask(lifecycle.owner.id, spec), lifecycle.count, QUOTAS
    )
    assert creation.created
    return creation.task


async def test_a_second_kind_runs_through_the_lifecycle_to_a_published_file(
    lifecycle: Lifecycle, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    task = await _create(lifecycle, 1000)

    assert await lifecycle.runner.run(task.id) is Outcome.COMPLETED

    done = await lifecycle.tasks.get_own(task.id, lifecycle.owner.id, lifecycle.count)
    assert (done.kind, done.status, done.row_count, done.rows_done) == (
        "count",
        TaskStatus.COMPLETED,
        1000,
        1000,
    )
    assert done.file_name == "count_to_1000.csv" and done.file_key is not None
    stored = settings.storage_dir / done.file_key
    assert stored.read_text().splitlines() == [str(n) for n in range(1, 1001)]
    assert done.file_size == stored.stat().st_size
    history = [event.status for event in await lifecycle.tasks.history(task.id)]
    assert history == [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.COMPLETED]
    counts = await db.fetch(
        "SELECT kind, status, n, file_bytes FROM task_counts WHERE owner_id = $1 AND n > 0",
        lifecycle.owner.id,
    )
    assert [tuple(row) for row in counts] == [("count", "completed", 1, done.file_size)]


async def test_each_kind_sees_only_its_own_tasks(lifecycle: Lifecycle) -> None:
    task = await _create(lifecycle, 3)

    with pytest.raises(TaskNotFound, match="export task not found"):
        await lifecycle.tasks.get_own(task.id, lifecycle.owner.id, lifecycle.exports)
    with pytest.raises(TaskNotFound, match="export task not found"):
        await lifecycle.tasks.delete_own(task.id, lifecycle.owner.id, lifecycle.exports)
    exports_page = await lifecycle.tasks.page_json(
        lifecycle.owner.id,
        lifecycle.exports,
        base_url="/api/export-tasks/",
        status=None,
        type_name=None,
        page=1,
        page_size=20,
    )
    count_page = await lifecycle.tasks.page_json(
        lifecycle.owner.id,
        lifecycle.count,
        base_url="/api/count-tasks/",
        status=None,
        type_name=None,
        page=1,
        page_size=20,
    )
    assert exports_page is not None and count_page is not None
    assert '"total" : 0' in exports_page
    assert str(task.id) in count_page and '"total" : 1' in count_page
    cancelled = await lifecycle.tasks.request_cancel(task.id, lifecycle.owner.id, lifecycle.count)
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED


async def test_a_failure_of_another_kind_is_described_in_its_own_words(
    lifecycle: Lifecycle,
) -> None:
    task = await _create(lifecycle, -1)

    assert await lifecycle.runner.run(task.id) is Outcome.FAILED

    failed = await lifecycle.tasks.get_own(task.id, lifecycle.owner.id, lifecycle.count)
    assert failed.status is TaskStatus.FAILED
    assert failed.error_code == "count_failed"
    assert failed.error == "count failed: ArithmeticError: cannot count down"
    assert failed.file_key is None


async def test_an_idempotency_key_stands_for_one_task_of_one_kind(lifecycle: Lifecycle) -> None:
    owner = lifecycle.owner
    export = lifecycle.exports.check(owner, "role", "csv", {})
    count = TaskSpec(export.type, export.format, export.params)  # the same request, another kind
    first = await lifecycle.tasks.create(
        NewTask(owner.id, export, "key-1"), lifecycle.exports, QUOTAS
    )

    with pytest.raises(IdempotencyConflict):
        await lifecycle.tasks.create(NewTask(owner.id, count, "key-1"), lifecycle.count, QUOTAS)
    again = await lifecycle.tasks.create(
        NewTask(owner.id, export, "key-1"), lifecycle.exports, QUOTAS
    )
    assert (first.created, again.created, again.task.id) == (True, False, first.task.id)
