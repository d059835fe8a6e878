"""Many machines: three worker machines with scratch disks of their own, two API machines, one
store for the files, the shared PostgreSQL and Redis; a worker SIGKILLed mid-export.

Each machine is a process started as a deployment starts it (`exporter worker`, `exporter
serve`), with its own EXPORTER_WORK_DIR and, for workers, its own EXPORTER_WORKER_NAME. Nothing
but the store is shared between them.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import signal
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import pytest

from exporter.auth.tokens import issue_token
from exporter.ops.seaweedfs import SeaweedFS
from exporter.ops.seed import seed
from exporter.storage.deployment import SELECT_DEPLOYMENT
from settings import Settings
from tests.conftest import SECRET, account_id, add_account, on_s3
from tests.processes import WorkerProcesses, api_server, free_port, pid_of, settings_env
from tests.seaweed import object_keys, unfinished_uploads
from tests.support import ApiUser, csv_rows, wait_until, xlsx_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

MACHINES = ("machine-a", "machine-b", "machine-c")
# Enough that the large xlsx is still being written seconds after it started, on 2 cores.
LARGE_ACCOUNTS = 150_000
HOUR_AGO = time.time() - 3600
# A row of a sheet and its first cell: a number (<v>), or an inline string (the header).
FIRST_CELL = re.compile(
    rb'<row r="(\d+)"[^>]*><c r="A\1"[^>]*>(?:<v>([^<]*)</v>|<is><t>([^<]*)</t>)'
)

# Who exports, with what permissions: each may create exports of the types it can read.
USERS = {
    "ana": ["account:read", "export:create"],
    "ben": ["role:read", "export:create"],
    "chen": ["account:read", "role:read", "export:create"],
    "dina": ["*"],
}


@dataclass(frozen=True)
class Export:
    """One export the test asks for, and which rows of its type's table the file must hold."""

    user: str
    type: str
    format: str
    params: dict[str, Any]
    where: str = "true"

    @property
    def ids_sql(self) -> str:
        """The ids of those rows, in the export's order, computed apart from the exporter."""
        table = {"account": "accounts", "role": "roles"}[self.type]
        return f"SELECT id FROM {table} WHERE {self.where} ORDER BY id"


# The first is the large export whose worker is killed; the others are mixed around it.
EXPORTS = [
    Export("ana", "account", "xlsx", {}),
    Export("ben", "role", "csv", {}),
    Export("chen", "account", "csv", {}),
    Export("dina", "account", "xlsx", {"status": "locked"}, "status = 'locked'"),
    Export("ana", "account", "csv", {"status": "disabled"}, "status = 'disabled'"),
    Export("ben", "role", "xlsx", {"keyword": "引号"}, "description LIKE '%引号%'"),
    Export("chen", "role", "csv", {"keyword": "角色 1"}, "description LIKE '%角色 1%'"),
    Export("dina", "role", "csv", {}),
    Export("ana", "account", "xlsx", {"keyword": "user00001"}, "username LIKE '%user00001%'"),
    Export("chen", "account", "xlsx", {"keyword": "张伟"}, "nickname LIKE '%张伟%'"),
    Export("dina", "account", "csv", {"keyword": "@SUM"}, "nickname LIKE '%@SUM%'"),
    Export("ben", "role", "xlsx", {}),
]


@dataclass
class Cluster:
    """The machines of one deployment, as the test drives them."""

    settings: Settings
    workers: WorkerProcesses
    worker_dirs: dict[str, Path]
    api_dirs: list[Path]
    apis: list[aiohttp.ClientSession]

    def start_worker(self, machine: str) -> None:
        self.workers.start(worker_name=machine, work_dir=self.worker_dirs[machine])


@pytest.fixture
def settings(settings: Settings, seaweedfs: SeaweedFS, s3_storage_url: str) -> Settings:
    """The test's settings, for every machine: files in the bucket, and four users with three
    exports or more each."""
    on_bucket = on_s3(settings, seaweedfs, s3_storage_url)
    return on_bucket.model_copy(update={"max_active_per_user": len(EXPORTS)})


@pytest.fixture
async def cluster(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path
) -> AsyncIterator[Cluster]:
    worker_dirs = {machine: tmp_path / machine / "work" for machine in MACHINES}
    api_dirs = [tmp_path / f"api-{number}" / "work" for number in range(2)]
    running = Cluster(settings, workers, worker_dirs, api_dirs, [])
    for machine in MACHINES:
        running.start_worker(machine)
    async with AsyncExitStack() as machines:
        for number, work_dir in enumerate(api_dirs):
            env = {**os.environ, **settings_env(settings, port=free_port(), work_dir=work_dir)}
            url = await machines.enter_async_context(
                api_server(env, tmp_path / f"api-{number}.log")
            )
            running.apis.append(await machines.enter_async_context(aiohttp.ClientSession(url)))
        yield running


def machine_of(worker_id: str) -> str:
    """The machine in a worker's id (``machine:pid:random``)."""
    return worker_id.split(":")[0]


def left_in(work_dir: Path) -> list[str]:
    """Whatever a machine's scratch disk still holds below its deployments' folders."""
    if not work_dir.exists():
        return []
    return sorted(
        str(path.relative_to(work_dir))
        for deployment in work_dir.iterdir()
        for path in deployment.rglob("*")
    )


def xlsx_first_column(content: bytes) -> list[str]:
    """The first cell of each row of the workbook's sheets, header rows included, each sheet's
    rows numbered 1, 2, … once each. Reading a sheet whole checks its CRC, so a cut file fails.

    The cells are found by the shape the writer gives them: over 200,000 rows lxml takes 6-9 s
    here and openpyxl a minute, the pattern half a second. Every row is counted, so none is
    passed over for a shape the pattern does not know.
    """
    values: list[str] = []
    with zipfile.ZipFile(io.BytesIO(content)) as workbook:
        for name in workbook.namelist():
            if not name.startswith("xl/worksheets/sheet"):
                continue
            sheet = workbook.read(name)
            rows = FIRST_CELL.findall(sheet)
            assert len(rows) == sheet.count(b"<row ") > 0, name
            assert [int(number) for number, _, _ in rows] == list(range(1, len(rows) + 1))
            values.extend((number or text).decode() for _, number, text in rows)
    return values


def first_column(file_format: str, content: bytes) -> list[str]:
    """The first column of a downloaded file, below its one header row, as text."""
    if file_format == "csv":
        rows = csv_rows(content)
    elif len(content) < 1_000_000:
        rows = xlsx_rows(content)
    else:  # openpyxl would take a minute over a file this size
        rows = [[value] for value in xlsx_first_column(content)]
    return [str(row[0]) for row in rows[1:]]


def attempts_in(history: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """Each attempt in a task's history: the worker that claimed it, and the status it left
    the task in (completed; pending when its lease ran out and another could take it)."""
    return [
        (worker or "", end)
        for (status, worker), (end, _) in itertools.pairwise(history)
        if status == "running"
    ]


async def events_of(db: asyncpg.Connection[Any], task_id: str) -> list[tuple[str, str | None]]:
    records = await db.fetch(
        "SELECT status, worker_id FROM task_events WHERE task_id = $1 ORDER BY id",
        uuid.UUID(task_id),
    )
    return [(record["status"], record["worker_id"]) for record in records]


async def create_exports(cluster: Cluster, users: dict[str, ApiUser]) -> list[str]:
    """Every export of EXPORTS, created alternately through each API machine: their ids."""
    ids = []
    for number, export in enumerate(EXPORTS):
        user = users[export.user]
        user.client = cluster.apis[number % 2]
        ids.append((await user.create(export.type, export.format, **export.params))["id"])
    return ids


async def kill_mid_way(
    db: asyncpg.Connection[Any], task_id: str
) -> tuple[str, list[psutil.Process]]:
    """SIGKILL the worker running the task once it has saved progress, not yet all of it: the
    killed worker's id, and the processes it had started."""

    async def mid_way() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT worker_id, rows_done, rows_total FROM tasks"
            " WHERE id = $1 AND status = 'running' AND rows_done > 0",
            uuid.UUID(task_id),
        )

    running = await wait_until(mid_way, timeout_s=60, what="the large export to make progress")
    process = psutil.Process(pid_of(running["worker_id"]))
    children = process.children(recursive=True)  # its encoding processes
    process.send_signal(signal.SIGKILL)
    print(f"SIGKILL {running['worker_id']} at {running['rows_done']}/{running['rows_total']} rows")
    assert running["rows_done"] < running["rows_total"]
    return running["worker_id"], children


async def completed(db: asyncpg.Connection[Any], task_ids: list[str]) -> list[asyncpg.Record]:
    """The tasks' rows, in the order of ``task_ids``, once every one of them has completed."""

    async def probe() -> list[asyncpg.Record] | None:
        records = await db.fetch(
            "SELECT id, status, attempts, file_key, file_size FROM tasks"
            " WHERE id = ANY($1::uuid[]) ORDER BY created_at",
            [uuid.UUID(task_id) for task_id in task_ids],
        )
        return records if all(r["status"] == "completed" for r in records) else None

    return await wait_until(probe, timeout_s=90, what="every export to complete")


def assert_completed_once(
    histories: dict[str, list[tuple[str, str | None]]], killed: str, done: list[asyncpg.Record]
) -> None:
    """Every task completed once, its attempts counted by claims. Each attempt the killed
    worker had begun completed before the kill, or was taken over by another machine."""
    for record in done:
        history = histories[str(record["id"])]
        attempts = attempts_in(history)
        ends = [end for _, end in attempts]
        assert ends.count("completed") == 1 and ends[-1] == "completed", history
        assert record["attempts"] == len(ends), history
        for (worker, end), (next_worker, _) in itertools.pairwise(attempts):
            assert (worker, end) == (killed, "pending"), history
            assert machine_of(next_worker) != machine_of(killed), history


async def test_twelve_exports_on_three_workers_and_two_apis_survive_a_killed_worker(
    cluster: Cluster, db: asyncpg.Connection[Any], database_url: str, seaweedfs: SeaweedFS
) -> None:
    await seed(database_url, accounts=LARGE_ACCOUNTS, admin_password=None)
    users = {
        name: ApiUser(cluster.apis[0], issue_token(SECRET, await add_account(db, name, rights)))
        for name, rights in USERS.items()
    }
    expected = [[str(r["id"]) for r in await db.fetch(export.ids_sql)] for export in EXPORTS]
    location = cluster.settings.s3_location
    assert location is not None

    task_ids = await create_exports(cluster, users)
    killed, its_processes = await kill_mid_way(db, task_ids[0])
    victim = machine_of(killed)
    done = await completed(db, task_ids)
    histories = {task_id: await events_of(db, task_id) for task_id in task_ids}

    assert psutil.wait_procs(its_processes, timeout=10)[1] == []  # nothing of it lives on
    assert_completed_once(histories, killed, done)
    # The large export's attempt was the one taken over, by another machine.
    taken_over = attempts_in(histories[task_ids[0]])
    assert [(machine_of(worker), end) for worker, end in taken_over] == [
        (victim, "pending"),
        (machine_of(taken_over[1][0]), "completed"),
    ]
    assert {machine_of(w) for h in histories.values() for w, _ in attempts_in(h)} <= set(MACHINES)

    # Every file, from either API machine: the same bytes, holding the rows asked for.
    for export, task_id, ids, record in zip(EXPORTS, task_ids, expected, done, strict=True):
        user = users[export.user]
        files = []
        for api in cluster.apis:
            user.client = api
            status, content, headers = await user.download(task_id)
            assert status == 200, (task_id, status)
            files.append((content, headers["Content-Disposition"]))
        assert files[0] == files[1]
        assert len(files[0][0]) == record["file_size"]
        assert first_column(export.format, files[0][0]) == ids, export
    assert len(expected[0]) > LARGE_ACCOUNTS
    assert all(expected), "every export holds rows"

    # The bucket keeps one object per task, no more.
    in_bucket = await object_keys(seaweedfs, location.bucket, location.prefix)
    assert in_bucket == sorted(f"{location.prefix}/{record['file_key']}" for record in done)

    # The machine comes back: its janitor removes what the killed attempt left on its disk.
    assert left_in(cluster.worker_dirs[victim]) != []
    for path in cluster.worker_dirs[victim].rglob("*"):
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    cluster.start_worker(victim)
    scratch_dirs = [*cluster.worker_dirs.values(), *cluster.api_dirs]

    async def cleared() -> bool:
        return all(left_in(work_dir) == [] for work_dir in scratch_dirs)

    await wait_until(cleared, timeout_s=30, what="the janitor to clear every scratch disk")

    # An upload the killed worker had begun (a csv goes up while it is written) is aborted by
    # the janitor of any machine once its task is no longer running.
    async def no_unfinished_upload() -> bool:
        return await unfinished_uploads(seaweedfs, location.bucket, location.prefix) == []

    await wait_until(no_unfinished_upload, timeout_s=30, what="no unfinished upload")
    assert await object_keys(seaweedfs, location.bucket, location.prefix) == in_bucket


async def test_a_worker_killed_while_its_csv_goes_up_leaves_one_object_and_no_upload_behind(
    cluster: Cluster, db: asyncpg.Connection[Any], seaweedfs: SeaweedFS
) -> None:
    admin = ApiUser(cluster.apis[0], issue_token(SECRET, await account_id(db, "admin")))
    location = cluster.settings.s3_location
    assert location is not None
    # ~3 kB a row at ~1 ms a row: its first 8 MiB part goes up while the rest is written.
    task = await admin.create("test_slow_wide", "csv", rows=6_000)
    key = f"{location.prefix}/{await db.fetchval(SELECT_DEPLOYMENT)}/{task['id']}.csv"

    async def uploading() -> str | None:
        row = await db.fetchrow(
            "SELECT worker_id FROM tasks WHERE id = $1 AND status = 'running'",
            uuid.UUID(task["id"]),
        )
        begun = await unfinished_uploads(seaweedfs, location.bucket, location.prefix)
        return row["worker_id"] if row is not None and begun == [key] else None

    killed = await wait_until(uploading, timeout_s=30, what="the csv's upload to begin")
    os.kill(pid_of(killed), signal.SIGKILL)
    done = await completed(db, [task["id"]])
    history = await events_of(db, task["id"])
    files = []
    for api in cluster.apis:
        admin.client = api
        status, content, _ = await admin.download(task["id"])
        assert status == 200
        files.append(content)

    assert [(machine_of(worker), end) for worker, end in attempts_in(history)] == [
        (machine_of(killed), "pending"),
        (machine_of(attempts_in(history)[1][0]), "completed"),
    ]
    assert machine_of(attempts_in(history)[1][0]) != machine_of(killed)
    assert files[0] == files[1]
    assert first_column("csv", files[0]) == [str(n) for n in range(1, 6_001)]
    assert len(files[0]) == done[0]["file_size"] > 16 * 1024**2

    # The dead attempt's upload of the same key is aborted by a janitor of a machine still up,
    # and the object the second attempt stored survives it.
    async def no_unfinished_upload() -> bool:
        return await unfinished_uploads(seaweedfs, location.bucket, location.prefix) == []

    await wait_until(no_unfinished_upload, timeout_s=30, what="the dead upload to be aborted")
    assert await object_keys(seaweedfs, location.bucket, location.prefix) == [key]
    status, content, _ = await admin.download(task["id"])
    assert (status, content) == (200, files[0])
