"""The real API and worker, as separate processes on loopback, against one bench database."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from redis.asyncio import Redis

from bench.databases import BENCH_SECRET, BenchDatabase
from bench.trivial_app import PING_PATH
from exporter.ops.worker import worker_health_check_key
from settings import Settings

HOST = "127.0.0.1"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# Keeps the bench's keys out of the way of development and tests (database 15).
BENCH_REDIS_DB = 14
SCAN_COUNT = 1000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
QUEUE_PREFIX = "exporter-bench:"
TIME_ZONE = "Asia/Shanghai"

MAX_PENDING = 1_000_000
MAX_UPLOAD_BYTES = 2 * 1024**3
# The worker's own default: xlsx exports of at least this many rows are encoded in parallel.
DEFAULT_PARALLEL_MIN_ROWS: int = Settings.model_fields["parallel_min_rows"].default
# The API and the trivial endpoint it is compared with: one process per core each.
API_PROCESSES = os.cpu_count() or 1
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1

# The project's CLI in this interpreter (there is no `python -m exporter`).
EXPORTER_COMMAND = [sys.executable, "-c", "from exporter.ops.cli import main; main()"]


class StackFailed(Exception):
    """The API or the worker did not start, or stopped on its own."""


def bench_redis_url() -> str:
    """REDIS_URL's server (else the local one), database BENCH_REDIS_DB."""
    given = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    return urlunsplit(urlsplit(given)._replace(path=f"/{BENCH_REDIS_DB}"))


async def forget_jobs(redis_url: str, queue_name: str, task_ids: Collection[str]) -> int:
    """Delete a bench queue and the arq keys of jobs for the given tasks, nothing else.

    Others may use the same Redis database: an arq key is the bench's only if the task id in
    its job id is one of the bench's tasks. Returns how many keys were deleted.
    """
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{queue_name}*", count=SCAN_COUNT)]
        async for key in redis.scan_iter(match="arq:*", count=SCAN_COUNT):
            task_id = _UUID.search(key.decode(errors="replace"))
            if task_id is not None and task_id[0] in task_ids:
                keys.append(key)
        for start in range(0, len(keys), SCAN_COUNT):
            await redis.delete(*keys[start : start + SCAN_COUNT])
        return len(keys)
    finally:
        await redis.aclose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Service:
    """One child process in a process group of its own, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Ctrl-C in the terminal reaches the bench only; the bench stops its children.
                process_group=0,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise StackFailed(f"{self.name} exited with {self.process.returncode}; see {self.log}")

    async def wait_answering(self, session: aiohttp.ClientSession, url: str) -> None:
        """Until ``url`` answers 200; fails at once if the process exits."""
        while True:
            self.check_running()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(POLL_INTERVAL_S)

    async def stop(self) -> None:
        """SIGTERM (both shut down cleanly on it), SIGKILL to the group if that is not enough."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything it spawned and left behind
        except ProcessLookupError:
            pass
        await asyncio.to_thread(self.process.wait)


@dataclass(frozen=True)
class Worker:
    service: Service
    encode_processes: int  # its EXPORTER_ENCODE_PROCESSES; 0 is the single-process path
    # Its EXPORTER_XLSX_ROWS_IN_DATABASE: who makes the rows of a split xlsx export, PostgreSQL
    # or xlsxwriter in the encoding processes.
    rows_in_database: bool
    loop_lag_log: Path  # where its loop-lag probe writes


class Stack:
    """``exporter serve`` and ``exporter worker`` for one database, on a queue of their own.

    The worker can be restarted with another number of encoding processes, or the other maker
    of split xlsx rows, between exports.
    """

    def __init__(
        self,
        database: BenchDatabase,
        redis_url: str,
        run_dir: Path,
        parallel_min_rows: int,
        storage_env: Mapping[str, str] | None = None,
    ) -> None:
        self.database = database
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.queue_name = f"{QUEUE_PREFIX}{uuid.uuid4().hex}"
        self.redis_url = redis_url
        self.env = dict(
            os.environ,
            DATABASE_URL=database.url,
            REDIS_URL=redis_url,
            EXPORTER_SECRET=BENCH_SECRET,
            EXPORTER_STORAGE_URL=(run_dir / f"storage-{database.rows}").resolve().as_uri(),
            EXPORTER_HOST=HOST,
            EXPORTER_PORT=str(self.port),
            EXPORTER_QUEUE_NAME=self.queue_name,
            EXPORTER_TIME_ZONE=TIME_ZONE,
            EXPORTER_API_PROCESSES=str(API_PROCESSES),
            # The POST load test queues tasks with the worker stopped; the global cap on pending
            # tasks would soon refuse them all, and refusing is not what it measures.
            EXPORTER_MAX_PENDING=str(MAX_PENDING),
            # Set here, not inherited, so the rows' labels say which path the exports took.
            EXPORTER_PARALLEL_MIN_ROWS=str(parallel_min_rows),
            # The import bench uploads its whole data set in one file (a million rows of csv
            # are about 100 MB); the default cap is for what people send.
            EXPORTER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
            PYTHONUNBUFFERED="1",
            # A process that crashes (a C extension's abort) leaves every thread's Python stack
            # in its log.
            PYTHONFAULTHANDLER="1",
        )
        # Another storage than the run's directory (an S3 bucket): its URL and credentials.
        self.env.update(storage_env or {})
        # Logs are named for the data set, and the storage when it is not the run's directory.
        self._label = f"{database.rows}-s3" if storage_env else str(database.rows)
        self._logs = run_dir / "logs"
        self.api: Service | None = None
        self.worker: Worker | None = None
        self._worker_starts = 0

    async def start(self, session: aiohttp.ClientSession, encode_processes: int) -> None:
        self._logs.mkdir(parents=True, exist_ok=True)
        self.api = Service(
            "API", [*EXPORTER_COMMAND, "serve"], self.env, self._logs / f"api-{self._label}.log"
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            await self.api.wait_answering(session, f"{self.base_url}/readyz")
        await self.start_worker(encode_processes)

    async def start_worker(self, encode_processes: int, *, rows_in_database: bool = True) -> None:
        """A worker with ``EXPORTER_ENCODE_PROCESSES=encode_processes`` and
        ``EXPORTER_XLSX_ROWS_IN_DATABASE=rows_in_database``, ready for jobs."""
        assert self.worker is None, "one worker at a time: the measurements are per worker"
        self._worker_starts += 1
        maker = "" if rows_in_database else "-xlsxwriter"
        name = f"{self._label}-{encode_processes}p{maker}-{self._worker_starts}"
        # Its own file: a killed worker's half-written last line cannot run into another's.
        loop_lag_log = self._logs / f"loop-lag-{name}.jsonl"
        worker_name = f"bench-{name}"
        env = dict(
            self.env,
            EXPORTER_ENCODE_PROCESSES=str(encode_processes),
            EXPORTER_XLSX_ROWS_IN_DATABASE=str(rows_in_database).lower(),
            EXPORTER_LOOP_LAG_LOG=str(loop_lag_log),
            EXPORTER_WORKER_NAME=worker_name,
        )
        redis = Redis.from_url(self.redis_url)
        try:
            health_check = worker_health_check_key(self.queue_name, worker_name)
            service = Service(
                "worker", [*EXPORTER_COMMAND, "worker"], env, self._logs / f"worker-{name}.log"
            )
            self.worker = Worker(service, encode_processes, rows_in_database, loop_lag_log)
            # arq writes its health-check key once it has started and polls the queue.
            async with asyncio.timeout(START_TIMEOUT_S):
                while not await redis.exists(health_check):
                    service.check_running()
                    await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            await redis.aclose()

    async def use_worker(self, encode_processes: int, *, rows_in_database: bool = True) -> None:
        """The worker restarted with these settings unless it already runs with them."""
        wanted = (encode_processes, rows_in_database)
        worker = self.worker
        if worker is None or (worker.encode_processes, worker.rows_in_database) != wanted:
            await self.stop_worker()
            await self.start_worker(encode_processes, rows_in_database=rows_in_database)

    async def restart_worker(self) -> None:
        """The worker stopped and started again as it was: a process with fresh memory."""
        assert self.worker is not None, "no worker to restart"
        worker = self.worker
        await self.stop_worker()
        await self.start_worker(worker.encode_processes, rows_in_database=worker.rows_in_database)

    def check_running(self) -> None:
        if self.api is not None:
            self.api.check_running()
        if self.worker is not None:
            self.worker.service.check_running()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.service.stop()
            self.worker = None

    async def stop(self) -> None:
        await self.stop_worker()
        if self.api is not None:
            await self.api.stop()
            self.api = None


@asynccontextmanager
async def running_stack(
    database: BenchDatabase,
    redis_url: str,
    run_dir: Path,
    session: aiohttp.ClientSession,
    *,
    encode_processes: int,
    parallel_min_rows: int,
    storage_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """API and worker up and ready; on exit, even on failure or Ctrl-C, both are stopped and
    the stack's keys are deleted from Redis."""
    stack = Stack(database, redis_url, run_dir, parallel_min_rows, storage_env)
    try:
        await stack.start(session, encode_processes)
        yield stack
    finally:
        await stack.stop()
        await forget_jobs(redis_url, stack.queue_name, await database.task_ids())


@asynccontextmanager
async def running_trivial_app(run_dir: Path, session: aiohttp.ClientSession) -> AsyncIterator[str]:
    """The URL of ``bench.trivial_app`` while it runs; stopped on exit."""
    port = free_port()
    app = Service(
        "trivial app",
        [sys.executable, "-m", "bench.trivial_app", HOST, str(port), str(API_PROCESSES)],
        dict(os.environ),
        run_dir / "logs" / "trivial-app.log",
    )
    try:
        url = f"http://{HOST}:{port}{PING_PATH}"
        async with asyncio.timeout(START_TIMEOUT_S):
            await app.wait_answering(session, url)
        yield url
    finally:
        await app.stop()
