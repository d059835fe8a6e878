"""A create request's ``notify_url``, checked against the deployment: webhooks must be set up,
and the URL's host must not be, nor resolve now to, an address webhooks may not reach."""

from __future__ import annotations

import asyncio
import logging

from exporter.errors import FieldProblem, InvalidParams
from exporter.tasks.notify_url import AddressPolicy, AddressRefused, resolve_target
from settings import Settings

log = logging.getLogger("exporter.api")

# A create waits this long at most for the name to resolve; past it, delivery checks it.
RESOLVE_TIMEOUT_S = 2.0


async def check_notify_target(url: str, settings: Settings) -> None:
    """InvalidParams naming ``notify_url`` if the deployment cannot sign webhooks or the URL's
    address is refused. A name that does not resolve now is let through: each delivery
    resolves it again and checks the addresses then."""
    if settings.webhook_secret is None:
        raise InvalidParams(
            "invalid request: notify_url: webhooks are not set up on this deployment",
            [
                FieldProblem(
                    "notify_url",
                    "webhooks are not set up on this deployment (EXPORTER_WEBHOOK_SECRET)",
                    "webhooks_disabled",
                )
            ],
        )
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            await resolve_target(url, AddressPolicy(settings.webhook_allow_hosts))
    except AddressRefused as exc:
        raise InvalidParams(
            f"invalid request: notify_url: {exc}",
            [FieldProblem("notify_url", str(exc), "notify_url_not_allowed")],
        ) from None
    except (OSError, TimeoutError) as exc:
        log.info("notify_url %s does not resolve now (%s); checked again at delivery", url, exc)
