"""Bearer tokens: HS256 JWTs whose ``sub`` is the account id, so an admin backend can issue them.

The browser's session cookie holds the same kind of token, with two more claims: ``sid``, the
session row that signing out deletes, and ``csrf``, the value a page must echo in a header before
the cookie may change anything.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from exporter.errors import Unauthorized
from exporter.input_model import fits_bigint

log = logging.getLogger("exporter.api")

ALGORITHM = "HS256"
# Tokens whose signature check is remembered, per process (a few hundred bytes each).
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token names, its session and CSRF value (None in a plain bearer token), and
    when it expires (seconds since the epoch)."""

    account_id: int
    csrf_token: str | None
    expires_at: float
    session_id: uuid.UUID | None = None


def issue_token(
    secret: str, account_id: int, *, ttl_s: int = 24 * 3600, claims: dict[str, Any] | None = None
) -> str:
    """A signed token for ``account_id`` that expires after ``ttl_s`` seconds."""
    now = int(time.time())
    payload = {"sub": str(account_id), "iat": now, "exp": now + ttl_s, **(claims or {})}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def issue_session_token(
    secret: str, account_id: int, session_id: uuid.UUID, *, ttl_s: int
) -> tuple[str, str]:
    """A token for the cookie of session ``session_id`` and the fresh CSRF value signed into it."""
    csrf_token = secrets.token_urlsafe(32)
    claims = {"sid": str(session_id), "csrf": csrf_token}
    return issue_token(secret, account_id, ttl_s=ttl_s, claims=claims), csrf_token


def identity_from_token(secret: str, token: str) -> TokenIdentity:
    """What a valid token says; Unauthorized for anything else."""
    identity = _verified(secret, token)
    # Checked on every use: the cache keeps a token's signature check, not its validity.
    if identity.expires_at <= time.time():
        raise Unauthorized("token expired")
    return identity


# A client sends the same token with every request, and checking its signature was a tenth of
# the API's CPU for a list; the answer for one token and secret never changes. Invalid tokens
# raise, and are not kept.
@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified(secret: str, token: str) -> TokenIdentity:
    # A JWT is ASCII; a header's other bytes arrive as surrogates, which PyJWT cannot encode.
    if not token.isascii():
        raise Unauthorized("invalid token")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        # PyJWT's text tells a prober which check failed; the caller learns only that it did.
        log.debug("invalid token: %s", exc)
        raise Unauthorized("invalid token") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not fits_bigint(subject):
        log.debug("invalid token: sub is not an account id")
        raise Unauthorized("invalid token")
    csrf_token = claims.get("csrf")
    csrf = csrf_token if isinstance(csrf_token, str) else None
    return TokenIdentity(int(subject), csrf, float(claims["exp"]), _session_id(claims.get("sid")))


def _session_id(claim: object) -> uuid.UUID | None:
    if claim is None:
        return None
    try:
        return uuid.UUID(str(claim))
    except ValueError:
        log.debug("invalid token: sid is not a session id")
        raise Unauthorized("invalid token") from None
