"""Who is calling: the account named by the bearer token, or by the browser's session cookie.

A bearer token is sent on purpose by its holder, so it needs nothing more. A cookie is sent by
the browser on its own, so a request that changes something with only the cookie must also carry
the session's CSRF value in a header, which a page of another site cannot read or set.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from exporter.api.services import services_of
from exporter.errors import FieldProblem, Forbidden, Unauthorized
from exporter.models import Account
from exporter.tokens import TokenIdentity, identity_from_token

SESSION_COOKIE = "exporter_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class BrowserSession:
    """A signed-in browser: its account and the CSRF value its pages send back."""

    account: Account
    csrf_token: str


async def _account(request: web.Request, account_id: int) -> Account:
    account = await services_of(request).accounts.get(account_id)
    if account is None:
        raise Unauthorized("unknown account")
    return account


def _identity(request: web.Request, token: str) -> TokenIdentity:
    return identity_from_token(services_of(request).settings.secret.get_secret_value(), token)


def _check_csrf(request: web.Request, identity: TokenIdentity) -> None:
    # Header bytes that are not UTF-8 arrive as surrogates; they must not compare equal, nor raise.
    sent = request.headers.get(CSRF_HEADER, "").encode(errors="surrogateescape")
    expected = (identity.csrf_token or "").encode()
    if not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden(
            f"a request signed in by cookie must send the session's {CSRF_HEADER} header",
            [FieldProblem(CSRF_HEADER, "missing or does not match the session", "csrf_mismatch")],
        )


def caller_identity(request: web.Request) -> TokenIdentity:
    """Who the bearer token or session cookie names, checked without the database.

    Unauthorized without valid credentials, Forbidden for a cookie-only change that lacks the
    CSRF header. The account itself may no longer exist: ``current_account`` checks that.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if "Authorization" not in request.headers and cookie:
        identity = _identity(request, cookie)
        if request.method not in SAFE_METHODS:
            _check_csrf(request, identity)
        return identity
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return _identity(request, token.strip())


async def current_account(request: web.Request) -> Account:
    """The caller's account; Unauthorized without valid credentials for an existing account."""
    return await _account(request, caller_identity(request).account_id)


def require_permissions(account: Account, *permissions: str) -> None:
    """Forbidden, naming each missing permission, unless the account's role grants them all."""
    missing = [permission for permission in permissions if not account.may(permission)]
    if missing:
        raise Forbidden(
            f"the account's role does not grant {', '.join(missing)}",
            [
                FieldProblem(
                    "permission", permission, "missing_permission", {"permission": permission}
                )
                for permission in missing
            ],
            params={"permission": ", ".join(missing)},
        )


async def browser_session(request: web.Request) -> BrowserSession | None:
    """The session of a page request, or None when its cookie is missing, expired or foreign."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        identity = _identity(request, cookie)
        account = await _account(request, identity.account_id)
    except Unauthorized:
        return None
    if identity.csrf_token is None:
        return None
    return BrowserSession(account, identity.csrf_token)
