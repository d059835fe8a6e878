"""Webhooks against real receivers on 127.0.0.1, a real worker and a real database: every end of
a task is told once, signed; failures are retried with growing delays up to the maximum, across
worker restarts; addresses webhooks may not reach are refused at create and at delivery."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker
from prometheus_client import REGISTRY
from pydantic import SecretStr

from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.tasks.notify_url import Target
from exporter.tasks.webhook_http import Outcome, post_to
from settings import Settings
from tests.conftest import SECRET, account_id
from tests.imports import form, import_finished, import_task, imported
from tests.processes import WorkerProcesses
from tests.support import ApiUser, wait_until
from tests.webhook_receivers import Receiver, running_receiver, verify_signature
from tests.workers import janitor_round, running_worker

WEBHOOK_SECRET = "whsec-" + "k" * 32
BACKOFF_S = 0.3


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
def settings(settings: Settings, receiver: Receiver) -> Settings:
    """Webhooks on, to receivers of 127.0.0.1 only, with a fast backoff and a short timeout."""
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(WEBHOOK_SECRET),
            "webhook_allow_hosts": ("127.0.0.1",),
            "webhook_backoff_s": BACKOFF_S,
            "webhook_timeout_s": 1.0,
            "webhook_max_attempts": 3,
        }
    )


async def create(user: ApiUser, notify_url: str, type_name: str = "role", **params: Any) -> str:
    status, body = await user.post_task(
        {"type": type_name, "format": "csv", "params": params, "notify_url": notify_url}
    )
    assert status == 202, body
    return str(body["id"])


async def deliveries(db: asyncpg.Connection[Any], task_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT event_id, event_type, url, status, attempts FROM webhook_deliveries"
        " WHERE task_id = $1 ORDER BY id",
        uuid.UUID(task_id),
    )


async def settled(db: asyncpg.Connection[Any], task_id: str, count: int) -> list[asyncpg.Record]:
    """The task's deliveries once ``count`` of them are delivered or given up."""

    async def probe() -> list[asyncpg.Record] | None:
        rows = await deliveries(db, task_id)
        done = [row for row in rows if row["status"] != "pending"]
        return rows if len(done) >= count else None

    return await wait_until(probe, timeout_s=30, what=f"webhooks of task {task_id}")


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("exporter_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


async def test_completed_failed_cancelled_and_expired_each_deliver_one_signed_event(
    settings: Settings,
    receiver: Receiver,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
) -> None:
    everything = f"{receiver.url}/all"
    settings = settings.model_copy(update={"webhook_url": everything})
    hook = f"{receiver.url}/hook"
    delivered_before = counted("delivered")
    async with running_worker(settings):
        done = await create(admin, hook)
        failed = await create(admin, hook, "test_raises")
        slow = await create(admin, hook, "test_slow", rows=200_000)
        await wait_until(lambda: _running(admin, slow), timeout_s=20, what="the slow export to run")
        response = await admin.client.post(
            f"/api/export-tasks/{slow}/cancel", headers=admin.headers
        )
        assert response.status == 200
        for task_id in (done, failed, slow):
            await settled(db, task_id, 2)  # its own URL and the deployment's
        await db.execute(
            "UPDATE tasks SET finished_at = now() - interval '8 days' WHERE id = $1",
            uuid.UUID(done),
        )
        assert (await janitor_round(settings)).expired == 1
        await settled(db, done, 4)

    expected = {
        (done, "task.completed"),
        (failed, "task.failed"),
        (slow, "task.cancelled"),
        (done, "task.expired"),
    }
    for path in ("/hook", "/all"):
        got = receiver.at(path)
        assert len(got) == 4, [r.event["type"] for r in got]
        assert {(r.event["task"]["id"], r.event["type"]) for r in got} == expected
        for request in got:
            assert verify_signature(
                WEBHOOK_SECRET, request.headers["X-Exporter-Signature"], request.body
            )
            event = request.event
            assert event["task"]["status"] == event["type"].removeprefix("task.")
            assert set(event) == {"id", "type", "created_at", "task"}
    # One event, one id, whichever URL it went to.
    ids = {r.event["id"] for r in receiver.at("/hook")}
    assert ids == {r.event["id"] for r in receiver.at("/all")}
    assert len(ids) == 4
    assert counted("delivered") - delivered_before == 8

    shown = await admin.task(done)
    log = sorted((a["event_type"], a["target"], a["status_code"]) for a in shown["webhooks"])
    assert log == [
        ("task.completed", "deployment", 200),
        ("task.completed", "notify_url", 200),
        ("task.expired", "deployment", 200),
        ("task.expired", "notify_url", 200),
    ]
    assert shown["notify_url"] == hook


async def _running(user: ApiUser, task_id: str) -> bool:
    return (await user.task(task_id))["status"] == "running"


async def test_a_receiver_failing_twice_gets_three_attempts_with_growing_delays(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    receiver.failures = 2
    failed_before, delivered_before = counted("http_error"), counted("delivered")
    async with running_worker(settings):
        task_id = await create(admin, f"{receiver.url}/hook")
        [row] = await settled(db, task_id, 1)

    assert (row["status"], row["attempts"]) == ("delivered", 3)
    got = receiver.at("/hook")
    assert len(got) == 3
    assert len({r.event["id"] for r in got}) == 1  # the same event on every retry
    assert len({r.body for r in got}) == 1
    first_wait, second_wait = got[1].at - got[0].at, got[2].at - got[1].at
    assert BACKOFF_S <= first_wait < second_wait
    assert second_wait >= BACKOFF_S * 4
    log = (await admin.task(task_id))["webhooks"]
    assert [(a["attempt"], a["status_code"], a["delivery"]) for a in log] == [
        (1, 500, "delivered"),
        (2, 500, "delivered"),
        (3, 200, "delivered"),
    ]
    assert log[0]["error"].startswith("HTTP 500")
    assert log[2]["error"] is None
    assert counted("http_error") - failed_before == 2
    assert counted("delivered") - delivered_before == 1


async def test_attempts_stop_at_the_maximum(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    receiver.failures = 1_000
    async with running_worker(settings):
        task_id = await create(admin, f"{receiver.url}/hook")
        [row] = await settled(db, task_id, 1)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert len(receiver.at("/hook")) == 3
    log = (await admin.task(task_id))["webhooks"]
    assert [a["attempt"] for a in log] == [1, 2, 3]
    assert {a["delivery"] for a in log} == {"failed"}


async def test_a_delivery_due_when_its_worker_is_killed_is_sent_by_the_next_worker(
    settings: Settings,
    receiver: Receiver,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
) -> None:
    receiver.failures = 1
    first = workers.start(webhook_backoff_s=3.0)
    task_id = await create(admin, f"{receiver.url}/hook")

    async def failed_once() -> bool:
        rows = await deliveries(db, task_id)
        return bool(rows) and rows[0]["attempts"] == 1

    await wait_until(failed_once, timeout_s=30, what="the first attempt")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    [row] = await deliveries(db, task_id)
    assert row["status"] == "pending"

    workers.start(webhook_backoff_s=3.0)
    [row] = await settled(db, task_id, 1)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    got = receiver.at("/hook")
    assert len(got) == 2
    assert got[0].event["id"] == got[1].event["id"]


@pytest.mark.parametrize(
    "notify_url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://127.0.0.2/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
    ],
)
async def test_a_notify_url_to_a_private_address_is_refused_at_create(
    admin: ApiUser, notify_url: str
) -> None:
    status, body = await admin.post_task(
        {"type": "role", "format": "csv", "notify_url": notify_url}
    )
    assert status == 422, body
    [problem] = body["error"]["details"]
    assert (problem["field"], problem["code"]) == ("notify_url", "notify_url_not_allowed")


@pytest.mark.parametrize(
    ("notify_url", "code"),
    [
        ("ftp://example.com/hook", "invalid_notify_url"),
        ("http://user:secret@example.com/hook", "invalid_notify_url"),
        ("http:///hook", "invalid_notify_url"),
        ("https://example.com/" + "a" * 2100, "string_too_long"),
        ("javascript:alert(1)", "invalid_notify_url"),
    ],
)
async def test_a_malformed_notify_url_is_refused_by_name(
    admin: ApiUser, notify_url: str, code: str
) -> None:
    status, body = await admin.post_task(
        {"type": "role", "format": "csv", "notify_url": notify_url}
    )
    assert status == 422, body
    [problem] = body["error"]["details"]
    assert (problem["field"], problem["code"]) == ("notify_url", code)


@pytest.fixture
async def unlisted_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The API of a deployment that lists no host: loopback is refused like any private one."""
    strict = settings.model_copy(update={"webhook_allow_hosts": ()})
    async with TestClient(TestServer(create_app(strict))) as client:
        yield client


async def test_a_name_resolving_to_loopback_is_refused_unless_listed(
    unlisted_client: TestClient[Any, Any], db: asyncpg.Connection[Any], receiver: Receiver
) -> None:
    user = ApiUser(unlisted_client, issue_token(SECRET, await account_id(db, "admin")))
    port = receiver.url.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/hook", f"{receiver.url}/hook"):
        status, body = await user.post_task({"type": "role", "format": "csv", "notify_url": url})
        assert status == 422, body
        assert body["error"]["details"][0]["code"] == "notify_url_not_allowed"


async def test_an_address_refused_at_delivery_is_not_contacted(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    """The API allowed the host when the task was made; by delivery it may not be reached
    (what a name that resolves elsewhere later looks like to the sender)."""
    refused_before = counted("refused")
    async with running_worker(settings.model_copy(update={"webhook_allow_hosts": ()})):
        task_id = await create(admin, f"{receiver.url}/hook")
        [row] = await settled(db, task_id, 1)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert receiver.received == []
    log = (await admin.task(task_id))["webhooks"]
    assert all("may not reach" in a["error"] and a["status_code"] is None for a in log)
    assert counted("refused") - refused_before == 3


async def test_a_redirect_is_not_followed(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    async with running_worker(settings):
        task_id = await create(admin, f"{receiver.url}/redirect")
        [row] = await settled(db, task_id, 1)
    assert row["status"] == "failed"
    assert len(receiver.at("/redirect")) == 3
    assert receiver.at("/landing") == []
    log = (await admin.task(task_id))["webhooks"]
    assert {a["status_code"] for a in log} == {302}
    assert "not followed" in log[0]["error"]


async def test_a_huge_answer_is_not_read_past_a_few_kilobytes(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    async with running_worker(settings):
        task_id = await create(admin, f"{receiver.url}/huge")
        [row] = await settled(db, task_id, 1)
    assert (row["status"], row["attempts"]) == ("delivered", 1)

    # What left the receiver before the sender hung up: socket buffers, not 256 MB.
    async def stopped() -> bool:
        before = receiver.huge_sent
        await asyncio.sleep(0.2)
        return receiver.huge_sent == before > 0

    await wait_until(stopped, timeout_s=10, what="the receiver to stop sending")
    assert receiver.huge_sent < 16 * 1024**2


async def test_a_slow_receiver_times_out(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    timeouts_before = counted("timeout")
    started = time.monotonic()
    async with running_worker(settings.model_copy(update={"webhook_max_attempts": 1})):
        task_id = await create(admin, f"{receiver.url}/slow")
        [row] = await settled(db, task_id, 1)
    assert time.monotonic() - started < 15
    assert row["status"] == "failed"
    [attempt] = (await admin.task(task_id))["webhooks"]
    assert attempt["error"] == "no answer within 1 s"
    assert counted("timeout") - timeouts_before == 1


async def test_the_worker_sends_nothing_without_a_notify_url(
    settings: Settings,
    receiver: Receiver,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    worker: Worker,
) -> None:
    task = await admin.finished((await admin.create("role", "csv"))["id"])
    assert task["status"] == "completed"
    assert await deliveries(db, task["id"]) == []
    assert task["webhooks"] == []


async def test_an_import_tells_its_end_with_the_import_as_the_api_shows_it(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    hook = f"{receiver.url}/hook"
    async with running_worker(settings):
        created = await imported(admin, form(notify_url=hook))
        task = await import_finished(admin, created["id"])
        await settled(db, task["id"], 1)
    [request] = receiver.at("/hook")
    assert verify_signature(WEBHOOK_SECRET, request.headers["X-Exporter-Signature"], request.body)
    event = request.event
    assert event["type"] == f"task.{task['status']}"
    shown = await import_task(admin, task["id"])
    assert event["task"]["id"] == shown["id"]
    assert event["task"]["mode"] == shown["mode"] == "validate"
    assert event["task"]["counts"] == shown["counts"]
    assert [a["status_code"] for a in shown["webhooks"]] == [200]


async def test_a_task_the_sweeper_fails_is_told_once(
    settings: Settings,
    receiver: Receiver,
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    workers: WorkerProcesses,
) -> None:
    """Its worker dies; the sweeper of another worker finds the lease run out and, past the
    attempts allowed, fails the task: the trigger makes the event there too."""
    workers.start(max_attempts=1)
    task_id = await create(admin, f"{receiver.url}/hook", "test_kills_worker")
    await wait_until(lambda: _no_worker_alive(workers), timeout_s=30, what="the worker to die")
    workers.start(max_attempts=1)
    [row] = await settled(db, task_id, 1)
    assert (row["event_type"], row["status"]) == ("task.failed", "delivered")
    [request] = receiver.at("/hook")
    assert request.event["task"]["status"] == "failed"


async def _no_worker_alive(workers: WorkerProcesses) -> bool:
    return not workers.alive()


async def test_a_cancel_before_start_and_a_lost_file_are_told_once_each(
    settings: Settings, receiver: Receiver, admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    """The API's own ends of a task: a pending task cancelled, a completed one whose file was
    found gone at download (expired); a retry carries the notify_url to the new task."""
    hook = f"{receiver.url}/hook"
    pending = await create(admin, hook)  # no worker yet: it stays pending
    response = await admin.client.post(f"/api/export-tasks/{pending}/cancel", headers=admin.headers)
    assert (await response.json())["status"] == "cancelled"
    async with running_worker(settings):
        done = await admin.finished(await create(admin, hook))
        assert settings.storage_dir is not None
        (stored,) = settings.storage_dir.rglob("*.csv")
        stored.unlink()
        status, _, _ = await admin.download(done["id"])
        assert status == 410
        await settled(db, pending, 1)
        await settled(db, done["id"], 2)
    # No worker now: the retry stays pending and tells nothing yet.
    retry = await admin.client.post(f"/api/export-tasks/{done['id']}/retry", headers=admin.headers)
    assert (await retry.json())["notify_url"] == hook
    told = sorted((r.event["task"]["id"], r.event["type"]) for r in receiver.at("/hook"))
    assert told == sorted(
        [(pending, "task.cancelled"), (done["id"], "task.completed"), (done["id"], "task.expired")]
    )


async def test_a_post_goes_to_the_address_checked_without_resolving_the_name_again(
    receiver: Receiver,
) -> None:
    """A name that does not resolve at all (``.invalid``) reaches the receiver through the
    address it was checked at: aiohttp never asks DNS, so a rebinding would change nothing."""
    port = int(receiver.url.rsplit(":", 1)[1])
    target = Target("hooks.invalid", port, ("127.0.0.1",))
    result = await post_to(target, f"http://hooks.invalid:{port}/hook", b"{}", {}, timeout_s=2)
    assert (result.outcome, result.status_code) == (Outcome.DELIVERED, 200)
    [request] = receiver.at("/hook")
    assert request.headers["Host"] == f"hooks.invalid:{port}"


async def test_an_idempotency_key_reused_with_another_notify_url_is_a_conflict(
    admin: ApiUser, receiver: Receiver
) -> None:
    async def post(notify_url: str) -> int:
        body = {"type": "role", "format": "csv", "notify_url": notify_url}
        response = await admin.client.post(
            "/api/export-tasks", json=body, headers={**admin.headers, "Idempotency-Key": "k1"}
        )
        return response.status

    assert await post(f"{receiver.url}/hook") == 202
    assert await post(f"{receiver.url}/hook") == 200
    assert await post(f"{receiver.url}/other") == 422
