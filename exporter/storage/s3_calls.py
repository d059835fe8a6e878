"""Calls to an S3 store that may fail for a moment: retried with backoff, then an OSError that
says what could not be done and why, which fails the task with that message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

log = logging.getLogger("exporter.storage")

T = TypeVar("T")

# Four tries 0.25, 0.5 and 1 s apart: a store restarting or shedding load gets ~2 s.
STORE_ATTEMPTS = 4
FIRST_BACKOFF_S = 0.25
# Error codes of a store that is busy or failing for a moment, not refusing the request.
TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError"}
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def error_code(exc: ClientError) -> str:
    """The store's code for a refused request (``NoSuchKey``, ``AccessDenied``, …)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    """The request named an object that is not there."""
    return error_code(exc) in MISSING_CODES


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, BotoConnectionError | HTTPClientError | ConnectionError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return status >= 500 or error_code(exc) in TRANSIENT_CODES
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


async def retried(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again after a transient failure; OSError("could not WHAT: why")."""
    delay_s = FIRST_BACKOFF_S
    attempt = 1
    while True:
        try:
            return await call()
        except (BotoCoreError, ClientError, ConnectionError) as exc:
            if not _transient(exc) or attempt == STORE_ATTEMPTS:
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise OSError(f"the object store could not {what}{tries}: {_reason(exc)}") from exc
            log.warning("object store: could not %s (%s); trying again", what, _reason(exc))
        await asyncio.sleep(delay_s)
        delay_s *= 2
        attempt += 1
