"""GET /metrics, scraped with Prometheus's own parser while real exports run: the API in several
processes (adding up through PROMETHEUS_MULTIPROC_DIR) and a worker process on its own metrics
port, against a real database whose rows the values must agree with."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.processes import (
    WorkerProcesses,
    api_server,
    claimed,
    exporter_command,
    free_port,
    pid_of,
    settings_env,
)
from tests.support import TERMINAL, ApiUser, wait_until

pytestmark = pytest.mark.slow

API_PROCESSES = 3
METRICS_TOKEN = "scrape-token-" + "s" * 20


async def scrape(url: str, token: str | None = METRICS_TOKEN) -> list[Sample]:
    """Every sample of one scrape, as Prometheus's text parser reads it."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def by_labels(samples: Iterable[Sample], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples named ``name`` added up by the values of ``keys`` (zeros left out)."""
    sums: dict[tuple[str, ...], float] = {}
    for sample in samples:
        if sample.name == name and sample.value:
            key = tuple(sample.labels[k] for k in keys)
            sums[key] = sums.get(key, 0.0) + sample.value
    return sums


def rows_of(records: Iterable[asyncpg.Record]) -> dict[tuple[str, ...], float]:
    """Query rows of (labels..., number) as a dict like :func:`by_labels`'s."""
    return {tuple(record.values())[:-1]: float(record[-1]) for record in records if record[-1]}


@pytest.fixture
def scrape_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})


@pytest.fixture
async def api(scrape_settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """``exporter serve`` in API_PROCESSES processes sharing their metrics through a directory."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        **settings_env(scrape_settings, port=free_port(), api_processes=API_PROCESSES),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    async with api_server(env, tmp_path / "serve.log") as url:
        yield url


@pytest.fixture
async def token(db: asyncpg.Connection[Any]) -> str:
    return issue_token(SECRET, await account_id(db, "admin"))


async def create(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST an export on a connection of its own: the kernel picks the API process each time."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/api/export-tasks",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        ) as response:
            assert response.status == 202, await response.text()
            created: dict[str, Any] = await response.json()
            return created


async def unfinished_counts(db: asyncpg.Connection[Any]) -> dict[tuple[str, ...], float]:
    return rows_of(
        await db.fetch(
            "SELECT status, type, count(*) FROM tasks"
            " WHERE status IN ('pending', 'running') GROUP BY 1, 2"
        )
    )


async def gauges_agree_with_the_database(url: str, db: asyncpg.Connection[Any]) -> bool:
    """One scrape between two identical counts of the database says what they say."""
    before = await unfinished_counts(db)
    samples = await scrape(url)
    after = await unfinished_counts(db)
    if before != after:
        return False  # a task moved meanwhile: ask again
    scraped = {
        **{
            ("pending", t): n
            for (t,), n in by_labels(samples, "exporter_tasks_pending", "type").items()
        },
        **{
            ("running", t): n
            for (t,), n in by_labels(samples, "exporter_tasks_running", "type").items()
        },
    }
    assert scraped == before
    return True


async def test_a_scrape_agrees_with_the_database_while_exports_run_and_after(
    api: str,
    token: str,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
    scrape_settings: Settings,
    tmp_path: Path,
) -> None:
    worker_port = free_port()
    workers.start(worker_metrics_port=worker_port, metrics_token=METRICS_TOKEN)
    worker_url = f"http://127.0.0.1:{worker_port}"
    # Two run (the worker takes two at a time), the third waits for one of them.
    slow = [
        await create(api, token, {"type": "test_slow", "format": "csv", "params": {"rows": n}})
        for n in (2_500, 2_600, 2_700)
    ]

    async def two_running_one_pending() -> bool:
        return (await unfinished_counts(db)) == {
            ("running", "test_slow"): 2,
            ("pending", "test_slow"): 1,
        }

    await wait_until(two_running_one_pending, timeout_s=30, what="two slow exports running")
    await wait_until(lambda: gauges_agree_with_the_database(api, db), what="a steady scrape")
    # The waiting one is cancelled by the API (or, had it just started, by its worker).
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{api}/api/export-tasks/{slow[2]['id']}/cancel",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200, await response.text()

    async def all_finished() -> bool:
        statuses = {r["status"] for r in await db.fetch("SELECT status FROM tasks")}
        return statuses <= TERMINAL

    await wait_until(all_finished, timeout_s=50, what="the slow exports")
    others = [
        await create(api, token, {"type": "account", "format": file_format, "params": {}})
        for file_format in ("csv", "xlsx")
    ]
    others.append(await create(api, token, {"type": "test_raises", "format": "csv", "params": {}}))
    await wait_until(all_finished, timeout_s=50, what="the other exports")
    api_samples, worker_samples = await scrape(api), await scrape(worker_url)
    both = [*api_samples, *worker_samples]

    created = rows_of(
        await db.fetch("SELECT kind, type, format, count(*) FROM tasks GROUP BY 1, 2, 3")
    )
    finished = rows_of(
        await db.fetch("SELECT kind, type, format, status, count(*) FROM tasks GROUP BY 1, 2, 3, 4")
    )
    # A task cancelled before it started has no duration.
    timed = rows_of(
        await db.fetch(
            "SELECT kind, type, format, status, count(*) FROM tasks"
            " WHERE started_at IS NOT NULL GROUP BY 1, 2, 3, 4"
        )
    )
    started = await db.fetchval("SELECT count(*) FROM tasks WHERE started_at IS NOT NULL")
    completed = "WHERE status = 'completed' GROUP BY 1, 2, 3"
    rows = rows_of(
        await db.fetch(f"SELECT kind, type, format, sum(row_count) FROM tasks {completed}")
    )
    file_bytes = rows_of(
        await db.fetch(f"SELECT kind, type, format, sum(file_size) FROM tasks {completed}")
    )
    labels = ("kind", "type", "format")
    assert len(created) == 4 and sum(created.values()) == len(slow) + len(others)
    assert by_labels(both, "exporter_tasks_created_total", *labels) == created
    assert by_labels(api_samples, "exporter_tasks_created_total", *labels) == created
    assert by_labels(both, "exporter_tasks_finished_total", *labels, "status") == finished
    assert {s for (*_, s) in finished} == {"completed", "failed", "cancelled"}
    assert by_labels(both, "exporter_task_duration_seconds_count", *labels, "status") == timed
    assert by_labels(both, "exporter_task_rows_total", *labels) == rows
    assert rows[("export", "account", "csv")] == 300  # the seeded accounts
    assert by_labels(both, "exporter_task_file_bytes_total", *labels) == file_bytes
    assert total(both, "exporter_task_queue_wait_seconds_count") == started
    # Each create was counted by whichever of the processes answered it, and all add up.
    assert total(
        api_samples,
        "exporter_http_requests_total",
        method="POST",
        route="/api/export-tasks",
        status="202",
    ) == len(slow) + len(others)
    pids = {path.stem.rsplit("_", 1)[1] for path in (tmp_path / "metrics").glob("counter_*.db")}
    assert len(pids) > 1, pids
    assert total(api_samples, "exporter_tasks_pending") == 0
    assert total(api_samples, "exporter_tasks_running") == 0
    # The worker counts no waiting tasks (the API does): no sum over targets counts them twice.
    assert total(worker_samples, "exporter_tasks_pending") == 0
    assert "exporter_webhook_deliveries_total" not in {s.name for s in both}


async def test_a_restarted_server_counts_from_zero_in_the_same_directory(
    scrape_settings: Settings, token: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        **settings_env(scrape_settings, port=free_port(), api_processes=2),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    body = {"type": "account", "format": "csv", "params": {}}
    async with api_server(env, tmp_path / "first.log") as url:
        await create(url, token, body)
        first = await scrape(url)
    async with api_server(env, tmp_path / "second.log") as url:
        second = await scrape(url)

    assert total(first, "exporter_tasks_created_total") == 1
    # The killed run's files were removed as the new one started: nothing of it is counted.
    assert total(second, "exporter_tasks_created_total") == 0
    assert total(second, "exporter_http_requests_total", route="/api/export-tasks") == 0


async def test_lease_take_overs_and_enqueues_of_the_sweeper_are_counted(
    settings: Settings,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
    client: TestClient[Any, Any],
    token: str,
) -> None:
    first = workers.start()
    response = await client.post(
        "/api/export-tasks",
        json={"type": "test_slow", "format": "csv", "params": {"rows": 3_000}},
        headers={"Authorization": f"Bearer {token}"},
    )
    task = await response.json()
    row = await claimed(db, task["id"], min_rows=1)
    assert pid_of(row["worker_id"]) == first.pid
    first.send_signal(signal.SIGKILL)
    port = free_port()
    workers.start(worker_metrics_port=port)

    async def done() -> asyncpg.Record | None:
        record = await db.fetchrow(
            "SELECT status, attempts FROM tasks WHERE id = $1", uuid.UUID(task["id"])
        )
        return record if record and record["status"] == "completed" else None

    finished = await wait_until(done, timeout_s=50, what="the task on the second worker")
    samples = await scrape(f"http://127.0.0.1:{port}", token=None)

    assert finished["attempts"] == 2
    assert total(samples, "exporter_lease_takeovers_total", status="pending") == 1
    assert total(samples, "exporter_lease_takeovers_total") == 1
    assert total(samples, "exporter_sweeper_enqueued_total") == 1
    assert total(samples, "exporter_tasks_finished_total", status="completed") == 1


async def test_files_removed_after_their_retention_are_counted(
    settings: Settings,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
    client: TestClient[Any, Any],
    token: str,
) -> None:
    port = free_port()
    # Two seconds of retention.
    workers.start(worker_metrics_port=port, retention_days=2 / 86400)
    headers = {"Authorization": f"Bearer {token}"}
    for file_format in ("csv", "xlsx"):
        response = await client.post(
            "/api/export-tasks",
            json={"type": "account", "format": file_format, "params": {}},
            headers=headers,
        )
        assert response.status == 202

    async def expired() -> bool:
        return await db.fetchval("SELECT count(*) FROM tasks WHERE status = 'expired'") == 2

    await wait_until(expired, timeout_s=40, what="both files to expire")
    samples = await scrape(f"http://127.0.0.1:{port}", token=None)

    assert total(samples, "exporter_files_expired_total") == 2
    assert total(samples, "exporter_tasks_finished_total", status="completed") == 2


@pytest.fixture
async def admin_headers(db: asyncpg.Connection[Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, await account_id(db, 'admin'))}"}


async def served(settings: Settings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


async def test_requests_are_counted_by_route_pattern_never_by_the_path_asked_for(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    client = await served(settings)
    try:
        before = await client.get("/metrics")
        samples_before = [
            s for f in text_string_to_metric_families(await before.text()) for s in f.samples
        ]
        task_id = "0b7e2a56-6c55-4a44-9a5b-0d5e1c1a0c11"
        for _ in range(3):
            response = await client.get(f"/api/export-tasks/{task_id}", headers=admin_headers)
            assert response.status == 404
        assert (await client.get("/no/such/page/42")).status == 404
        after = await client.get("/metrics")
        samples = [s for f in text_string_to_metric_families(await after.text()) for s in f.samples]
    finally:
        await client.close()

    def counted(**labels: str) -> float:
        name = "exporter_http_requests_total"
        return total(samples, name, **labels) - total(samples_before, name, **labels)

    assert counted(route="/api/export-tasks/{task_id}", status="404", method="GET") == 3
    assert counted(route="(unmatched)", status="404") == 1
    assert not any(task_id in str(s.labels) or "/no/such" in str(s.labels) for s in samples)
    assert total(samples, "exporter_http_request_duration_seconds_count", route="/metrics") >= 1


async def test_metrics_need_the_token_when_one_is_set(settings: Settings) -> None:
    client = await served(settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}))
    try:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        missing_body = await missing.json()
    finally:
        await client.close()

    assert (missing.status, wrong.status, right.status) == (401, 401, 200)
    assert missing_body["error"]["code"] == "unauthorized"


async def test_several_api_processes_without_a_shared_directory_refuse_to_be_scraped(
    settings: Settings,
) -> None:
    client = await served(settings.model_copy(update={"api_processes": 2}))
    try:
        response = await client.get("/metrics")
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 503
    assert "PROMETHEUS_MULTIPROC_DIR" in body["error"]["message"]


async def test_a_worker_refuses_the_api_processes_directory(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**settings_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    process = exporter_command("worker", env=env)
    output, _ = await asyncio.to_thread(process.communicate, timeout=60)

    assert process.returncode == 1
    assert "PROMETHEUS_MULTIPROC_DIR is for `exporter serve` only" in output


async def test_open_event_streams_are_counted_until_they_close(admin: ApiUser) -> None:
    async def streams_open() -> float:
        response = await admin.client.get("/metrics")
        text = await response.text()
        families = text_string_to_metric_families(text)
        return total([s for f in families for s in f.samples], "exporter_event_streams_open")

    before = await streams_open()
    stream = await admin.client.get("/api/export-tasks/stream", headers=admin.headers)
    assert stream.status == 200
    opened = await streams_open()
    stream.close()

    async def closed() -> bool:
        return await streams_open() == before

    assert opened == before + 1
    # The server learns of a closed stream at its next ping (every 5 s).
    await wait_until(closed, timeout_s=15, what="the stream to be counted closed")
