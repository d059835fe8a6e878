"""Many machines: three worker machines with scratch disks of their own, two API machines, one
store for the files, the shared PostgreSQL and Redis; a worker SIGKILLed mid-export.

Each machine is a process started as a deployment starts it (`exporter worker`, `exporter
serve`), with its own EXPORTER_WORK_DIR and, for workers, its own EXPORTER_WORKER_NAME. Nothing
but the store is shared between them.
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from lxml import etree

from exporter.auth.tokens import issue_token
from exporter.ops.seed import seed
from settings import Settings
from tests.conftest import SECRET, add_account
from tests.processes import ApiProcesses, WorkerProcesses
from tests.support import ApiUser, csv_rows, wait_until, xlsx_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

MACHINES = ("machine-a", "machine-b", "machine-c")
# Enough that the large xlsx is still being written seconds after it started, on 2 cores.
LARGE_ACCOUNTS = 200_000
HOUR_AGO = time.time() - 3600
SHEET = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
SHEET_ROW, SHEET_VALUE = f"{SHEET}row", f"{SHEET}v"

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
def settings(settings: Settings) -> Settings:
    """The test's settings, for every machine: four users with three exports or more each."""
    return settings.model_copy(update={"max_active_per_user": len(EXPORTS)})


@pytest.fixture
async def cluster(
    settings: Settings, workers: WorkerProcesses, tmp_path: Path
) -> AsyncIterator[Cluster]:
    (tmp_path / "api-logs").mkdir()
    apis = ApiProcesses(settings, tmp_path / "api-logs")
    worker_dirs = {machine: tmp_path / machine / "work" for machine in MACHINES}
    api_dirs = [tmp_path / f"api-{number}" / "work" for number in range(2)]
    running = Cluster(settings, workers, worker_dirs, api_dirs, [])
    try:
        for machine in MACHINES:
            running.start_worker(machine)
        for work_dir in api_dirs:
            running.apis.append(await apis.start(work_dir=work_dir))
        yield running
    finally:
        await apis.stop_all()


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


def xlsx_first_column(content: bytes) -> list[Any]:
    """The first cell of each row of the workbook's sheets, header rows included; each sheet's
    XML is parsed to its end, and its rows must be numbered 1, 2, … once each."""
    values: list[Any] = []
    with zipfile.ZipFile(io.BytesIO(content)) as workbook:
        sheets = [name for name in workbook.namelist() if name.startswith("xl/worksheets/sheet")]
        for sheet in sheets:
            with workbook.open(sheet) as xml:
                for number, (_, row) in enumerate(etree.iterparse(xml, tag=SHEET_ROW), 1):
                    assert row.get("r") == str(number), (sheet, number, row.get("r"))
                    values.append(row[0].findtext(SHEET_VALUE))
                    row.clear()
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


async def events_of(db: asyncpg.Connection[Any], task_id: str) -> list[tuple[str, str | None]]:
    records = await db.fetch(
        "SELECT status, worker_id FROM task_events WHERE task_id = $1 ORDER BY id",
        uuid.UUID(task_id),
    )
    return [(record["status"], record["worker_id"]) for record in records]


async def test_twelve_exports_on_three_workers_and_two_apis_survive_a_killed_worker(
    cluster: Cluster, db: asyncpg.Connection[Any], database_url: str
) -> None:
    await seed(database_url, accounts=LARGE_ACCOUNTS, admin_password=None)
    users = {
        name: ApiUser(cluster.apis[0], issue_token(SECRET, await add_account(db, name, rights)))
        for name, rights in USERS.items()
    }
    expected = [[str(r["id"]) for r in await db.fetch(export.ids_sql)] for export in EXPORTS]

    tasks = []
    for number, export in enumerate(EXPORTS):
        user = users[export.user]
        user.client = cluster.apis[number % 2]  # alternately through each API machine
        tasks.append(await user.create(export.type, export.format, **export.params))
    large = tasks[0]["id"]

    async def mid_way() -> asyncpg.Record | None:
        row = await db.fetchrow(
            "SELECT worker_id, rows_done, rows_total FROM tasks"
            " WHERE id = $1 AND status = 'running' AND rows_done > 0",
            uuid.UUID(large),
        )
        return row

    running = await wait_until(mid_way, timeout_s=60, what="the large export to make progress")
    victim = machine_of(running["worker_id"])
    process = next(p for p in cluster.workers if p.pid == int(running["worker_id"].split(":")[1]))
    process.send_signal(signal.SIGKILL)
    print(f"SIGKILL {victim} at {running['rows_done']} of {running['rows_total']} rows")

    async def all_completed() -> list[asyncpg.Record] | None:
        records = await db.fetch(
            "SELECT id, status, attempts, row_count, file_key, file_size, file_name FROM tasks"
            " WHERE id = ANY($1::uuid[]) ORDER BY created_at",
            [uuid.UUID(task["id"]) for task in tasks],
        )
        return records if all(r["status"] == "completed" for r in records) else None

    done = await wait_until(all_completed, timeout_s=90, what="every export to complete")
    histories = {task["id"]: await events_of(db, task["id"]) for task in tasks}

    # Every task completed once, on a machine still up; an attempt counts each claim.
    for task, record in zip(tasks, done, strict=True):
        history = histories[task["id"]]
        assert [status for status, _ in history].count("completed") == 1, history
        assert history[-1][0] == "completed"
        assert machine_of(history[-1][1] or "") != victim, history
        assert record["attempts"] == [status for status, _ in history].count("running")
    # The killed attempt was taken over by another machine: running there, then completed.
    assert [status for status, _ in histories[large]] == [
        "pending",
        "running",
        "pending",
        "running",
        "completed",
    ]
    assert machine_of(histories[large][1][1] or "") == victim
    assert machine_of(histories[large][3][1] or "") not in ("", victim)
    assert {machine_of(worker or "") for h in histories.values() for _, worker in h} >= set(
        MACHINES
    ) - {victim}

    # Every file, from either API machine: the same bytes, holding the rows asked for.
    for export, task, ids in zip(EXPORTS, tasks, expected, strict=True):
        user = users[export.user]
        files = []
        for api in cluster.apis:
            user.client = api
            status, content, headers = await user.download(task["id"])
            assert status == 200, (task["id"], status)
            files.append((content, headers["Content-Disposition"]))
        assert files[0] == files[1]
        assert first_column(export.format, files[0][0]) == ids, export
    assert len(expected[0]) > LARGE_ACCOUNTS
    assert all(expected), "every export holds rows"

    # The store keeps one file per task, no more.
    stored = sorted(
        str(path.relative_to(cluster.settings.storage_dir))
        for path in cluster.settings.storage_dir.rglob("*")
        if path.is_file() and ".work" not in path.parts
    )
    assert stored == sorted(record["file_key"] for record in done)

    # The machine comes back: its janitor removes what the killed attempt left on its disk.
    left = left_in(cluster.worker_dirs[victim])
    assert left != []
    for path in cluster.worker_dirs[victim].rglob("*"):
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    cluster.start_worker(victim)

    scratch_dirs = [*cluster.worker_dirs.values(), *cluster.api_dirs]

    async def cleared() -> bool:
        return all(left_in(work_dir) == [] for work_dir in scratch_dirs)

    await wait_until(cleared, timeout_s=30, what="the janitor to clear every scratch disk")
