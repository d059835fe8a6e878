"""Log lines of real processes: JSON lines carrying the request's id from the API into the
worker's lines for its task, X-Request-ID on every answer, and each line printed once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.auth.tokens import issue_token
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.failing_handlers import HANDLER_MODULES
from tests.processes import (
    ROOT,
    WorkerProcesses,
    api_server,
    exporter_command,
    free_port,
    settings_env,
)
from tests.support import ApiUser, wait_until

REQUEST_ID = "trace-4f1c.7:a"
JSON_KEYS = {"time", "level", "logger", "message"}
GENERATED = re.compile(r"[0-9a-f]{32}")


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of ``log``, each of which must be one JSON object with the four keys."""
    lines = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict) and JSON_KEYS <= entry.keys(), line
        lines.append(entry)
    return lines


async def test_a_request_id_follows_its_task_from_the_api_into_the_worker_s_json_lines(
    settings: Settings,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
    tmp_path: Path,
) -> None:
    env = {**os.environ, **settings_env(settings, port=free_port(), log_format="json")}
    workers.start(log_format="json")
    admin_id = await account_id(db, "admin")
    headers = {
        "Authorization": f"Bearer {issue_token(SECRET, admin_id)}",
        "X-Request-ID": REQUEST_ID,
    }
    async with api_server(env, tmp_path / "serve.log") as url, aiohttp.ClientSession(url) as http:
        async with http.post(
            "/api/export-tasks", json={"type": "account", "format": "csv"}, headers=headers
        ) as response:
            assert response.status == 202
            answered_id = response.headers["X-Request-ID"]
            task_id = (await response.json())["id"]

        async def completed_line() -> list[dict[str, Any]] | None:
            lines = [line for log in workers_logs(tmp_path) for line in json_lines(log)]
            ours = [line for line in lines if line.get("task_id") == task_id]
            done = any("completed" in line["message"] for line in ours)
            return ours if done else None

        worker_lines = await wait_until(completed_line, timeout_s=30, what="the worker's lines")
        api_lines = json_lines(tmp_path / "serve.log")
    row = await db.fetchrow(
        "SELECT request_id, worker_id, created_by_id FROM tasks WHERE id = $1",
        uuid.UUID(task_id),
    )
    assert row is not None

    assert answered_id == REQUEST_ID
    assert row["request_id"] == REQUEST_ID
    request_lines = [line for line in api_lines if line.get("request_id") == REQUEST_ID]
    assert {line["logger"] for line in request_lines} >= {"exporter.api", "aiohttp.access"}
    created = next(line for line in request_lines if "created" in line["message"])
    assert created["account_id"] == admin_id
    assert len(worker_lines) >= 2  # it ran, and it completed
    for line in worker_lines:
        assert line["request_id"] == REQUEST_ID, line
        assert line["worker_id"] == row["worker_id"], line


def workers_logs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "worker-logs").glob("worker-*.log"))


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (REQUEST_ID, True),
        ("0b7e2a56-6c55-4a44-9a5b-0d5e1c1a0c11", True),
        (None, False),
        ("", False),
        ("has spaces", False),
        ('"}{"level": "forged', False),
        ("x" * 129, False),
        ("-starts-with-a-dash", False),
        ("ümlaut", False),
    ],
)
async def test_a_request_id_is_kept_if_short_and_safe_and_replaced_otherwise(
    client: TestClient[Any, Any], sent: str | None, kept: bool
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    for path in ("/healthz", "/api/export-tasks", "/no/such/page"):
        response = await client.get(path, headers=headers)
        answered = response.headers["X-Request-ID"]
        if kept:
            assert answered == sent
        else:
            assert GENERATED.fullmatch(answered), answered


async def test_each_answer_has_an_id_of_its_own_and_a_stream_too(admin: ApiUser) -> None:
    ids = set()
    for _ in range(3):
        response = await admin.client.get("/api/export-tasks", headers=admin.headers)
        ids.add(response.headers["X-Request-ID"])
    async with admin.client.get("/api/export-tasks/stream", headers=admin.headers) as stream:
        assert stream.status == 200
        assert GENERATED.fullmatch(stream.headers["X-Request-ID"])
    redirect = await admin.client.get("/tasks/", allow_redirects=False)

    assert len(ids) == 3
    assert redirect.status in (301, 308)
    assert GENERATED.fullmatch(redirect.headers["X-Request-ID"])


def start_arq(settings: Settings, log: Path, **overrides: Any) -> subprocess.Popen[bytes]:
    """``arq run_worker.WorkerSettings``, arq's own command line, as a deployment may run it."""
    env = {
        **os.environ,
        **settings_env(settings, **overrides),
        "EXPORTER_HANDLER_MODULES": HANDLER_MODULES,
    }
    arq = Path(sys.executable).parent / "arq"
    with log.open("wb") as output:
        return subprocess.Popen(
            [str(arq), "run_worker.WorkerSettings"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def run_one_task_and_stop(
    admin: ApiUser, db: asyncpg.Connection[Any], worker: subprocess.Popen[bytes]
) -> str:
    task = await admin.export("account", "csv")
    assert task
    task_id: str = await db.fetchval("SELECT id::text FROM tasks")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    return task_id


def once(log: str, *parts: str) -> None:
    """Exactly one line of ``log`` has every one of ``parts``."""
    lines = [line for line in log.splitlines() if all(part in line for part in parts)]
    assert len(lines) == 1, (parts, lines, log)


async def test_arq_s_own_command_line_prints_each_line_once(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "arq.log"
    worker = start_arq(settings, log)
    try:
        task_id = await run_one_task_and_stop(admin, db, worker)
    finally:
        worker.kill()
    text = log.read_text()

    once(text, "Starting worker for 1 functions")
    once(text, "ready: queue=")
    once(text, f"task:{task_id}:1:run_task", "→")
    once(text, f"task:{task_id}:1:run_task", "←")
    once(text, f"task {task_id}: completed")
    once(text, "shutdown on SIGTERM", "wait complete")
    # Past the worker's start-up, arq's lines are ours: our format, our handler.
    started = re.search(rf"^\S+ \S+ INFO arq\.worker: .*task:{task_id}:1:run_task", text, re.M)
    assert started, text


async def test_exporter_worker_prints_each_line_once_and_every_line_as_json(
    admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses, tmp_path: Path
) -> None:
    worker = workers.start(log_format="json")
    task_id = await run_one_task_and_stop(admin, db, worker)
    lines = [line for log in workers_logs(tmp_path) for line in json_lines(log)]
    text = "\n".join(line["message"] for line in lines)

    once(text, "Starting worker for 1 functions")
    once(text, f"task:{task_id}:1:run_task", "→")
    once(text, f"task:{task_id}:1:run_task", "←")
    once(text, f"task {task_id}: completed")
    assert len({(line["time"], line["message"]) for line in lines}) == len(lines)


def test_an_unknown_log_format_stops_every_command_naming_the_variable() -> None:
    process = exporter_command("migrate", env={"EXPORTER_LOG_FORMAT": "xml"})
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "EXPORTER_LOG_FORMAT='xml'" in output
    assert "Traceback" not in output
