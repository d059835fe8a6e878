"""Who is calling: the account named by the bearer token, or by the browser's session cookie.

A bearer token is sent on purpose by its holder, so it needs nothing more. A cookie is sent by
the browser on its own, so a request that changes something with only the cookie must also carry
the session's CSRF value in a header, which a page of another site cannot read or set.

Every authenticated request, page or API, goes through one check (``current_account``, and
``browser_session`` for the pages): the account exists and is active, and a token that names a
session names a live one. It reads PostgreSQL each time, with nothing kept per process, so a
sign-out or a disabled account takes effect at once in every API process.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from exporter import log_context
from exporter.api.services import services_of
from exporter.auth.accounts import Account
from exporter.auth.tokens import TokenIdentity, identity_from_token
from exporter.errors import AccountInactive, FieldProblem, Forbidden, Unauthorized

SESSION_COOKIE = "exporter_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class BrowserSession:
    """A signed-in browser: its account and the CSRF value its pages send back."""

    account: Account
    csrf_token: str


async def _checked_account(request: web.Request, identity: TokenIdentity) -> Account:
    accounts = services_of(request).accounts
    if identity.session_id is None:
        account, session_live = await accounts.get(identity.account_id), True
    else:
        signed_in = await accounts.get_in_session(identity.account_id, identity.session_id)
        account, session_live = signed_in.account, signed_in.session_live
    if account is None:
        raise Unauthorized("unknown account")
    # Before the session: disabling an account also ends its sessions, and its old cookies
    # should say why they stopped working.
    if account.status != "active":
        raise AccountInactive(f"account is {account.status}")
    if not session_live:
        raise Unauthorized("the session has ended; sign in again")
    log_context.account_id.set(account.id)
    return account


def _identity(request: web.Request, token: str) -> TokenIdentity:
    return identity_from_token(services_of(request).settings.secret.get_secret_value(), token)


def _session_identity(request: web.Request, cookie: str) -> TokenIdentity:
    identity = _identity(request, cookie)
    # A cookie without a session (a bearer token, or one from before sessions) cannot be ended
    # by signing out, so it is no session at all.
    if identity.session_id is None:
        raise Unauthorized("the session cookie names no session; sign in again")
    return identity


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
    CSRF header. The account and session may be gone: ``current_account`` checks them.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if "Authorization" not in request.headers and cookie:
        identity = _session_identity(request, cookie)
        if request.method not in SAFE_METHODS:
            _check_csrf(request, identity)
        return identity
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return _identity(request, token.strip())


async def current_account(request: web.Request) -> Account:
    """The caller's active account.

    Unauthorized without valid credentials for an existing account or with an ended session,
    AccountInactive when the account is disabled or locked.
    """
    return await _checked_account(request, caller_identity(request))


async def browser_session(request: web.Request) -> BrowserSession | None:
    """The session of a page request; None, as if signed out, when ``current_account`` would
    refuse its cookie (missing, expired, foreign, ended, or an account no longer active)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        identity = _session_identity(request, cookie)
        account = await _checked_account(request, identity)
    except (Unauthorized, AccountInactive):
        return None
    if identity.csrf_token is None:
        return None
    return BrowserSession(account, identity.csrf_token)
