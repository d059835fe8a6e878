"""Progress only grows while a task runs: neither a half-written progress file nor a late or
stale report makes it go back."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from exporter.db import Pool, create_pool
from exporter.exports.formats.xlsx_parts import read_rows_done, save_rows_done
from exporter.tasks.repository import TaskRepository
from settings import Settings
from tests.support import TERMINAL, ApiUser
from tests.workers import running_worker

WORKER_ID = "test-worker"
LEASE_S = 30.0
REWRITES = 2_000


def count_up(path: Path, until: int) -> None:
    """An encoding process's share of the work: its progress file rewritten batch by batch."""
    for rows in range(1, until + 1):
        save_rows_done(path, rows)


def test_a_progress_file_rewritten_by_another_process_never_reads_lower(tmp_path: Path) -> None:
    path = tmp_path / "part-0.rows"
    writer = multiprocessing.get_context("spawn").Process(target=count_up, args=(path, REWRITES))
    writer.start()
    seen: list[int] = []
    while writer.is_alive() or not seen:
        seen.append(read_rows_done(path))
    writer.join()

    assert writer.exitcode == 0
    dips = [(before, after) for before, after in itertools.pairwise(seen) if after < before]
    assert dips == []
    assert len(set(seen)) > 100, "the reads should overlap the rewrites"
    assert read_rows_done(path) == REWRITES


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


async def rows_done(db: asyncpg.Connection[Any], task_id: uuid.UUID) -> int:
    return int(await db.fetchval("SELECT rows_done FROM tasks WHERE id = $1", task_id))


async def test_the_database_keeps_the_highest_progress_of_the_running_attempt(
    admin: ApiUser, pool: Pool, db: asyncpg.Connection[Any]
) -> None:
    # No worker runs in this test: the task waits, pending, to be claimed by hand.
    task_id = uuid.UUID((await admin.create("role", "xlsx"))["id"])
    tasks = TaskRepository(pool)
    first = await tasks.claim(task_id, WORKER_ID, LEASE_S)
    assert first is not None

    await tasks.renew(task_id, WORKER_ID, first.attempts, LEASE_S, 165_000, 200_000)
    late = await tasks.renew(task_id, WORKER_ID, first.attempts, LEASE_S, 85_000, 200_000)
    assert late is False  # still this attempt's, not cancelled
    assert await rows_done(db, task_id) == 165_000

    await tasks.release(task_id, WORKER_ID, counts_as_attempt=True, note="lost on purpose")
    second = await tasks.claim(task_id, WORKER_ID, LEASE_S)
    assert second is not None and second.attempts == first.attempts + 1
    assert second.rows_done == 0  # a new attempt counts from nothing

    stale = await tasks.renew(task_id, WORKER_ID, first.attempts, LEASE_S, 190_000, 200_000)
    await tasks.renew(task_id, WORKER_ID, second.attempts, LEASE_S, 5_000, 200_000)
    assert stale is None  # the earlier attempt's report is refused
    assert await rows_done(db, task_id) == 5_000


async def test_progress_seen_through_the_api_never_goes_back_in_a_parallel_export(
    admin: ApiUser, settings: Settings
) -> None:
    parallel = settings.model_copy(update={"encode_processes": 2, "parallel_min_rows": 1_000})
    async with running_worker(parallel):
        task_id = (await admin.create("test_slow", "xlsx", rows=12_000))["id"]
        seen: list[int] = []
        while (task := await admin.task(task_id))["status"] not in TERMINAL:
            seen.append(task["rows_done"])
            await asyncio.sleep(0.05)  # the pace of tests.support.wait_until

    assert task["status"] == "completed"
    assert seen == sorted(seen)
    assert len(set(seen)) > 2, "the export should have been watched while it ran"
