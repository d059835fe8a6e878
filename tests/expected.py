"""What an export must contain, computed from the database independently of the exporter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

ZONE = ZoneInfo("Asia/Shanghai")
STATUS_LABELS = {"active": "正常", "disabled": "禁用", "locked": "锁定"}
ACCOUNT_HEADER = [
    "ID",
    "用户名",
    "昵称",
    "邮箱",
    "手机号",
    "状态",
    "角色",
    "创建时间",
    "最后登录时间",
]
ROLE_HEADER = ["ID", "名称", "描述", "权限", "账号数", "创建时间"]

ACCOUNTS = """
SELECT a.id, a.username, a.nickname, a.email, a.phone, a.status, r.name AS role,
       a.created_at, a.last_login_at
FROM accounts a LEFT JOIN roles r ON r.id = a.role_id
WHERE {where}
ORDER BY a.id
"""

ROLES = """
SELECT r.id, r.name, r.description, array_to_string(r.permissions, ',') AS permissions,
       (SELECT count(*) FROM accounts a WHERE a.role_id = r.id) AS accounts, r.created_at
FROM roles r ORDER BY r.id
"""


def local(value: datetime | None) -> datetime | None:
    """A stored instant as the file shows it: Shanghai wall time, whole seconds."""
    if value is None:
        return None
    return value.astimezone(ZONE).replace(tzinfo=None, microsecond=0)


def account_row(r: asyncpg.Record) -> list[Any]:
    """One account as an xlsx reader returns it (None for empty cells)."""
    return [
        r["id"],
        r["username"],
        r["nickname"],
        r["email"],
        r["phone"],
        STATUS_LABELS[r["status"]],
        r["role"],
        local(r["created_at"]),
        local(r["last_login_at"]),
    ]


async def account_rows(
    db: asyncpg.Connection[Any], where: str = "TRUE", *args: Any
) -> list[list[Any]]:
    """Rows as an xlsx reader returns them (None for empty cells)."""
    return [account_row(r) for r in await db.fetch(ACCOUNTS.format(where=where), *args)]


async def each_account_row(db: asyncpg.Connection[Any]) -> AsyncIterator[list[Any]]:
    """Every account as :func:`account_rows` has it, one at a time: for more rows than a test
    holds. Inside a transaction (a cursor's condition)."""
    async for record in db.cursor(ACCOUNTS.format(where="TRUE"), prefetch=10_000):
        yield account_row(record)


async def role_rows(db: asyncpg.Connection[Any]) -> list[list[Any]]:
    records = await db.fetch(ROLES)
    return [[*list(r.values())[:5], local(r["created_at"])] for r in records]


_PLAIN_NUMBER = re.compile(r"[+-][0-9]+(\.[0-9]+)?")


def csv_guard(text: str) -> str:
    """The formula-injection rule, written out again independently of the SQL."""
    if text[:1] in ("=", "@", "\t", "\r", "\n"):
        return "'" + text
    if text[:1] in ("+", "-") and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def as_csv(row: list[Any], text_columns: set[int]) -> list[str]:
    """An xlsx-shaped expected row as the csv must spell it."""
    cells = []
    for index, value in enumerate(row):
        if value is None:
            cells.append("")
        elif isinstance(value, datetime):
            cells.append(value.strftime("%Y-%m-%d %H:%M:%S"))
        elif index in text_columns:
            cells.append(csv_guard(str(value)))
        else:
            cells.append(str(value))
    return cells


ACCOUNT_TEXT_COLUMNS = {1, 2, 3, 4, 5, 6}
ROLE_TEXT_COLUMNS = {1, 2, 3}
