"""Worker processes for fault tests: real `exporter worker` commands, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from settings import Settings
from tests.failing_handlers import HANDLER_MODULES, SUICIDE_ALLOWED_ENV
from tests.support import wait_until

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a process load exactly these settings."""
    values = settings.model_dump() | overrides
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value = values[name]
        if value is None:  # unset stays unset, not the string "None"
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, tuple):  # lists are comma-separated in the environment
            value = ",".join(str(item) for item in value)
        env[field.alias or name.upper()] = str(value)
    return env


def start_exporter(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``exporter COMMAND`` in this interpreter, its output in ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-c", "from exporter.ops.cli import main; main()", command],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def api_server(env: dict[str, str], log: Path) -> AsyncIterator[str]:
    """``exporter serve`` with ``env`` (its EXPORTER_PORT included), ready; yields its URL and
    kills it and every process it started at the end."""
    process = start_exporter("serve", env, log)
    parent = psutil.Process(process.pid)
    url = f"http://127.0.0.1:{env['EXPORTER_PORT']}"
    try:
        async with aiohttp.ClientSession(url) as client:
            await wait_for_api(client)
        yield url
    finally:
        family = [parent, *parent.children(recursive=True)] if parent.is_running() else []
        for member in family:
            member.kill()
        process.wait()


async def wait_for_api(client: aiohttp.ClientSession) -> None:
    """Until the `exporter serve` that ``client`` talks to is ready (PostgreSQL and Redis too)."""

    async def ready() -> bool:
        try:
            async with client.get("/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(ready, timeout_s=60, what="the API process")


def exporter_command(
    *args: str, env: dict[str, str], cwd: Path = ROOT, unset: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """``exporter ARGS`` in this interpreter with ``env`` added and the ``unset`` names removed."""
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    return subprocess.Popen(
        [sys.executable, "-c", "from exporter.ops.cli import main; main()", *args],
        cwd=cwd,
        env={**inherited, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class WorkerProcesses:
    """Starts worker processes and makes sure every one of them is gone at the end."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._settings = settings
        self._log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, **overrides: Any) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **settings_env(self._settings, **overrides),
            "EXPORTER_HANDLER_MODULES": HANDLER_MODULES,
            SUICIDE_ALLOWED_ENV: "1",
        }
        process = start_exporter("worker", env, self._log_dir / f"worker-{len(self.started)}.log")
        self.started.append(process)
        return process

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.started if p.poll() is None]

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self._log_dir.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for process in self.alive():
            process.send_signal(signal.SIGKILL)
        for process in self.started:
            process.wait(timeout=30)

    def __iter__(self) -> Iterator[subprocess.Popen[bytes]]:
        return iter(self.started)


async def task_row(db: asyncpg.Connection[Any], task_id: str) -> asyncpg.Record:
    record = await db.fetchrow(
        "SELECT status, worker_id, rows_done, attempts FROM tasks WHERE id = $1",
        uuid.UUID(task_id),
    )
    assert record is not None
    return record


def pid_of(worker_id: str) -> int:
    """The process id in a worker's id (``host:pid:…``)."""
    return int(worker_id.split(":")[1])


async def claimed(db: asyncpg.Connection[Any], task_id: str, min_rows: int = 0) -> asyncpg.Record:
    """The task's row once a worker runs it and has saved ``min_rows`` rows of progress."""

    async def probe() -> asyncpg.Record | None:
        row = await task_row(db, task_id)
        return row if row["status"] == "running" and row["rows_done"] >= min_rows else None

    return await wait_until(probe, timeout_s=60, what=f"task {task_id} to run")
