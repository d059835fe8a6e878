"""Accounts as the identities behind requests."""

from __future__ import annotations

import asyncpg

from exporter.models import Account

SELECT_ACCOUNT = "SELECT id, username, status FROM accounts WHERE id = $1"
SELECT_ACCOUNT_BY_USERNAME = "SELECT id, username, status FROM accounts WHERE username = $1"


def _account(record: asyncpg.Record | None) -> Account | None:
    if record is None:
        return None
    return Account(id=record["id"], username=record["username"], status=record["status"])


class AccountRepository:
    """Looks accounts up by id or username."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, account_id: int) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT, account_id))

    async def get_by_username(self, username: str) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT_BY_USERNAME, username))
