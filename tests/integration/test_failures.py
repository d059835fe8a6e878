"""Exports that go wrong end failed, with a readable message and no file left behind."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from exporter.tasks.queue import TaskQueue
from settings import Settings
from tests.support import ApiUser, files_in

pytestmark = pytest.mark.usefixtures("worker")


async def test_a_handler_that_raises_fails_the_task_with_its_message_and_no_file(
    admin: ApiUser, settings: Settings
) -> None:
    task = await admin.finished((await admin.create("test_raises", "xlsx"))["id"])

    assert task["status"] == "failed"
    assert task["error"] == "export failed: RuntimeError: the handler exploded on purpose"
    assert task["finished_at"] is not None
    assert files_in(settings.storage_dir) == []
    status, _, _ = await admin.download(task["id"])
    assert status == 409


@pytest.mark.parametrize("file_format", ["xlsx", "csv"])
async def test_a_query_failing_midway_leaves_no_partial_file(
    admin: ApiUser, settings: Settings, file_format: str
) -> None:
    task = await admin.finished((await admin.create("test_fails_midway", file_format))["id"])

    assert task["status"] == "failed"
    assert task["error"] == "database error: division by zero"
    assert files_in(settings.storage_dir) == []


async def test_the_worker_goes_on_to_the_next_task_after_a_failure(admin: ApiUser) -> None:
    failing = await admin.create("test_raises", "csv")
    fine = await admin.create("role", "csv")

    assert (await admin.finished(failing["id"]))["status"] == "failed"
    assert (await admin.finished(fine["id"]))["status"] == "completed"


async def test_a_duplicate_delivery_of_a_job_runs_the_task_once(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any], arq_redis: ArqRedis
) -> None:
    task = await admin.create("account", "csv")
    # Another delivery of the same task under a job id of its own, as a lost-job re-enqueue makes.
    await TaskQueue(arq_redis, settings.queue_name).enqueue(uuid.UUID(task["id"]), 99)

    finished = await admin.finished(task["id"])
    second = await admin.create("role", "csv")  # queued after the duplicate: drains it
    await admin.finished(second["id"])

    assert finished["status"] == "completed"
    assert finished["attempts"] == 1
    assert await db.fetchval("SELECT attempts FROM tasks WHERE id = $1", finished["id"]) == 1


async def test_a_job_for_a_task_that_no_longer_exists_is_a_no_op(
    admin: ApiUser, settings: Settings, arq_redis: ArqRedis
) -> None:
    await TaskQueue(arq_redis, settings.queue_name).enqueue(uuid.uuid4(), 1)

    after = await admin.finished((await admin.create("role", "csv"))["id"])

    assert after["status"] == "completed"
