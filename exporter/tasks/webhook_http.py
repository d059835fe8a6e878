"""One webhook POST, sent safely: to the address that was checked, without following
redirects, within short timeouts, reading almost nothing of the answer."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from exporter.tasks.notify_url import AddressPolicy, AddressRefused, Target, resolve_target

# Connecting takes a round trip or two: a receiver slower than this is down for our purposes.
CONNECT_TIMEOUT_S = 3.0
# What aiohttp may buffer of an answer: its status line and headers are all a delivery needs.
READ_BUFFER_BYTES = 2048
# Of the body, at most this much is read, to show in the log of a refused delivery.
BODY_PEEK_BYTES = 256


class Outcome(StrEnum):
    """How an attempt ended: the ``outcome`` label of ``exporter_webhook_deliveries_total``."""

    DELIVERED = "delivered"
    HTTP_ERROR = "http_error"  # an answer other than 2xx (a redirect among them)
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    REFUSED = "refused"  # the address may not be reached


@dataclass(frozen=True)
class PostResult:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None


class _PinnedResolver(AbstractResolver):
    """Answers with the addresses already checked, so that aiohttp never resolves the name a
    second time (a DNS rebinding would otherwise send it elsewhere)."""

    def __init__(self, target: Target) -> None:
        self._target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._target.host:
            raise OSError(f"{host} was not checked")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._target.addresses
        ]

    async def close(self) -> None:
        return None


async def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: AddressPolicy,
    timeout_s: float,
) -> PostResult:
    """POST ``body`` to ``url`` once its addresses are checked; what came of it. Never raises
    for what the receiver does."""
    try:
        target = await resolve_target(url, policy)
    except AddressRefused as exc:
        return PostResult(Outcome.REFUSED, error=str(exc))
    except OSError as exc:
        return PostResult(Outcome.CONNECTION_ERROR, error=f"cannot resolve: {exc}")
    return await post_to(target, url, body, headers, timeout_s=timeout_s)


async def post_to(
    target: Target, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> PostResult:
    """POST to ``url`` at ``target``'s addresses only (its host is never resolved again)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    connector = aiohttp.TCPConnector(resolver=_PinnedResolver(target), force_close=True)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                read_bufsize=READ_BUFFER_BYTES,
                auto_decompress=False,
                trust_env=False,
            ) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            if 200 <= response.status < 300:
                return PostResult(Outcome.DELIVERED, response.status)
            if 300 <= response.status < 400:
                # A hop is not followed: it would be an address nobody checked.
                where = response.headers.get("Location", "")[:200]
                error = f"redirect to {where!r} not followed"
            else:
                peek = await response.content.read(BODY_PEEK_BYTES)
                error = f"HTTP {response.status}: {peek.decode(errors='replace')}".strip()
            return PostResult(Outcome.HTTP_ERROR, response.status, error)
    except TimeoutError:
        return PostResult(Outcome.TIMEOUT, error=f"no answer within {timeout_s:g} s")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        return PostResult(Outcome.CONNECTION_ERROR, error=f"{type(exc).__name__}: {exc}"[:500])
