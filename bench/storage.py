"""Exports stored in an S3 bucket against the same exports stored in a local directory.

One database; two stacks (API and worker) on it, one storing in the run's directory and one in
a bucket of a SeaweedFS started under the run directory. Each format is exported by both,
alternately, ``REPEATS`` times, and the medians are compared. Each file the S3 stack stored is
then downloaded through its API and straight from the store (a GET of the object with the S3
client the service uses, already open, as the API's is), both written to disk: the API's rate
against the store's own. The S3 worker's memory is sampled throughout. Each file is deleted as
soon as it is measured.
"""

from __future__ import annotations

import secrets
import shutil
import statistics
import time
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg
import psutil

from bench.databases import BenchDatabase
from bench.exports import DOWNLOAD_CHUNK_BYTES, ApiUser, ExportFailed, timed_export
from bench.memory import PeakRss
from bench.stack import Stack, running_stack
from exporter.ops.seaweedfs import create_bucket, running_seaweedfs, s3_client

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

REPEATS = 3
FORMATS = ("csv", "xlsx")
BUCKET = "exporter-bench"
ACCESS_KEY = "exporter-bench"
WEED_PROCESS = "weed"


@dataclass(frozen=True)
class StorageFormat:
    """One format exported to both storages; the times in seconds, one per repeat."""

    file_format: str
    file_bytes: int
    local_s: tuple[float, ...]
    s3_s: tuple[float, ...]
    api_download_s: tuple[float, ...]
    direct_download_s: tuple[float, ...]
    # CPU seconds the store itself spent during each S3 export: on a machine it shares with
    # PostgreSQL and the worker, what it adds to the export's wall time.
    store_cpu_s: tuple[float, ...]

    @property
    def export_ratio(self) -> float:
        """The S3 export's median time over the local one's."""
        return statistics.median(self.s3_s) / statistics.median(self.local_s)

    @property
    def api_rate(self) -> float:
        """Bytes per second through the API (median time)."""
        return self.file_bytes / statistics.median(self.api_download_s)

    @property
    def direct_rate(self) -> float:
        """Bytes per second of a GET of the object from the store (median time)."""
        return self.file_bytes / statistics.median(self.direct_download_s)


@dataclass(frozen=True)
class StorageComparison:
    rows: int
    formats: tuple[StorageFormat, ...]
    s3_worker_peak_rss_bytes: int
    s3_child_peak_rss_bytes: int  # the largest process below the worker (encoding)


@dataclass
class _Timings:
    local_s: list[float] = field(default_factory=list)
    s3_s: list[float] = field(default_factory=list)
    api_download_s: list[float] = field(default_factory=list)
    direct_download_s: list[float] = field(default_factory=list)
    store_cpu_s: list[float] = field(default_factory=list)
    file_bytes: int = 0

    def result(self, file_format: str) -> StorageFormat:
        return StorageFormat(
            file_format,
            self.file_bytes,
            tuple(self.local_s),
            tuple(self.s3_s),
            tuple(self.api_download_s),
            tuple(self.direct_download_s),
            tuple(self.store_cpu_s),
        )


def _store_process() -> psutil.Process:
    """The SeaweedFS server this process started."""
    for child in psutil.Process().children(recursive=True):
        if child.name() == WEED_PROCESS:
            return child
    raise RuntimeError("no SeaweedFS process found below the bench")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _object_key(database: BenchDatabase, task_id: str) -> str:
    conn = await asyncpg.connect(database.url)
    try:
        key: str = await conn.fetchval(
            "SELECT file_key FROM tasks WHERE id = $1", uuid.UUID(task_id)
        )
    finally:
        await conn.close()
    return key


async def _get_object(client: S3Client, key: str, dest: Path) -> int:
    """The object streamed to ``dest`` as the API streams it; its size in bytes."""
    size = 0
    answer = await client.get_object(Bucket=BUCKET, Key=key)
    async with answer["Body"] as body:
        with dest.open("wb") as out:
            while chunk := await body.read(DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                size += len(chunk)
    return size


async def _downloads(
    api: ApiUser,
    client: S3Client,
    task: dict[str, Any],
    object_key: str,
    dest: Path,
    timings: _Timings,
) -> None:
    """The file through the API, then straight from the store, each timed; both must be the
    size the task says."""
    try:
        started = time.perf_counter()
        through_api = await api.download(task, dest)
        timings.api_download_s.append(time.perf_counter() - started)
        dest.unlink()
        started = time.perf_counter()
        direct = await _get_object(client, object_key, dest)
        timings.direct_download_s.append(time.perf_counter() - started)
    finally:
        dest.unlink(missing_ok=True)
    if not through_api == direct == task["file_size"]:
        raise ExportFailed(
            f"task {task['id']}: {through_api} bytes through the API, {direct} from the "
            f"store, {task['file_size']} in the task"
        )
    timings.file_bytes = direct


async def _one_round(
    database: BenchDatabase,
    local_api: ApiUser,
    s3_api: ApiUser,
    client: S3Client,
    prefix: str,
    work_dir: Path,
    timings: dict[str, _Timings],
    store: psutil.Process,
) -> None:
    """Each format exported locally, then to S3 and downloaded both ways; all deleted."""
    for file_format, timing in timings.items():
        task, seconds = await timed_export(local_api, file_format, database.rows)
        timing.local_s.append(seconds)
        await local_api.delete(task["id"])
        store_cpu_s = _cpu_s(store)
        task, seconds = await timed_export(s3_api, file_format, database.rows)
        timing.store_cpu_s.append(_cpu_s(store) - store_cpu_s)
        timing.s3_s.append(seconds)
        key = f"{prefix}/{await _object_key(database, task['id'])}"
        dest = work_dir / f"{task['id']}.{file_format}"
        await _downloads(s3_api, client, task, key, dest, timing)
        await s3_api.delete(task["id"])


async def compare_storages(
    database: BenchDatabase,
    redis_url: str,
    run_dir: Path,
    session: aiohttp.ClientSession,
    *,
    encode_processes: int,
    parallel_min_rows: int,
) -> StorageComparison:
    """Exports of ``database``'s rows to a local directory and to S3, alternately; see the
    module's docstring."""
    work_dir = run_dir / "work" / "storage"
    work_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    store_dir = run_dir / "seaweedfs"
    user = database.users[0]
    timings = {file_format: _Timings() for file_format in FORMATS}

    def stack(storage_env: dict[str, str] | None = None) -> AbstractAsyncContextManager[Stack]:
        return running_stack(
            database,
            redis_url,
            run_dir,
            session,
            encode_processes=encode_processes,
            parallel_min_rows=parallel_min_rows,
            storage_env=storage_env,
        )

    try:
        with running_seaweedfs(
            store_dir, access_key=ACCESS_KEY, secret_key=secrets.token_hex(16)
        ) as server:
            await create_bucket(server, BUCKET)
            store = _store_process()
            s3_env = server.env() | {"EXPORTER_STORAGE_URL": f"s3://{BUCKET}/{prefix}"}
            async with (
                stack() as local,
                stack(s3_env) as s3,
                s3_client(server) as client,
            ):
                assert s3.worker is not None, "the S3 stack runs its worker"
                local_api = ApiUser(session, local.base_url, user)
                s3_api = ApiUser(session, s3.base_url, user)
                with PeakRss(s3.worker.service.pid) as rss:
                    for _ in range(REPEATS):
                        await _one_round(
                            database, local_api, s3_api, client, prefix, work_dir, timings, store
                        )
                local.check_running()
                s3.check_running()
    finally:
        # The store's volumes keep deleted files' bytes until compacted: gigabytes at full size.
        shutil.rmtree(store_dir, ignore_errors=True)
    return StorageComparison(
        database.rows,
        tuple(timing.result(file_format) for file_format, timing in timings.items()),
        rss.peak_bytes,
        rss.peak_child_bytes,
    )
