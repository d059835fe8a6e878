"""Real PostgreSQL and Redis for the integration and e2e tiers: a fresh database cloned from a
migrated template, its own arq queue, a real HTTP server on loopback and an in-process arq worker.

Defined once here, not per tier, so that one session starts the servers and the template once;
nothing starts until a test asks for a fixture, and tests/unit/conftest.py refuses unit tests
that ask (every fixture here that needs a server stands on ``service_urls``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis, create_pool
from arq.worker import Worker
from pydantic import SecretStr

from exporter.auth.passwords import hash_password
from exporter.auth.tokens import issue_token
from exporter.ops.app import create_app
from exporter.ops.migrate import migrate
from exporter.ops.seaweedfs import SeaweedFS, create_bucket, running_seaweedfs
from exporter.ops.seed import seed
from exporter.tasks.queue import redis_settings
from settings import Settings
from tests import failing_handlers  # registers the test-only export types on import
from tests.processes import WorkerProcesses
from tests.replica import StreamingReplica, running_streaming_replica
from tests.seaweed import ACCESS_KEY, SECRET_KEY, TEST_BUCKET
from tests.support import ApiUser
from tests.workers import running_worker

SECRET = "test-secret-" + "x" * 32
ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_DB = 15
REPLICATED_TEMPLATE = "exporter_template"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps socket ?host= queries)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_redis_db(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fidelity",
        action="store_true",
        help="also run the tests marked fidelity (minutes each; make fidelity runs them)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--fidelity"):
        return
    skip = pytest.mark.skip(reason="marked fidelity: minutes long, run by make fidelity")
    for item in items:
        if item.get_closest_marker("fidelity"):
            item.add_marker(skip)


@dataclass(frozen=True)
class Servers:
    """Server-level URLs: PostgreSQL's maintenance database, and Redis."""

    database_url: str
    redis_url: str


@pytest.fixture(scope="session")
def service_urls() -> Iterator[Servers]:
    """TEST_DATABASE_URL/TEST_REDIS_URL, else the configured or running servers, else embedded."""
    database, redis = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if database and redis:
        yield Servers(database, redis)
        return
    from exporter.ops.devstack import backing_services  # starts embedded servers only if needed

    with backing_services(ROOT / "var" / "test", force_embedded=False) as urls:
        yield Servers(urls.database_url, urls.redis_url)


async def run_on(url: str, statements: str) -> None:
    """Run ``statements`` on a connection of their own."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statements)
    finally:
        await conn.close()


async def create_template(server_url: str, name: str) -> None:
    """Create the database that tests clone: migrated and seeded, with a table of numbers."""
    await run_on(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    await migrate(url)
    await seed(url, accounts=300, admin_password="admin-password")
    await run_on(
        url,
        "CREATE TABLE test_series (n integer PRIMARY KEY);"
        "INSERT INTO test_series SELECT generate_series(1, 250000);"
        "ANALYZE test_series;",
    )


@pytest.fixture(scope="session")
def template_database(service_urls: Servers) -> Iterator[str]:
    """A database migrated and seeded once per session, cloned for every test."""
    name = f"exporter_tpl_{uuid.uuid4().hex[:12]}"

    async def drop() -> None:
        await run_on(service_urls.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(create_template(service_urls.database_url, name))
    yield name
    asyncio.run(drop())


@pytest.fixture
async def empty_database_url(service_urls: Servers) -> AsyncIterator[str]:
    name = f"exporter_empty_{uuid.uuid4().hex[:12]}"
    await run_on(service_urls.database_url, f'CREATE DATABASE "{name}"')
    yield with_database(service_urls.database_url, name)
    await run_on(service_urls.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Tasks whose count or file bytes kept by the database (migrations 0005, 0008, by kind since
# 0013) differ from what tasks holds.
COUNT_DRIFT = """
SELECT owner_id, kind, status, type, counted, kept, counted_bytes, kept_bytes
FROM (SELECT created_by_id AS owner_id, kind, status, type, count(*) AS counted,
             coalesce(sum(file_size), 0) AS counted_bytes
      FROM tasks GROUP BY 1, 2, 3, 4) AS actual
FULL JOIN (SELECT owner_id, kind, status, type, n AS kept, file_bytes AS kept_bytes
           FROM task_counts WHERE n <> 0 OR file_bytes <> 0) AS kept
    USING (owner_id, kind, status, type)
WHERE (counted, counted_bytes) IS DISTINCT FROM (kept, kept_bytes)
"""


async def _check_task_counts(url: str) -> None:
    """After every test, whatever it did to tasks: the kept counts and bytes match the tasks."""
    conn = await asyncpg.connect(url)
    try:
        drift = [dict(record) for record in await conn.fetch(COUNT_DRIFT)]
    finally:
        await conn.close()
    assert drift == [], f"task_counts drifted from tasks: {drift}"


@pytest.fixture
async def database_url(service_urls: Servers, template_database: str) -> AsyncIterator[str]:
    name = f"exporter_test_{uuid.uuid4().hex[:12]}"
    await run_on(
        service_urls.database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
    )
    url = with_database(service_urls.database_url, name)
    yield url
    try:
        await _check_task_counts(url)
    finally:
        await run_on(service_urls.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def streaming_replica() -> Iterator[StreamingReplica]:
    """A PostgreSQL primary and its streaming replica, of this session alone (a few seconds to
    start), with the template database on both."""
    with running_streaming_replica() as servers:
        asyncio.run(create_template(servers.primary_url(), REPLICATED_TEMPLATE))
        yield servers


@pytest.fixture
async def replicated_database_url(streaming_replica: StreamingReplica) -> AsyncIterator[str]:
    """A fresh database on the streaming replica's primary, already on the replica too; the
    same name on ``streaming_replica.replica_url`` reads it there."""
    server_url = streaming_replica.primary_url()
    name = f"exporter_test_{uuid.uuid4().hex[:12]}"
    await run_on(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{REPLICATED_TEMPLATE}"')
    await streaming_replica.caught_up()
    url = with_database(server_url, name)
    yield url
    try:
        await _check_task_counts(url)
    finally:
        await run_on(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS) for the session, holding the empty bucket ``TEST_BUCKET``."""
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    with running_seaweedfs(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        asyncio.run(create_bucket(server, TEST_BUCKET))
        yield server


@pytest.fixture
def s3_storage_url(seaweedfs: SeaweedFS) -> str:
    """``s3://`` storage of this test alone: a fresh prefix in the session's bucket."""
    return f"s3://{TEST_BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, s3_storage_url: str) -> dict[str, str]:
    """The variables that put a process's storage on ``s3_storage_url`` (for subprocesses)."""
    return {**seaweedfs.env(), "EXPORTER_STORAGE_URL": s3_storage_url}


def settings_for(database_url: str, service_urls: Servers, directory: Path) -> Settings:
    """A test's settings: its database, its own queue, its files under ``directory``."""
    return Settings(
        database_url=database_url,
        redis_url=with_redis_db(service_urls.redis_url, TEST_REDIS_DB),
        secret=SECRET,
        storage_url=(directory / "exports").as_uri(),
        queue_name=f"exporter-test:{uuid.uuid4().hex}",
        time_zone="Asia/Shanghai",
        job_timeout_s=60,
        worker_concurrency=2,
        lease_s=2.0,
        sweep_interval_s=0.5,
        janitor_interval_s=0.5,
        shutdown_grace_s=1,
        handler_modules=failing_handlers.HANDLER_MODULES,
    )


@pytest.fixture
def settings(database_url: str, service_urls: Servers, tmp_path: Path) -> Settings:
    return settings_for(database_url, service_urls, tmp_path)


def on_s3(settings: Settings, server: SeaweedFS, storage_url: str) -> Settings:
    """``settings`` with its storage at ``storage_url`` on ``server``."""
    return settings.model_copy(
        update={
            "storage_url": storage_url,
            # The test's own scratch directory, not var/work (the default with s3 storage).
            "work_dir": settings.scratch_dir,
            "s3_endpoint_url": server.endpoint_url,
            "aws_access_key_id": server.access_key,
            "aws_secret_access_key": SecretStr(server.secret_key),
            "aws_region": server.region,
        }
    )


@pytest.fixture
def s3_settings(settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str) -> Settings:
    """The test's settings with storage on ``s3_storage_url`` (``settings_env`` of
    tests/processes.py turns them into a subprocess's environment)."""
    return on_s3(settings, seaweedfs, s3_storage_url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(redis_settings(settings.redis_url))
    yield redis
    await redis.aclose()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """A real arq worker on the test's queue, running in this event loop."""
    async with running_worker(settings) as arq_worker:
        yield arq_worker


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Real `exporter worker` processes for the test; all killed at the end."""
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    processes = WorkerProcesses(settings, log_dir)
    yield processes
    processes.stop_all()


async def add_account(
    db: asyncpg.Connection[Any],
    username: str,
    permissions: Sequence[str] | None,
    *,
    password: str | None = None,
) -> int:
    """A new active account with a role of its own granting ``permissions`` (None: no role)."""
    role = None
    if permissions is not None:
        role = await db.fetchval(
            "INSERT INTO roles (name, permissions) VALUES ($1, $2) RETURNING id",
            f"role of {username}",
            list(permissions),
        )
    value = await db.fetchval(
        "INSERT INTO accounts (username, status, role_id, password_hash)"
        " VALUES ($1, 'active', $2, $3) RETURNING id",
        username,
        role,
        hash_password(password) if password else None,
    )
    return int(value)


async def set_permissions(db: asyncpg.Connection[Any], username: str, *permissions: str) -> None:
    """Give the role of ``username`` exactly ``permissions``."""
    await db.execute(
        "UPDATE roles SET permissions = $2"
        " WHERE id = (SELECT role_id FROM accounts WHERE username = $1)",
        username,
        list(permissions),
    )


async def account_id(db: asyncpg.Connection[Any], username: str) -> int:
    value = await db.fetchval("SELECT id FROM accounts WHERE username = $1", username)
    assert value is not None, username
    return int(value)


@pytest.fixture
async def admin(client: TestClient[Any, Any], db: asyncpg.Connection[Any]) -> ApiUser:
    return ApiUser(client, issue_token(SECRET, await account_id(db, "admin")))


@pytest.fixture
async def other_user(client: TestClient[Any, Any], db: asyncpg.Connection[Any]) -> ApiUser:
    """A second active account that may do everything, to check that users never see each
    other's tasks."""
    return ApiUser(client, issue_token(SECRET, await add_account(db, "other", ["*"])))
