"""Bearer tokens: HS256 JWTs whose ``sub`` is the account id, so an admin backend can issue them."""

from __future__ import annotations

import time

import jwt

from exporter.errors import Unauthorized

ALGORITHM = "HS256"


def issue_token(secret: str, account_id: int, *, ttl_s: int = 24 * 3600) -> str:
    """A signed token for ``account_id`` that expires after ``ttl_s`` seconds."""
    now = int(time.time())
    return jwt.encode(
        {"sub": str(account_id), "iat": now, "exp": now + ttl_s}, secret, algorithm=ALGORITHM
    )


def account_id_from_token(secret: str, token: str) -> int:
    """The account id a valid token names; Unauthorized for anything else."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isdigit():
        raise Unauthorized("invalid token: sub must be an account id")
    return int(subject)
