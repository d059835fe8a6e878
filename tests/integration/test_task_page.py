"""The task list, whose JSON PostgreSQL writes, says exactly what TaskOut says of each task."""

from __future__ import annotations

from typing import Any

import asyncpg

from exporter.api.schemas import TaskOut
from tests.support import ApiUser

# One task in each state, with the fields that state fills, and text that JSON must escape.
STATES = {
    "pending": "",
    "running": "status = 'running', started_at = now(), attempts = 1, rows_done = 1500,"
    " rows_total = 4000, worker_id = 'w-1', cancel_requested = true",
    "completed": "status = 'completed', started_at = now(), finished_at = now(), attempts = 2,"
    " file_name = '账号 \"列表\"\\.xlsx', file_key = 'a/b.xlsx', file_size = 1,"
    " row_count = 0, rows_done = 0, rows_total = 0",
    "failed": "status = 'failed', started_at = now(), finished_at = now(), attempts = 3,"
    " error = E'line one\\n\\ttab \"quoted\" \\\\ back'",
    "cancelled": "status = 'cancelled', finished_at = now(), cancel_requested = true,"
    " status_note = 'cancelled before it started'",
    "expired": "status = 'expired', finished_at = now(), file_name = 'x.csv'",
}


async def test_each_listed_task_equals_the_tasks_own_answer_in_every_state(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    ids = {}
    for number, (state, changes) in enumerate(STATES.items()):
        task = await admin.create(
            "account", "csv", keyword=f'张三 "{number}" \\ </script>', status="active"
        )
        if changes:
            await db.execute(f"UPDATE tasks SET {changes} WHERE id = $1", task["id"])
        ids[state] = task["id"]
    # Past 2^53, which a JSON number in JavaScript cannot hold; only now, since a file this large
    # is over the kept-bytes cap and would refuse the creates above.
    await db.execute(
        "UPDATE tasks SET file_size = 9007199254740993 WHERE id = $1", ids["completed"]
    )

    status, page = await admin.get("/api/export-tasks")

    assert status == 200
    assert page["total"] == len(STATES)
    assert [item["status"] for item in page["items"]] == list(reversed(STATES))
    for item in page["items"]:
        own = await admin.task(item["id"])
        assert list(item) == list(TaskOut.model_fields)
        assert TaskOut.model_validate(item) == TaskOut.model_validate(
            {**own, "history": None, "webhooks": None}
        )
    completed = next(item for item in page["items"] if item["id"] == ids["completed"])
    assert completed["download_url"] == f"/api/export-tasks/{ids['completed']}/download"
    assert completed["file_size"] == 9007199254740993
    assert all(item["download_url"] is None for item in page["items"] if item is not completed)


async def test_a_status_filter_lists_only_that_status_and_counts_it(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    tasks = []
    for number in range(5):
        tasks.append(await admin.create("account", "csv", keyword=str(number)))
        if number in (1, 2, 3):
            await db.execute("UPDATE tasks SET status = 'failed' WHERE id = $1", tasks[-1]["id"])

    _, failed = await admin.get("/api/export-tasks?status=failed&page_size=2")
    _, failed_rest = await admin.get("/api/export-tasks?status=failed&page_size=2&page=2")
    _, roles = await admin.get("/api/export-tasks?status=failed&type=role")

    assert failed["total"] == 3
    listed = [item["id"] for item in failed["items"] + failed_rest["items"]]
    assert listed == [task["id"] for task in reversed(tasks[1:4])]
    assert roles == {"items": [], "total": 0, "page": 1, "page_size": 20}
