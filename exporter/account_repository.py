"""Accounts as the identities behind requests."""

from __future__ import annotations

import asyncpg

from exporter.db import Pool
from exporter.models import Account

# An account's permissions are its role's; without a role it has none.
SELECT_ACCOUNTS = """
SELECT a.id, a.username, a.status, coalesce(r.permissions, '{}') AS permissions
FROM accounts a LEFT JOIN roles r ON r.id = a.role_id
"""
SELECT_ACCOUNT = SELECT_ACCOUNTS + "WHERE a.id = $1"
SELECT_ACCOUNT_BY_USERNAME = SELECT_ACCOUNTS + "WHERE a.username = $1"
SELECT_PASSWORD_HASH = "SELECT password_hash FROM accounts WHERE id = $1"
RECORD_LOGIN = "UPDATE accounts SET last_login_at = now() WHERE id = $1"


def _account(record: asyncpg.Record | None) -> Account | None:
    if record is None:
        return None
    return Account(
        id=record["id"],
        username=record["username"],
        status=record["status"],
        permissions=frozenset(record["permissions"]),
    )


class AccountRepository:
    """Looks accounts up by id or username."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def get(self, account_id: int) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT, account_id))

    async def get_by_username(self, username: str) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT_BY_USERNAME, username))

    async def password_hash(self, account_id: int) -> str | None:
        """The stored argon2 hash; None for an account that cannot sign in with a password."""
        value = await self._pool.fetchval(SELECT_PASSWORD_HASH, account_id)
        return None if value is None else str(value)

    async def record_login(self, account_id: int) -> None:
        await self._pool.execute(RECORD_LOGIN, account_id)
