"""An import's lifecycle is an export's: cancel, a worker killed mid-import, a worker that died
after the commit, retention and delete; and whatever happens, rows are written once or not at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import asyncpg
import pytest
import xlsxwriter

from settings import Settings
from tests.imports import (
    IMPORTS,
    accounts_state,
    csv_bytes,
    form,
    import_finished,
    import_task,
    imported,
    stored_files,
)
from tests.processes import WorkerProcesses, claimed, pid_of
from tests.support import ApiUser, statuses, wait_until
from tests.workers import janitor_round, running_worker

BULK_ROWS = 200_000
BULK_ACCOUNTS = "SELECT count(*) FROM accounts WHERE username LIKE 'bulk\\_%'"
# Two new accounts and one row rejected: applied with on_error=skip, the import has a report.
SMALL = csv_bytes(
    [
        ["用户名", "昵称", "邮箱"],
        ["kept_1", "一", "one@example.com"],
        ["kept_2", "二", "not-an-email"],
        ["kept_3", "三", ""],
    ]
)


@pytest.fixture(scope="module")
def bulk_xlsx(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A workbook of BULK_ROWS new accounts: an import that runs for seconds."""
    path = tmp_path_factory.mktemp("bulk") / "bulk.xlsx"
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["用户名", "昵称", "邮箱"])
    for number in range(1, BULK_ROWS + 1):
        sheet.write_row(number, 0, [f"bulk_{number}", f"批量{number}", f"b{number}@example.com"])
    workbook.close()
    return path.read_bytes()


async def bulk_accounts(db: asyncpg.Connection[Any]) -> int:
    count: int = await db.fetchval(BULK_ACCOUNTS)
    return count


async def post(user: ApiUser, path: str) -> tuple[int, dict[str, Any]]:
    response = await user.client.post(path, headers=user.headers)
    return response.status, await response.json()


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
async def test_cancelling_a_running_apply_import_rolls_it_back(
    admin: ApiUser, db: asyncpg.Connection[Any], bulk_xlsx: bytes
) -> None:
    before = await accounts_state(db)
    task = await imported(admin, form(bulk_xlsx, file_name="bulk.xlsx", mode="apply"))
    await claimed(db, task["id"], min_rows=1)

    status, flagged = await post(admin, f"{IMPORTS}/{task['id']}/cancel")
    done = await import_finished(admin, task["id"])

    assert status == 200, flagged
    assert (flagged["status"], flagged["cancel_requested"]) == ("running", True)
    assert done["status"] == "cancelled"
    assert done["counts"] is None
    assert statuses(done) == ["pending", "running", "cancelled"]
    assert await bulk_accounts(db) == 0
    assert await accounts_state(db) == before


@pytest.mark.slow
async def test_a_worker_killed_mid_import_applies_nothing_and_the_next_attempt_applies_once(
    admin: ApiUser, db: asyncpg.Connection[Any], workers: WorkerProcesses, bulk_xlsx: bytes
) -> None:
    workers.start()
    task = await imported(admin, form(bulk_xlsx, file_name="bulk.xlsx", mode="apply"))
    first = await claimed(db, task["id"], min_rows=50_000)
    victim = next(p for p in workers if p.pid == pid_of(first["worker_id"]))

    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.wait, 30)
    after_kill = await bulk_accounts(db)
    workers.start()
    done = await import_finished(admin, task["id"], timeout_s=90)

    assert after_kill == 0
    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    assert statuses(done) == ["pending", "running", "pending", "running", "completed"]
    assert done["counts"] == {"created": BULK_ROWS, "updated": 0, "unchanged": 0, "rejected": 0}
    assert await bulk_accounts(db) == BULK_ROWS


# What a worker that died between the import's commit and recording the task's end leaves: the
# task running on a lapsed lease, with what the commit recorded (its outcome, its report's key).
DIED_AFTER_COMMIT = """
UPDATE tasks
SET status = 'running', worker_id = 'gone:1:000000', lease_expires_at = now() - interval '1 s',
    finished_at = NULL, file_name = NULL, file_size = NULL, row_count = NULL, attempts = $2
WHERE id = $1
"""


@pytest.mark.parametrize("attempt", [1, 3], ids=["first-attempt", "last-attempt"])
async def test_an_import_whose_worker_died_after_the_commit_completes_without_writing_again(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    attempt: int,
) -> None:
    async with running_worker(settings):
        task = await imported(admin, form(SMALL, mode="apply", on_error="skip"))
        first = await import_finished(admin, task["id"])
        assert first["status"] == "completed", first
        task_id = uuid.UUID(task["id"])
        applied = await accounts_state(db)
        # Changed by hand since: an attempt that wrote the rows again would undo this.
        await db.execute("UPDATE accounts SET nickname = 'edited' WHERE username = 'kept_1'")
        edited = await accounts_state(db)
        # An attempt that read the upload again would fail for want of it.
        upload = next(settings.storage_dir.glob(f"*/{task['id']}.upload.csv"))
        upload.unlink()
        assert attempt <= settings.max_attempts
        await db.execute(DIED_AFTER_COMMIT, task_id, attempt)

        async def completed_again() -> dict[str, Any] | None:
            current = await import_task(admin, task["id"])
            return current if current["status"] != "running" and current["finished_at"] else None

        again = await wait_until(completed_again, what="the sweeper to run the import again")

    assert applied != edited
    assert again["status"] == "completed", again
    assert again["attempts"] == attempt + 1
    assert again["counts"] == first["counts"]
    assert first["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    assert again["has_report"] is True
    assert await accounts_state(db) == edited
    report = await admin.client.get(f"{IMPORTS}/{task['id']}/report", headers=admin.headers)
    assert report.status == 200


async def test_an_applied_import_cannot_be_cancelled_even_before_its_task_says_so(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    async with running_worker(settings):
        task = await imported(admin, form(SMALL, mode="apply", on_error="skip"))
        done = await import_finished(admin, task["id"])
    finished_status, finished_body = await post(admin, f"{IMPORTS}/{task['id']}/cancel")
    # Committed, and not yet recorded as completed: the rows are in, past cancelling.
    await db.execute(
        "UPDATE tasks SET status = 'running', worker_id = 'elsewhere:1:000000',"
        " lease_expires_at = now() + interval '1 hour', finished_at = NULL WHERE id = $1",
        uuid.UUID(task["id"]),
    )

    status, body = await post(admin, f"{IMPORTS}/{task['id']}/cancel")
    after = await import_task(admin, task["id"])

    assert done["status"] == "completed"
    assert (finished_status, finished_body["error"]["code"]) == (409, "invalid_state")
    assert status == 409, body
    assert body["error"]["code"] == "invalid_state"
    assert (after["status"], after["cancel_requested"]) == ("running", False)


@pytest.mark.parametrize(
    ("on_error", "ended", "expired"),
    [("skip", "completed", "expired"), ("abort", "failed", "failed")],
)
async def test_an_imports_upload_and_report_expire_with_it(
    admin: ApiUser, settings: Settings, on_error: str, ended: str, expired: str
) -> None:
    short = settings.model_copy(update={"retention_days": 2 / 86400})  # two seconds
    async with running_worker(short):
        task = await imported(admin, form(SMALL, mode="apply", on_error=on_error))
        done = await import_finished(admin, task["id"])
        kept = stored_files(settings)

        async def files_gone() -> bool:
            return stored_files(settings) == []

        await wait_until(files_gone, timeout_s=10, what="the janitor to remove the files")
    after = await import_task(admin, task["id"])
    report = await admin.client.get(f"{IMPORTS}/{task['id']}/report", headers=admin.headers)

    assert done["status"] == ended, done
    assert kept == sorted([f"{task['id']}.report-1.xlsx", f"{task['id']}.upload.csv"])
    assert after["status"] == expired
    assert after["has_report"] is False
    assert report.status in (404, 410)


async def test_deleting_a_finished_import_removes_its_upload_and_its_report(
    admin: ApiUser, settings: Settings
) -> None:
    async with running_worker(settings):
        task = await imported(admin, form(SMALL, mode="apply", on_error="skip"))
        done = await import_finished(admin, task["id"])
    kept = stored_files(settings)

    response = await admin.client.delete(f"{IMPORTS}/{task['id']}", headers=admin.headers)

    assert done["has_report"] is True
    assert kept == sorted([f"{task['id']}.report-1.xlsx", f"{task['id']}.upload.csv"])
    assert response.status == 204
    assert stored_files(settings) == []


# The user's cancel arrives just after the worker claimed the task, before a heartbeat could
# tell it: the import reaches its commit with the cancel already asked for.
CANCEL_ON_CLAIM = """
CREATE FUNCTION cancel_on_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'pending' AND NEW.status = 'running' THEN
        NEW.cancel_requested := true;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER cancel_on_claim BEFORE UPDATE ON tasks
FOR EACH ROW EXECUTE FUNCTION cancel_on_claim();
"""


async def test_an_import_cancelled_before_its_commit_ends_cancelled_with_nothing_written(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    before = await accounts_state(db)
    await db.execute(CANCEL_ON_CLAIM)
    async with running_worker(settings):
        task = await imported(admin, form(SMALL, mode="apply", on_error="skip"))
        done = await import_finished(admin, task["id"])

    assert done["status"] == "cancelled", done
    assert done["error_code"] is None
    assert await accounts_state(db) == before


@pytest.mark.slow
async def test_an_import_past_its_deadline_fails_and_writes_nothing(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings, bulk_xlsx: bytes
) -> None:
    before = await accounts_state(db)
    hurried = settings.model_copy(update={"job_timeout_s": 1})
    async with running_worker(hurried):
        task = await imported(admin, form(bulk_xlsx, file_name="bulk.xlsx", mode="apply"))
        done = await import_finished(admin, task["id"])

    assert done["status"] == "failed", done
    assert (done["error_code"], done["error_params"]) == ("timed_out", {"seconds": 1})
    assert await bulk_accounts(db) == 0
    assert await accounts_state(db) == before


async def test_the_report_of_an_import_waiting_to_record_its_end_is_not_taken_for_an_orphan(
    admin: ApiUser, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    async with running_worker(settings):
        task = await imported(admin, form(SMALL, mode="apply", on_error="skip"))
        await import_finished(admin, task["id"])
    task_id = uuid.UUID(task["id"])
    # Its worker died after the commit and the sweeper queued it again; no worker has taken it
    # for longer than the janitor leaves a young file alone.
    await db.execute(DIED_AFTER_COMMIT, task_id, 1)
    await db.execute(
        "UPDATE tasks SET status = 'pending', worker_id = NULL, lease_expires_at = NULL"
        " WHERE id = $1",
        task_id,
    )
    report = next(settings.storage_dir.glob(f"*/{task['id']}.report-*.xlsx"))
    long_ago = time.time() - 3600
    os.utime(report, (long_ago, long_ago))

    await janitor_round(settings)

    assert report.exists()
