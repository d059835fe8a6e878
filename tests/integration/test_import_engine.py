"""Imports run as tasks on the real database and storage: rows checked and written (or not) as
the mode and on-error say, reported row by row, and an export imports back unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import xlsxwriter

from exporter.auth.accounts import Account
from exporter.db import Pool, create_pool
from exporter.exports.columns import Column, ColumnKind
from exporter.exports.registry import ExportHandler, ExportParams, load_handlers
from exporter.exports.row_query import RowQuery
from exporter.imports.engine import ImportSettings, stage_and_check
from exporter.imports.kind import ImportKind
from exporter.imports.parallel_rows import ParallelReading
from exporter.imports.readers import ReadLimits, UploadFormat, upload_format
from exporter.imports.registry import (
    ImportField,
    ImportRegistry,
    build_import_handler,
    import_registry,
)
from exporter.imports.requests import with_upload
from exporter.storage.deployment import deployment_id
from exporter.storage.local import LocalStorage
from exporter.storage.scratch import ScratchSpace
from exporter.tasks.kinds import Progress, TaskKinds, Upload
from exporter.tasks.models import Task, TaskStatus
from exporter.tasks.repository import NewTask, Quotas, TaskRepository
from exporter.tasks.runner import RunnerConfig, TaskRunner
from settings import Settings
from tests.conftest import account_id
from tests.imports import ACCOUNT_HEADER, accounts_state, write_csv, write_xlsx
from tests.support import ApiUser, wait_until, xlsx_rows

TIME_ZONE = "Asia/Shanghai"
QUOTAS = Quotas(max_active_per_user=10, max_kept_bytes_per_user=10**9, queue_full=False)


@dataclass
class Importer:
    """Runs imports through the task lifecycle as the worker does."""

    tasks: TaskRepository
    runner: TaskRunner
    imports: ImportKind
    storage: LocalStorage
    owner: Account

    async def run(
        self, path: Path, type_name: str = "account", mode: str = "apply", on_error: str = "abort"
    ) -> Task:
        content = path.read_bytes()
        task_id = uuid.uuid4()
        file_format = upload_format(path, ReadLimits())
        staged = path.with_name(f"staged-{task_id}")
        staged.write_bytes(content)
        stored = await self.storage.publish(staged, f"{task_id}.upload.{file_format}")
        spec = self.imports.validate(
            self.owner, {"type": type_name, "mode": mode, "on_error": on_error}
        )
        spec = with_upload(
            spec,
            file_format,
            hashlib.sha256(content).hexdigest(),
            Upload(stored.key, path.name, stored.size),
        )
        creation = await self.tasks.create(
            NewTask(self.owner.id, spec, task_id=task_id), self.imports, QUOTAS
        )
        assert creation.created
        await self.runner.run(task_id)
        return await self.tasks.get_own(task_id, self.owner.id, self.imports)

    async def report(self, task: Task) -> list[list[Any]]:
        assert task.file_key is not None
        path = self.storage._path(task.file_key)
        assert path is not None
        return xlsx_rows(path.read_bytes())


@contextlib.asynccontextmanager
async def running_imports(
    settings: Settings,
    db: asyncpg.Connection[Any],
    handlers: ImportRegistry,
    reading: ParallelReading | None = None,
) -> AsyncIterator[Importer]:
    """Imports of ``handlers``' types run in this process, with the tests' time zone."""
    pool: Pool = await create_pool(settings.database_url)
    try:
        deployment = await deployment_id(pool)
        storage = LocalStorage(settings.storage_dir, deployment)
        imports = ImportKind(
            handlers,
            pool,
            storage,
            ImportSettings(TIME_ZONE, ReadLimits(), reading or ParallelReading()),
        )
        runner = TaskRunner(
            TaskRepository(pool),
            pool,
            storage,
            ScratchSpace(settings.scratch_dir, deployment),
            TaskKinds(imports),
            RunnerConfig(worker_id="import-test", lease_s=30, max_attempts=1, default_timeout_s=60),
        )
        owner = Account(await account_id(db, "admin"), "admin", "active", frozenset({"*"}))
        yield Importer(TaskRepository(pool), runner, imports, storage, owner)
    finally:
        await pool.close()


@pytest.fixture
async def importer(settings: Settings, db: asyncpg.Connection[Any]) -> AsyncIterator[Importer]:
    load_handlers()
    async with running_imports(settings, db, import_registry) as importer:
        yield importer


@pytest.fixture
async def parallel_importer(
    settings: Settings, db: asyncpg.Connection[Any]
) -> AsyncIterator[Importer]:
    """Reads every xlsx upload with two processes, however small."""
    load_handlers()
    async with running_imports(settings, db, import_registry, ParallelReading(2, 0)) as importer:
        yield importer


async def test_an_exported_csv_imports_back_with_every_row_unchanged(
    importer: Importer, admin: ApiUser, worker: Any, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before = await accounts_state(db)
    exported = write_bytes(tmp_path / "accounts.csv", await admin.export("account", "csv"))
    total = await db.fetchval("SELECT count(*) FROM accounts")

    task = await importer.run(exported)

    assert task.status is TaskStatus.COMPLETED, (task.error, task.outcome)
    assert task.outcome is not None
    assert task.outcome["counts"] == {
        "created": 0,
        "updated": 0,
        "unchanged": total,
        "rejected": 0,
    }
    assert task.outcome["applied"] is True
    assert task.row_count == total
    assert task.file_key is None
    assert await accounts_state(db) == before


async def test_an_exported_xlsx_imports_back_with_every_row_unchanged(
    importer: Importer, admin: ApiUser, worker: Any, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before = await accounts_state(db)
    exported = write_bytes(tmp_path / "accounts.xlsx", await admin.export("account", "xlsx"))
    task = await importer.run(exported)

    assert task.status is TaskStatus.COMPLETED, (task.outcome or {}).get("errors")
    assert task.outcome is not None
    counts = task.outcome["counts"]
    assert counts["unchanged"] == await db.fetchval("SELECT count(*) FROM accounts")
    assert counts["created"] == counts["updated"] == counts["rejected"] == 0
    assert await accounts_state(db) == before


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def mixed_rows() -> list[list[str]]:
    """A header and rows that create, update, keep, and break the rules in every way."""
    return [
        ACCOUNT_HEADER,
        ["new_user_1", "新人", "new1@example.com", "13800000001", "正常", ""],
        ["user0000001", "改了昵称", "user1@example.com", "", "disabled", ""],
        ["new_user_2", "", "", "", "锁定", "no such role"],
        ["new_user_3", "x", "not-an-email", "", "正常", ""],
        ["new_user_4", "y", "", "", "gone", ""],
        ["new_user_1", "again", "", "", "正常", ""],
        ["", "no key", "", "", "正常", ""],
    ]


async def test_validate_counts_what_apply_would_do_and_writes_nothing(
    importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before = await accounts_state(db)

    task = await importer.run(write_csv(tmp_path / "mixed.csv", mixed_rows()), mode="validate")

    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.outcome is not None
    assert task.outcome["counts"] == {"created": 1, "updated": 1, "unchanged": 0, "rejected": 5}
    assert task.outcome["applied"] is False
    assert await accounts_state(db) == before
    errors = [(e["row"], e["column"], e["code"]) for e in task.outcome["errors"]]
    assert errors == [
        (4, "角色", "unknown_reference"),
        (5, "邮箱", "invalid_format"),
        (6, "状态", "unknown_choice"),
        (7, "用户名", "duplicate_key"),
        (8, "用户名", "required"),
    ]
    assert task.outcome["errors"][3]["params"] == {
        "value": "new_user_1",
        "first_row": 2,
        "first_sheet": "csv",
    }
    assert task.outcome["errors"][0]["message"] == "角色 'no such role' does not exist"


async def test_apply_with_abort_writes_nothing_and_fails_with_the_report(
    importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before = await accounts_state(db)

    task = await importer.run(write_csv(tmp_path / "mixed.csv", mixed_rows()))

    assert task.status is TaskStatus.FAILED
    assert task.error_code == "rows_rejected"
    assert task.error == "5 rows rejected; nothing was imported"
    assert await accounts_state(db) == before
    report = await importer.report(task)
    assert report[0] == [*ACCOUNT_HEADER, "错误原因"]
    assert [row[0] for row in report[1:]] == [
        "new_user_2",
        "new_user_3",
        "new_user_4",
        "new_user_1",
        None,
    ]
    assert report[1][-1] == "角色“no such role”不存在"
    assert report[4][-1] == "用户名“new_user_1”重复，第一次出现在第 2 行"


async def test_apply_with_skip_writes_the_valid_rows_and_reports_the_rest(
    importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    task = await importer.run(write_csv(tmp_path / "mixed.csv", mixed_rows()), on_error="skip")

    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.outcome is not None
    assert task.outcome["applied"] is True
    created = await db.fetchrow(
        "SELECT nickname, email, phone, status, role_id, password_hash FROM accounts"
        " WHERE username = 'new_user_1'"
    )
    assert dict(created) == {
        "nickname": "新人",
        "email": "new1@example.com",
        "phone": "13800000001",
        "status": "active",
        "role_id": None,
        "password_hash": None,
    }
    updated = await db.fetchrow(
        "SELECT nickname, status, phone FROM accounts WHERE username = 'user0000001'"
    )
    assert dict(updated) == {"nickname": "改了昵称", "status": "disabled", "phone": None}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM accounts WHERE username IN ('new_user_2', 'new_user_3',"
            " 'new_user_4')"
        )
        == 0
    )
    assert len(await importer.report(task)) == 6


async def test_an_xlsx_read_by_two_processes_is_checked_and_reported_as_read_by_one(
    importer: Importer, parallel_importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before = await accounts_state(db)
    # Sheets of many runs each, rows rejected in both, a key repeated across them.
    bulk = [[f"bulk_{i}", f"昵称{i}", f"b{i}@example.com", "", "正常", ""] for i in range(3000)]
    first, *rows = mixed_rows()
    upload = write_xlsx(
        tmp_path / "mixed.xlsx",
        {
            "一": [first, *bulk[:1500], *rows, *bulk[1500:2000]],
            "notes": [["not accounts"]],
            "二": [first, *bulk[2000:], *rows[2:], bulk[10]],
        },
    )

    in_order = await importer.run(upload)
    in_parallel = await parallel_importer.run(upload)

    assert in_order.status is in_parallel.status is TaskStatus.FAILED
    assert in_order.outcome is not None and in_parallel.outcome is not None
    # Everything but where each report is kept and its size (its files are stamped with the
    # time they were written): its rows are compared below.
    unstamped = {"report_key": None, "report_size": None}
    assert {**in_parallel.outcome, **unstamped} == {**in_order.outcome, **unstamped}
    assert in_order.outcome["counts"]["rejected"] == 11
    assert {error["sheet"] for error in in_order.outcome["errors"]} == {"一", "二"}
    assert await importer.report(in_parallel) == await importer.report(in_order)
    assert await accounts_state(db) == before


async def test_a_column_left_out_is_untouched_and_roles_are_found_by_name(
    importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    role = await db.fetchrow("SELECT id, name FROM roles ORDER BY id LIMIT 1")
    before = await db.fetchrow(
        "SELECT nickname, email FROM accounts WHERE username = 'user0000002'"
    )

    task = await importer.run(
        write_xlsx(
            tmp_path / "roles.xlsx",
            {"Sheet1": [["Username", "Role"], ["user0000002", role["name"]]]},
        )
    )

    assert task.status is TaskStatus.COMPLETED, task.error
    after = await db.fetchrow(
        "SELECT nickname, email, role_id FROM accounts WHERE username = 'user0000002'"
    )
    assert (after["nickname"], after["email"]) == (before["nickname"], before["email"])
    assert after["role_id"] == role["id"]


async def test_roles_import_permissions_split_at_commas(
    importer: Importer, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    task = await importer.run(
        write_csv(
            tmp_path / "roles.csv",
            [
                ["名称", "描述", "权限"],
                ["导入角色", "from a file", "account:read, export:create"],
                ["坏角色", "", "account:read,not a permission"],
            ],
        ),
        type_name="role",
        on_error="skip",
    )

    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.outcome is not None
    assert task.outcome["counts"]["created"] == 1
    assert task.outcome["errors"][0]["code"] == "invalid_item"
    assert task.outcome["errors"][0]["params"] == {"item": "not a permission"}
    role = await db.fetchrow("SELECT description, permissions FROM roles WHERE name = '导入角色'")
    assert (role["description"], role["permissions"]) == (
        "from a file",
        ["account:read", "export:create"],
    )


EVENTS = """
CREATE TABLE test_events (name text PRIMARY KEY, happened_at timestamptz NOT NULL);
INSERT INTO test_events VALUES ('kept', '2026-01-31 08:05:09.123456+08');
"""


def events_handlers() -> ImportRegistry:
    """An import type with a date column, registered nowhere else."""
    export = ExportHandler(
        "test_event",
        "事件",
        ExportParams,
        (
            Column("名称", "e.name", field="name"),
            Column("发生时间", "e.happened_at", ColumnKind.DATETIME, field="happened_at"),
        ),
        lambda params: RowQuery("test_events e"),
        "test_event:read",
    )
    handlers = ImportRegistry()
    handlers.add(
        build_import_handler(
            export,
            table="test_events",
            key="name",
            fields=[ImportField("name", required=True), ImportField("happened_at")],
        )
    )
    return handlers


async def test_dates_are_read_from_excel_dates_serials_and_text_in_common_forms(
    settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    await db.execute(EVENTS)
    rows: list[list[Any]] = [
        ["名称", "发生时间"],
        ["kept", "2026-01-31 08:05:09"],
        ["excel", datetime.datetime(2026, 2, 1, 9, 30)],
        ["serial", 46054.5],
        ["slashes", "2026/2/3"],
        ["chinese", "2026年2月4日 7:08"],
        ["dots", "2026.02.05 23:59:59"],
        ["february 30", "2026-02-30"],
        ["words", "next tuesday"],
    ]
    path = tmp_path / "events.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for line, (name, value) in enumerate(rows):
        sheet.write_string(line, 0, name)
        if isinstance(value, datetime.datetime):
            sheet.write_datetime(line, 1, value, date_format)
        elif isinstance(value, float):
            sheet.write_number(line, 1, value)
        else:
            sheet.write_string(line, 1, value)
    workbook.close()

    async with running_imports(settings, db, events_handlers()) as importer:
        task = await importer.run(path, type_name="test_event", on_error="skip")

    assert task.status is TaskStatus.COMPLETED, task.error
    assert task.outcome is not None
    assert task.outcome["counts"] == {"created": 5, "updated": 0, "unchanged": 1, "rejected": 2}
    assert [(e["row"], e["code"]) for e in task.outcome["errors"]] == [
        (8, "invalid_date"),
        (9, "invalid_date"),
    ]
    stored = await db.fetch(
        "SELECT name, to_char(happened_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI:SS')"
        " AS local FROM test_events ORDER BY name"
    )
    assert {r["name"]: r["local"] for r in stored} == {
        "chinese": "2026-02-04 07:08:00",
        "dots": "2026-02-05 23:59:59",
        "excel": "2026-02-01 09:30:00",
        "kept": "2026-01-31 08:05:09",
        "serial": "2026-02-01 12:00:00",
        "slashes": "2026-02-03 00:00:00",
    }


ROLES_STATE = """
SELECT md5(string_agg(concat_ws('|', id, name, description, permissions::text),
                      E'\n' ORDER BY id))
FROM roles
"""


async def test_csv_bare_quote_in_a_cell_is_read_as_excel_reads_it(
    importer: Importer,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    # Excel (and the Python reader used for the fallback and the report) read 5"7 literally;
    # COPY starts a quoted section at the first '"' and runs on to the next one, two lines on.
    path = tmp_path / "quotes.csv"
    path.write_bytes('用户名,昵称\r\nquote_a,5"7\r\nquote_b,x"y\r\nquote_c,z\r\n'.encode())

    task = await importer.run(path)

    assert task.status is TaskStatus.COMPLETED, (task.error, task.outcome)
    rows = await db.fetch(
        "SELECT username, nickname FROM accounts WHERE username LIKE 'quote_%' ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("quote_a", '5"7'),
        ("quote_b", 'x"y'),
        ("quote_c", "z"),
    ]


async def test_csv_line_holding_only_backslash_dot_does_not_end_the_file(
    importer: Importer,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    # COPY FROM STDIN (csv) takes a line of just \. as the end of the data and drops the rest
    # (PostgreSQL < 18), silently: every row after it is neither imported nor rejected.
    path = tmp_path / "marker.csv"
    path.write_bytes("用户名,昵称\r\nmark_a,a\r\n\\.\r\nmark_b,b\r\nmark_c,c\r\n".encode())

    task = await importer.run(path, mode="validate")

    assert task.outcome is not None
    assert sum(task.outcome["counts"].values()) == 4, task.outcome["counts"]


async def test_csv_bare_quote_row_numbers_and_report_follow_the_file(
    importer: Importer,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    # quote_c is row 4 in Excel; COPY merged rows 2 and 3, so it says row 3, and the report
    # (which reads the file again with Python's csv module) shows quote_b's cells instead.
    path = tmp_path / "quotes.csv"
    path.write_bytes(
        '用户名,昵称,邮箱\r\nquote_a,5"7,\r\nquote_b,x"y,\r\nquote_c,z,bad-email\r\n'.encode()
    )

    task = await importer.run(path, mode="validate")

    assert task.outcome is not None
    report = await importer.report(task)
    rows = [(e["row"], e["code"]) for e in task.outcome["errors"]]
    assert (rows, report[1][0]) == ([(4, "invalid_format")], "quote_c"), report


async def test_a_role_without_permissions_imports_back_unchanged(
    importer: Importer,
    admin: ApiUser,
    worker: Any,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    # roles.permissions is NOT NULL DEFAULT '{}': an empty list is a valid stored value, which
    # the export writes as an empty cell; the import rejects that cell as "required".
    before = await db.fetchval(ROLES_STATE)
    exported = write_bytes(tmp_path / "roles.csv", await admin.export("role", "csv"))

    task = await importer.run(exported, type_name="role")

    assert task.status is TaskStatus.COMPLETED, (task.outcome or {}).get("errors")
    assert await db.fetchval(ROLES_STATE) == before


async def test_a_role_name_with_outer_spaces_imports_back_on_accounts(
    importer: Importer,
    admin: ApiUser,
    worker: Any,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    # The key of a role is matched as written (a role " ops " can be imported), but a
    # reference to it is trimmed before the lookup: its accounts no longer import back.
    role = await db.fetchval("INSERT INTO roles (name) VALUES (' ops ') RETURNING id")
    await db.execute("UPDATE accounts SET role_id = $1 WHERE username = 'user0000001'", role)
    before = await accounts_state(db)
    exported = write_bytes(tmp_path / "accounts.csv", await admin.export("account", "csv"))

    task = await importer.run(exported)

    assert task.status is TaskStatus.COMPLETED, (task.outcome or {}).get("errors")
    assert await accounts_state(db) == before


async def test_two_imports_creating_the_same_account_at_once_both_finish_cleanly(
    importer: Importer,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
) -> None:
    rows = "用户名,昵称\r\n" + "".join(f"race_{n},n{n}\r\n" for n in range(20000))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_bytes(rows.encode())
    second.write_bytes((rows + "race_extra,x\r\n").encode())

    tasks = await asyncio.gather(importer.run(first), importer.run(second))

    for task in tasks:
        assert task.status is TaskStatus.COMPLETED, (task.error_code, task.error)


async def test_a_cancelled_import_ends_its_reading_processes_within_a_second(
    db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    load_handlers()
    # More rows than the processes' pipes hold: neither can have sent all its share yet.
    rows = [[f"bulk_{i}", f"昵称{i}", f"b{i}@example.com", "", "正常", ""] for i in range(60000)]
    upload = write_xlsx(tmp_path / "many.xlsx", {"一": [ACCOUNT_HEADER, *rows]})
    progress = Progress()

    async def stage() -> None:
        async with db.transaction():
            await stage_and_check(
                db,
                import_registry.get("account"),
                upload,
                UploadFormat.XLSX,
                ImportSettings("UTC", ReadLimits(), ParallelReading(2, 0)),
                progress,
                writes=False,
            )

    async def rows_staged() -> int:
        return progress.done

    others = set(multiprocessing.active_children())
    staging = asyncio.create_task(stage())
    await wait_until(rows_staged, what="rows staged")
    assert len(set(multiprocessing.active_children()) - others) == 2
    cancelled_at = time.monotonic()
    staging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await staging

    assert not set(multiprocessing.active_children()) - others
    assert time.monotonic() - cancelled_at < 1
