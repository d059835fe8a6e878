"""Exports read their rows from a real streaming replica once it has replayed the task's
creation; a replica that lags past the bound, or is down, leaves them to the primary."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from exporter.exports.row_source import CONNECT_TIMEOUT_S
from exporter.exports.snapshots import connection_in_snapshot
from exporter.ops.seed import seed
from settings import Settings
from tests.conftest import with_database
from tests.expected import ACCOUNT_HEADER, ACCOUNT_TEXT_COLUMNS, account_rows, as_csv
from tests.integration.test_lifecycle import running
from tests.replica import StreamingReplica, free_port
from tests.support import ApiUser, csv_rows, wait_until, xlsx_rows
from tests.workers import running_worker

# The seed tops the template's 300-odd accounts up to this many, inserted by the test.
ACCOUNTS_IN_ALL = 420


@pytest.fixture
def database_url(replicated_database_url: str) -> str:
    """The app's database is on the streaming replica's primary."""
    return replicated_database_url


@pytest.fixture
def replica_url(streaming_replica: StreamingReplica, database_url: str) -> str:
    return with_database(streaming_replica.replica_url(), database_url.rsplit("/", 1)[1])


@pytest.fixture
def settings(settings: Settings, replica_url: str) -> Settings:
    return settings.model_copy(
        update={"replica_database_url": replica_url, "replica_max_wait_s": 5.0}
    )


@pytest.fixture
async def paused_replay(
    streaming_replica: StreamingReplica,
) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The replica stops replaying the primary's changes (it lags) until the test resumes it."""
    replica = await asyncpg.connect(streaming_replica.replica_url())
    await replica.execute("SELECT pg_wal_replay_pause()")
    try:
        yield replica
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()


@pytest.fixture
async def new_accounts(database_url: str) -> None:
    """Accounts written on the primary just before the test's export is created."""
    await seed(database_url, accounts=ACCOUNTS_IN_ALL, admin_password=None)


@pytest.fixture
async def accounts_the_replica_lacks(
    database_url: str, paused_replay: asyncpg.Connection[Any]
) -> None:
    """Accounts written on the primary while the replica is not replaying (paused once the
    database is there too)."""
    await seed(database_url, accounts=ACCOUNTS_IN_ALL, admin_password=None)


async def accounts_read_on(url: str) -> int:
    """Scans of the accounts table done on the server at ``url`` (its own statistics: a
    replica counts the reads made on it, not the primary's)."""
    conn = await asyncpg.connect(url)
    try:
        scans = await conn.fetchval(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0)"
            " FROM pg_stat_user_tables WHERE relname = 'accounts'"
        )
    finally:
        await conn.close()
    return int(scans)


async def sessions_on(url: str) -> int:
    """Connections to the database of ``url`` on its server, besides this one."""
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return int(count)


async def expected_csv(db: asyncpg.Connection[Any]) -> list[list[str]]:
    return [ACCOUNT_HEADER, *(as_csv(row, ACCOUNT_TEXT_COLUMNS) for row in await account_rows(db))]


async def export_accounts(
    admin: ApiUser, settings: Settings, file_format: str = "csv"
) -> tuple[dict[str, Any], bytes]:
    """An account export run by a worker of ``settings``: the finished task and its file."""
    async with running_worker(settings):
        task = await admin.finished((await admin.create("account", file_format))["id"])
        status, content, _ = await admin.download(task["id"])
    assert status == 200, task
    return task, content


def replica_messages(log: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    return [m for m in log.messages if m.startswith(f"task {task_id}: reading rows from")]


async def test_an_export_created_right_after_rows_are_written_reads_them_from_the_replica(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    replica_url: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    scans_before = await accounts_read_on(replica_url)
    await seed(settings.database_url, accounts=ACCOUNTS_IN_ALL, admin_password=None)
    task, content = await export_accounts(admin, settings)

    assert csv_rows(content) == await expected_csv(db)
    assert task["row_count"] == ACCOUNTS_IN_ALL
    [message] = replica_messages(caplog, task["id"])
    assert message.startswith(f"task {task['id']}: reading rows from the replica (caught up")
    assert task["history"][-1]["detail"] == "rows read from the replica"

    # Its statistics are flushed when the reading connection ends, which it has.
    async def replica_scanned() -> bool:
        return await accounts_read_on(replica_url) > scans_before

    await wait_until(replica_scanned, timeout_s=5, what="the replica to count the export's read")


@pytest.mark.usefixtures("accounts_the_replica_lacks")
async def test_a_replica_lagging_past_the_bound_leaves_the_export_to_the_primary(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    task, content = await export_accounts(
        admin, settings.model_copy(update={"replica_max_wait_s": 0.5})
    )

    assert csv_rows(content) == await expected_csv(db)
    assert task["row_count"] == ACCOUNTS_IN_ALL  # with the new rows, which the replica lacks
    [message] = replica_messages(caplog, task["id"])
    said = re.fullmatch(
        f"task {task['id']}: reading rows from the primary: the replica was still [0-9]+ bytes"
        r" of WAL short of the task's creation after waiting ([0-9.]+) s"
        r" \(EXPORTER_REPLICA_MAX_WAIT_S=0\.5\)",
        message,
    )
    assert said is not None, message
    assert float(said[1]) >= 0.5
    [record] = [r for r in caplog.records if r.getMessage() == message]
    assert record.levelno == logging.WARNING
    assert task["history"][-1]["detail"].startswith("rows read from the primary: the replica was")


@pytest.mark.usefixtures("accounts_the_replica_lacks")
async def test_a_replica_that_catches_up_within_the_bound_is_read(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    paused_replay: asyncpg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    async with running_worker(settings.model_copy(update={"replica_max_wait_s": 20.0})):
        created = await admin.create("account", "csv")
        await running(admin, created["id"])  # and waiting for the replica
        await paused_replay.execute("SELECT pg_wal_replay_resume()")
        task = await admin.finished(created["id"])
        status, content, _ = await admin.download(task["id"])

    assert status == 200
    assert csv_rows(content) == await expected_csv(db)
    assert task["row_count"] == ACCOUNTS_IN_ALL  # with the rows it lacked when the task began
    [message] = replica_messages(caplog, task["id"])
    assert message.startswith(f"task {task['id']}: reading rows from the replica (caught up")
    assert task["history"][-1]["detail"] == "rows read from the replica"


@pytest.mark.usefixtures("accounts_the_replica_lacks")
async def test_an_export_waiting_for_a_lagging_replica_is_cancelled_at_once(
    admin: ApiUser, replica_url: str, settings: Settings
) -> None:
    async with running_worker(settings.model_copy(update={"replica_max_wait_s": 30.0})):
        task = await admin.create("account", "csv")
        await running(admin, task["id"])
        asked = time.monotonic()
        response = await admin.client.post(
            f"/api/export-tasks/{task['id']}/cancel", headers=admin.headers
        )
        finished = await admin.finished(task["id"])
        took_s = time.monotonic() - asked

    assert response.status == 200
    assert finished["status"] == "cancelled"
    assert took_s < 1.5

    async def replica_let_go() -> bool:
        return await sessions_on(replica_url) == 0

    await wait_until(replica_let_go, timeout_s=5, what="the worker to leave the replica")


@asynccontextmanager
async def listening(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    held: list[asyncio.StreamWriter],
) -> AsyncIterator[int]:
    """The port of a loopback server handing each connection to ``handle``; the writers
    ``handle`` keeps in ``held`` are closed with it."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    async with listening(hold, held) as port:
        yield port


@pytest.fixture(params=["closed port", "silent server"])
async def unreachable_replica(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """The URL of a replica that is down, and how the worker is to say so: nothing listens on
    its port, or a server accepts and never answers (given up after the connect timeout)."""
    if request.param == "closed port":
        yield f"postgresql://postgres@127.0.0.1:{free_port()}/x", "[Errno 111] Connect call failed"
        return
    async with silent_server() as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/x", f"no answer in {CONNECT_TIMEOUT_S:g} s"


@pytest.mark.usefixtures("new_accounts")
async def test_a_replica_that_is_down_leaves_the_export_to_the_primary(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    unreachable_replica: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    url, reason = unreachable_replica

    # The worker starts although the replica cannot be reached.
    started = time.monotonic()
    task, content = await export_accounts(
        admin, settings.model_copy(update={"replica_database_url": url})
    )
    took_s = time.monotonic() - started

    assert csv_rows(content) == await expected_csv(db)
    assert task["row_count"] == ACCOUNTS_IN_ALL
    assert took_s < CONNECT_TIMEOUT_S + 5
    [message] = replica_messages(caplog, task["id"])
    assert message.startswith(
        f"task {task['id']}: reading rows from the primary: the replica could not be reached: "
        + reason
    )


@pytest.mark.usefixtures("new_accounts")
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
async def test_an_export_read_in_parts_from_the_replica_is_the_file_read_from_the_primary(
    admin: ApiUser,
    settings: Settings,
    file_format: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    in_parts = {"parallel_min_rows": 100, "encode_processes": 2}

    from_replica, replica_file = await export_accounts(
        admin, settings.model_copy(update=in_parts), file_format
    )
    primary_only = {**in_parts, "replica_database_url": None}
    from_primary, primary_file = await export_accounts(
        admin, settings.model_copy(update=primary_only), file_format
    )

    # Every part imported the replica's snapshot, which only a connection to the replica can.
    [message] = replica_messages(caplog, from_replica["id"])
    assert "reading rows from the replica" in message
    assert from_replica["row_count"] == from_primary["row_count"] == ACCOUNTS_IN_ALL
    if file_format == "csv":
        copying = f"copying {ACCOUNTS_IN_ALL} csv rows over 2 connections"
        assert caplog.messages.count(copying) == 2
        assert replica_file == primary_file
    else:
        assert xlsx_rows(replica_file) == xlsx_rows(primary_file)


@pytest.mark.usefixtures("new_accounts")
async def test_a_replica_url_naming_a_server_not_in_recovery_leaves_the_export_to_the_primary(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    database_url: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    # The primary itself by mistake (a promoted ex-replica is the same to the worker).
    task, content = await export_accounts(
        admin, settings.model_copy(update={"replica_database_url": database_url})
    )

    assert csv_rows(content) == await expected_csv(db)
    [message] = replica_messages(caplog, task["id"])
    assert message == (
        f"task {task['id']}: reading rows from the primary: EXPORTER_REPLICA_DATABASE_URL"
        " names a server that is not in recovery"
    )
    [record] = [r for r in caplog.records if r.getMessage() == message]
    assert record.levelno == logging.WARNING
    assert task["history"][-1]["detail"] == (
        "rows read from the primary: EXPORTER_REPLICA_DATABASE_URL names a server that is not"
        " in recovery"
    )


@pytest.fixture
async def stalling_replica(
    streaming_replica: StreamingReplica, database_url: str
) -> AsyncIterator[str]:
    """The URL of a replica that accepts connections and answers their set-up, then never
    answers the look at its replay position: a proxy to the real replica that holds that query."""
    stalled: list[asyncio.StreamWriter] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if b"pg_is_in_recovery" in data:
                    return  # held: never sent on, never answered
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def proxy(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", streaming_replica.replica_port
        )
        stalled.extend([client_writer, server_writer])
        await asyncio.gather(
            relay(client_reader, server_writer), relay(server_reader, client_writer)
        )

    async with listening(proxy, stalled) as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/{database_url.rsplit('/', 1)[1]}"


@pytest.mark.usefixtures("new_accounts")
async def test_a_replica_that_stalls_its_queries_is_given_up_within_the_bound(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    stalling_replica: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    started = time.monotonic()
    task, content = await export_accounts(
        admin,
        settings.model_copy(
            update={"replica_database_url": stalling_replica, "replica_max_wait_s": 0.5}
        ),
    )
    took_s = time.monotonic() - started

    assert csv_rows(content) == await expected_csv(db)
    assert took_s < CONNECT_TIMEOUT_S + 5
    [message] = replica_messages(caplog, task["id"])
    assert message == (
        f"task {task['id']}: reading rows from the primary: the replica stopped answering:"
        f" no answer in {CONNECT_TIMEOUT_S:g} s"
    )


async def test_a_part_connection_to_a_silent_server_gives_up_after_the_connect_timeout() -> None:
    started = time.monotonic()
    async with silent_server() as port, asyncio.timeout(CONNECT_TIMEOUT_S + 5):
        with pytest.raises(ConnectionError, match="no answer from the database in"):
            async with connection_in_snapshot(
                f"postgresql://postgres@127.0.0.1:{port}/x", "00000003-00000002-1", "UTC"
            ):
                pass
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + 1


@pytest.fixture
async def impatient_replay(streaming_replica: StreamingReplica) -> AsyncIterator[None]:
    """The replica cancels at once any read that holds up its replay of the primary's changes
    (max_standby_streaming_delay = 0), until the test ends."""
    replica = await asyncpg.connect(streaming_replica.replica_url())
    try:
        await replica.execute("ALTER SYSTEM SET max_standby_streaming_delay = 0")
        await replica.execute("SELECT pg_reload_conf()")
        yield
    finally:
        await replica.execute("ALTER SYSTEM RESET max_standby_streaming_delay")
        await replica.execute("SELECT pg_reload_conf()")
        await replica.close()


async def reading(user: ApiUser, task_id: str) -> None:
    async def probe() -> bool:
        task = await user.task(task_id)
        return task["status"] == "running" and (task.get("rows_done") or 0) > 0

    await wait_until(probe, what=f"task {task_id} to be reading rows")


@pytest.mark.usefixtures("impatient_replay")
async def test_a_read_the_replica_cancels_is_tried_again_on_the_primary(
    admin: ApiUser,
    database_url: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "exporter.worker")
    async with running_worker(settings):
        created = await admin.create("test_slow", "csv", rows=3_000)
        await reading(admin, created["id"])
        # Replayed on the replica, the lock conflicts with the export's read of the table,
        # which the replica cancels: a real recovery conflict.
        primary = await asyncpg.connect(database_url)
        try:
            async with primary.transaction():
                await primary.execute("LOCK TABLE test_series IN ACCESS EXCLUSIVE MODE")
        finally:
            await primary.close()
        task = await admin.finished(created["id"])
        status, content, _ = await admin.download(task["id"])

    assert status == 200, task
    assert task["status"] == "completed"
    assert task["row_count"] == 3_000
    assert len(csv_rows(content)) == 3_001
    queued_again = [event for event in task["history"] if event["attempt"] == 1][-1]
    assert "the replica cancelled the read to replay the primary's changes" in str(queued_again)
    assert "conflict with recovery" in str(queued_again)
    first, second = replica_messages(caplog, task["id"])
    assert first.startswith(f"task {task['id']}: reading rows from the replica (caught up")
    assert second == (
        f"task {task['id']}: reading rows from the primary: an earlier attempt did not finish"
    )
    assert task["history"][-1]["detail"] == (
        "rows read from the primary: an earlier attempt did not finish"
    )
