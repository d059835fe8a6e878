"""Webhook deliveries in PostgreSQL: the events a task's end made (migration 0019's trigger),
taken by a worker when due, each attempt recorded, retried with exponential backoff.

A delivery is one event sent to one URL. A worker takes a due one by moving its next attempt past
the attempt's longest possible end (``FOR UPDATE SKIP LOCKED``: two workers never take the same),
so that one killed mid-attempt leaves it due again for another; the attempt and what follows it
(delivered, failed for good, or the time of the next try) are written in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exporter.db import Pool

SIGNATURE_HEADER = "X-Exporter-Signature"
# The longest wait between two attempts: past it, growing further would only delay the last.
MAX_BACKOFF_S = 6 * 3600.0
BACKOFF_FACTOR = 4

CLAIM_DUE = """
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries AS d
SET next_attempt_at = now() + make_interval(secs => $2)
FROM due
WHERE d.id = due.id
RETURNING d.id, d.event_id, d.event_type, d.task_id, d.url, d.created_at, d.attempts, d.body,
          now() AS started_at
"""

# The body is made once, at the first attempt that gets this far: every retry sends it unchanged.
KEEP_BODY = """
UPDATE webhook_deliveries SET body = coalesce(body, $2) WHERE id = $1 RETURNING body
"""

RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, error)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (delivery_id, attempt) DO NOTHING
"""

# $3: delivered, failed (for good) or pending (then due again after $4 seconds).
AFTER_ATTEMPT = """
UPDATE webhook_deliveries
SET attempts = $2, status = $3,
    next_attempt_at = CASE WHEN $3 = 'pending' THEN now() + make_interval(secs => $4)
                           ELSE next_attempt_at END
WHERE id = $1 AND attempts = $2 - 1
"""

SELECT_TASK_LOG = """
SELECT d.event_id, d.event_type, d.url, a.attempt, a.started_at, a.finished_at, a.status_code,
       a.error, d.status
FROM webhook_deliveries AS d
JOIN webhook_attempts AS a ON a.delivery_id = d.id
WHERE d.task_id = $1
ORDER BY d.created_at, d.id, a.attempt
"""

RECORD_DEPLOYMENT_URL = "UPDATE deployment SET webhook_url = $1"


class DeliveryStatus(StrEnum):
    """Where a delivery stands; values are what the database stores."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One event to one URL, as a worker took it for its next attempt (``attempt``)."""

    id: int
    event_id: uuid.UUID
    event_type: str
    task_id: uuid.UUID
    url: str
    created_at: datetime
    attempt: int
    body: str | None
    started_at: datetime


@dataclass(frozen=True)
class AttemptLog:
    """One attempt at telling a URL of a task's event, as the task's answer shows it."""

    event_id: uuid.UUID
    event_type: str
    url: str
    attempt: int
    started_at: datetime
    finished_at: datetime
    status_code: int | None
    error: str | None
    delivery_status: DeliveryStatus


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1): ``base_s``, then four
    times as long each time, at most six hours. With the default 30 s and seven attempts:
    30 s, 2 min, 8 min, 32 min, 2 h 8 min, 6 h: the last attempt about 8 h 50 min after the
    first."""
    return float(min(base_s * BACKOFF_FACTOR ** (attempt - 1), MAX_BACKOFF_S))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Exporter-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDeliveries:
    """The deliveries table, through a pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def record_deployment_url(self, url: str | None) -> None:
        """The URL every task's events go to from now on (None: none), which the trigger of
        migration 0019 reads."""
        await self._pool.execute(RECORD_DEPLOYMENT_URL, url)

    async def claim_due(self, limit: int, hold_s: float) -> list[Delivery]:
        """Up to ``limit`` due deliveries, kept from other workers for ``hold_s`` seconds."""
        records = await self._pool.fetch(CLAIM_DUE, limit, hold_s)
        return [
            Delivery(
                id=r["id"],
                event_id=r["event_id"],
                event_type=r["event_type"],
                task_id=r["task_id"],
                url=r["url"],
                created_at=r["created_at"],
                attempt=r["attempts"] + 1,
                body=r["body"],
                started_at=r["started_at"],
            )
            for r in records
        ]

    async def keep_body(self, delivery_id: int, body: str) -> str:
        """The body this delivery sends: ``body`` unless an earlier attempt kept one."""
        kept: str | None = await self._pool.fetchval(KEEP_BODY, delivery_id, body)
        return kept or body

    async def record(
        self,
        delivery: Delivery,
        *,
        status_code: int | None,
        error: str | None,
        status: DeliveryStatus,
        retry_in_s: float = 0.0,
    ) -> None:
        """Write the attempt and what follows it, together."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                RECORD_ATTEMPT,
                delivery.id,
                delivery.attempt,
                delivery.started_at,
                status_code,
                error,
            )
            await conn.execute(AFTER_ATTEMPT, delivery.id, delivery.attempt, status, retry_in_s)

    async def task_log(self, task_id: uuid.UUID) -> list[AttemptLog]:
        """Every attempt at the task's events, oldest event first."""
        records = await self._pool.fetch(SELECT_TASK_LOG, task_id)
        return [
            AttemptLog(
                event_id=r["event_id"],
                event_type=r["event_type"],
                url=r["url"],
                attempt=r["attempt"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                status_code=r["status_code"],
                error=r["error"],
                delivery_status=DeliveryStatus(r["status"]),
            )
            for r in records
        ]
