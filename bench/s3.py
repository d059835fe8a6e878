"""``make bench-s3``: the same exports kept in a local directory and in an S3 store (a SeaweedFS
started here), and downloads through the API against a direct GET of the same object.

Two stacks on one seeded database, one per storage, take turns (csv, then xlsx, ``--repeat``
times each, interleaved so that a busy moment of the machine hits both alike); the medians are
printed, with the workers' peak memory. Everything started or created is stopped or removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.databases import bench_database, server_url
from bench.exports import ExportBatch, export_batch
from bench.stack import DEFAULT_PARALLEL_MIN_ROWS, Stack, bench_redis_url, running_stack
from exporter.ops.logs import configure_logging
from exporter.ops.seaweedfs import SeaweedFS, create_bucket, running_seaweedfs, s3_client

log = logging.getLogger("bench")

BUCKET = "bench"
FORMATS = ("csv", "xlsx")
STORAGES = ("local", "s3")
DIRECT_CHUNK_BYTES = 1 << 20
BOUND_S = 1800.0


@dataclass
class Figures:
    """Seconds per export and per download, by (storage, format); the direct GETs' seconds."""

    export_s: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    download_s: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    direct_s: dict[str, list[float]] = field(default_factory=dict)
    file_bytes: dict[str, int] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)

    def add(self, storage: str, batch: ExportBatch) -> None:
        (export,) = batch.exports
        key = (storage, batch.file_format)
        self.export_s.setdefault(key, []).append(export.seconds)
        self.download_s.setdefault(key, []).append(export.download_s)
        self.file_bytes[batch.file_format] = export.file_bytes
        self.peak_rss[storage] = max(self.peak_rss.get(storage, 0), batch.worker_peak_rss_bytes)


async def _direct_get_s(server: SeaweedFS, prefix: str, file_format: str) -> float:
    """Seconds to read the newest ``file_format`` object under ``prefix`` from the store."""
    async with s3_client(server) as client:
        listing = await client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        newest = max(
            (item for item in listing.get("Contents", []) if item["Key"].endswith(file_format)),
            key=lambda item: item["LastModified"],
        )
        started = time.perf_counter()
        got = await client.get_object(Bucket=BUCKET, Key=newest["Key"])
        async for _ in got["Body"].iter_chunks(DIRECT_CHUNK_BYTES):
            pass
        return time.perf_counter() - started


@asynccontextmanager
async def _stacks(
    rows: int, run_dir: Path, server: SeaweedFS, session: aiohttp.ClientSession
) -> AsyncIterator[dict[str, Stack]]:
    async with AsyncExitStack() as resources:
        database = await resources.enter_async_context(
            bench_database(server_url(), rows, user_count=1, timeout_s=BOUND_S)
        )
        stacks: dict[str, Stack] = {}
        for storage in STORAGES:
            stack = await resources.enter_async_context(
                running_stack(
                    database,
                    bench_redis_url(),
                    run_dir / storage,
                    session,
                    encode_processes=os.cpu_count() or 1,
                    parallel_min_rows=DEFAULT_PARALLEL_MIN_ROWS,
                    extra_env=server.env() | {"EXPORTER_STORAGE_URL": f"s3://{BUCKET}/run"}
                    if storage == "s3"
                    else {},
                )
            )
            stacks[storage] = stack
        yield stacks


async def measure(rows: int, repeat: int, formats: tuple[str, ...], run_dir: Path) -> Figures:
    # `kill` and a closed terminal clean up like Ctrl-C: stacks, SeaweedFS and the database.
    main_task = asyncio.current_task()
    assert main_task is not None
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(stop_signal, main_task.cancel)
    figures = Figures()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=BOUND_S)
    with running_seaweedfs(
        run_dir / "seaweedfs", access_key="bench", secret_key=secrets.token_urlsafe(24)
    ) as server:
        await create_bucket(server, BUCKET)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            _stacks(rows, run_dir, server, session) as stacks,
        ):
            users = stacks["local"].database.users
            for round_number in range(1, repeat + 1):
                for file_format in formats:
                    for storage, stack in stacks.items():
                        batch = await export_batch(
                            stack, session, users, file_format, run_dir / "downloads"
                        )
                        figures.add(storage, batch)
                    direct_s = await _direct_get_s(server, "run/", file_format)
                    figures.direct_s.setdefault(file_format, []).append(direct_s)
                log.info("round %d of %d done", round_number, repeat)
    return figures


def report(figures: Figures, rows: int, formats: tuple[str, ...]) -> str:
    lines = [
        f"{rows:,} rows; medians of {len(figures.direct_s[formats[0]])} runs",
        "format | local s | s3 s | s3/local | API download MB/s | direct GET MB/s | API/direct",
    ]
    for file_format in formats:
        local = statistics.median(figures.export_s[("local", file_format)])
        s3 = statistics.median(figures.export_s[("s3", file_format)])
        megabytes = figures.file_bytes[file_format] / 1e6
        api_rate = megabytes / statistics.median(figures.download_s[("s3", file_format)])
        direct_rate = megabytes / statistics.median(figures.direct_s[file_format])
        lines.append(
            f"{file_format} | {local:.2f} | {s3:.2f} | {s3 / local:.2f} | {api_rate:.0f}"
            f" | {direct_rate:.0f} | {api_rate / direct_rate:.2f}"
        )
    rss = ", ".join(f"{name} {peak / 2**20:.0f} MB" for name, peak in figures.peak_rss.items())
    lines.append(f"worker peak RSS: {rss}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", choices=FORMATS, action="append", help="csv, xlsx (both)")
    options = parser.parse_args()
    configure_logging()
    run_dir = Path("var/bench-s3") / time.strftime("%Y%m%d-%H%M%S")
    formats = tuple(options.format or FORMATS)
    figures = asyncio.run(measure(options.rows, options.repeat, formats, run_dir))
    print(report(figures, options.rows, formats), flush=True)


if __name__ == "__main__":
    main()
