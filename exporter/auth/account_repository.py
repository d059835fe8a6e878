"""Accounts as the identities behind requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from exporter.auth.accounts import Account
from exporter.db import Pool

# An account's permissions are its role's; without a role it has none.
SELECT_ACCOUNTS = """
SELECT a.id, a.username, a.status, coalesce(r.permissions, '{}') AS permissions
FROM accounts a LEFT JOIN roles r ON r.id = a.role_id
"""
SELECT_ACCOUNT = SELECT_ACCOUNTS + "WHERE a.id = $1"
SELECT_ACCOUNT_BY_USERNAME = SELECT_ACCOUNTS + "WHERE a.username = $1"
SELECT_PASSWORD_HASH = "SELECT password_hash FROM accounts WHERE id = $1"
RECORD_LOGIN = "UPDATE accounts SET last_login_at = now() WHERE id = $1"
# The account as SELECT_ACCOUNT reads it, and whether session $2 of it is live: one round trip
# for a cookie request. Wrapped rather than rewritten so the two can never read it differently.
SELECT_SESSION_ACCOUNT = f"""
SELECT account.*,
       EXISTS (SELECT 1 FROM sessions
               WHERE id = $2 AND account_id = $1 AND expires_at > now()) AS session_live
FROM ({SELECT_ACCOUNT}) AS account
"""
# A session for an account that is still active with the password hash just checked, so that a
# status or password change during the check leaves no session behind; and the account's
# expired sessions go.
START_SESSION = """
WITH expired AS (DELETE FROM sessions WHERE account_id = $1 AND expires_at <= now())
INSERT INTO sessions (account_id, expires_at)
SELECT id, now() + make_interval(secs => $3) FROM accounts
WHERE id = $1 AND status = 'active' AND password_hash = $2
RETURNING id
"""
END_SESSION = "DELETE FROM sessions WHERE id = $1"


@dataclass(frozen=True)
class SessionAccount:
    """The account a session cookie names (None if it is gone), and whether the session is live."""

    account: Account | None
    session_live: bool


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
    """Looks accounts up by id or username; starts and ends their pages' sessions."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def get(self, account_id: int) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT, account_id))

    async def get_in_session(self, account_id: int, session_id: uuid.UUID) -> SessionAccount:
        record = await self._pool.fetchrow(SELECT_SESSION_ACCOUNT, account_id, session_id)
        return SessionAccount(_account(record), record is not None and record["session_live"])

    async def get_by_username(self, username: str) -> Account | None:
        return _account(await self._pool.fetchrow(SELECT_ACCOUNT_BY_USERNAME, username))

    async def password_hash(self, account_id: int) -> str | None:
        """The stored argon2 hash; None for an account that cannot sign in with a password."""
        value = await self._pool.fetchval(SELECT_PASSWORD_HASH, account_id)
        return None if value is None else str(value)

    async def record_login(self, account_id: int) -> None:
        await self._pool.execute(RECORD_LOGIN, account_id)

    async def start_session(
        self, account_id: int, password_hash: str | None, *, ttl_s: int
    ) -> uuid.UUID | None:
        """A new session's id; None unless the account is still active with the hash checked."""
        session_id: uuid.UUID | None = await self._pool.fetchval(
            START_SESSION, account_id, password_hash, float(ttl_s)
        )
        return session_id

    async def end_session(self, session_id: uuid.UUID) -> None:
        await self._pool.execute(END_SESSION, session_id)
