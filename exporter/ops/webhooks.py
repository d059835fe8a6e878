"""The worker's webhook sender: takes due deliveries from PostgreSQL, POSTs each event signed,
records the attempt, and counts it in ``exporter_webhook_deliveries_total{outcome}``.

It runs beside arq's jobs in every worker (started by arq's ``on_startup``): deliveries are rows,
not jobs, so that they outlive Redis and any worker, and any worker may send any of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from exporter import log_context, metrics
from exporter.api.import_schemas import ImportTaskOut
from exporter.api.import_tasks import IMPORTS_PATH
from exporter.api.schemas import TaskOut
from exporter.api.tasks import TASKS_PATH
from exporter.api.webhook_schemas import WebhookEvent
from exporter.db import Pool
from exporter.tasks.models import TASK_COLUMNS, task_from_record
from exporter.tasks.notify_url import AddressPolicy
from exporter.tasks.webhook_http import Outcome, post_webhook
from exporter.tasks.webhooks import (
    SIGNATURE_HEADER,
    Delivery,
    DeliveryStatus,
    WebhookDeliveries,
    backoff_s,
    signature,
)
from settings import Settings

log = logging.getLogger("exporter.webhooks")

# How often an idle sender looks for due deliveries: an event waits half of it on average.
POLL_INTERVAL_S = 0.5
# Deliveries sent at once by one worker.
BATCH = 10
# A taken delivery is kept from other workers this much longer than its attempt may last.
HOLD_MARGIN_S = 30.0

SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"


@dataclass(frozen=True)
class SenderConfig:
    secret: str
    policy: AddressPolicy
    max_attempts: int
    backoff_s: float
    timeout_s: float


class WebhookSender:
    """Sends the due deliveries of one database."""

    def __init__(self, pool: Pool, config: SenderConfig) -> None:
        self._pool = pool
        self._deliveries = WebhookDeliveries(pool)
        self._config = config

    async def send_due(self) -> int:
        """Send every delivery due now (a batch at a time); how many were attempted."""
        hold_s = self._config.timeout_s + HOLD_MARGIN_S
        sent = 0
        while due := await self._deliveries.claim_due(BATCH, hold_s):
            await asyncio.gather(*(self._send(delivery) for delivery in due))
            sent += len(due)
        return sent

    async def _body(self, delivery: Delivery) -> str | None:
        if delivery.body is not None:
            return delivery.body
        record = await self._pool.fetchrow(SELECT_TASK, delivery.task_id)
        if record is None:  # deleted meanwhile: its deliveries went with it
            return None
        task = task_from_record(record)
        shown = (
            ImportTaskOut.of(task, IMPORTS_PATH + "/")
            if task.kind == "import"
            else TaskOut.of(task, TASKS_PATH + "/")
        )
        event = WebhookEvent(
            id=delivery.event_id,
            type=delivery.event_type,
            created_at=delivery.created_at,
            task=shown,
        )
        # The task's logs are what GET of one task adds; an event is about the task itself.
        body = event.model_dump_json(exclude={"task": {"history", "webhooks"}})
        return await self._deliveries.keep_body(delivery.id, body)

    async def _send(self, delivery: Delivery) -> None:
        config = self._config
        token = log_context.task_id.set(delivery.task_id)
        try:
            body = await self._body(delivery)
            if body is None:
                return
            data = body.encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "exporter-webhooks",
                # The answer is barely read, never decompressed.
                "Accept-Encoding": "identity",
                SIGNATURE_HEADER: signature(config.secret, int(time.time()), data),
            }
            result = await post_webhook(
                delivery.url, data, headers, policy=config.policy, timeout_s=config.timeout_s
            )
            metrics.webhook_deliveries.labels(result.outcome.value).inc()
            if result.outcome is Outcome.DELIVERED:
                status = DeliveryStatus.DELIVERED
            elif delivery.attempt >= config.max_attempts:
                status = DeliveryStatus.FAILED
            else:
                status = DeliveryStatus.PENDING
            retry_in_s = backoff_s(delivery.attempt, config.backoff_s)
            await self._deliveries.record(
                delivery,
                status_code=result.status_code,
                error=result.error,
                status=status,
                retry_in_s=retry_in_s,
            )
            log.info(
                "task %s: webhook %s attempt %d to %s: %s%s",
                delivery.task_id,
                delivery.event_type,
                delivery.attempt,
                delivery.url,
                result.outcome.value,
                f" ({result.error})" if result.error else "",
            )
            if status is DeliveryStatus.PENDING:
                log.info("task %s: webhook retried in %.0f s", delivery.task_id, retry_in_s)
            elif status is DeliveryStatus.FAILED:
                log.warning(
                    "task %s: webhook %s to %s given up after %d attempts",
                    delivery.task_id,
                    delivery.event_id,
                    delivery.url,
                    delivery.attempt,
                )
        finally:
            log_context.task_id.reset(token)


async def webhook_sender(pool: Pool, settings: Settings) -> WebhookSender | None:
    """Record the deployment's webhook URL for the trigger; the sender of this worker, or None
    when no secret is set (then no task may carry a notify_url, nor the deployment a URL)."""
    await WebhookDeliveries(pool).record_deployment_url(settings.webhook_url)
    if settings.webhook_secret is None:
        return None
    config = SenderConfig(
        secret=settings.webhook_secret.get_secret_value(),
        policy=AddressPolicy(settings.webhook_allow_hosts),
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
        timeout_s=settings.webhook_timeout_s,
    )
    return WebhookSender(pool, config)
