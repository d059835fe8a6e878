"""Signing in and out of the pages: POST /api/session starts a session and sets its cookie,
DELETE ends the session (its row goes, so the old cookie is refused everywhere) and clears it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from exporter.api.audited import Note, audited
from exporter.api.auth import SESSION_COOKIE, caller_identity, current_account
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.api.sign_in_throttle import SignInLimits, SignInThrottle
from exporter.api.validation import read_json_body
from exporter.audit.events import AuditAction
from exporter.auth.passwords import PasswordChecker
from exporter.auth.tokens import issue_session_token
from exporter.errors import AccountInactive, FieldProblem, Unauthorized
from exporter.input_model import InputModel

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

SESSION_TTL_S = 12 * 3600
# One check at a time per API process (EXPORTER_API_PROCESSES gives one per core): each holds
# 64 MiB, and on 2 cores 1, 2 and 4 threads checked 20 passwords equally fast (0.5-0.6 s each).
PASSWORD_CHECK_THREADS = 1

PASSWORD_CHECKER = web.AppKey("password_checker", PasswordChecker)


async def password_checker(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the threads that check passwords."""
    checker = PasswordChecker(PASSWORD_CHECK_THREADS)
    app[PASSWORD_CHECKER] = checker
    try:
        yield
    finally:
        checker.close()


class LoginRequest(InputModel):
    """Body of POST /api/session."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class SessionAccountOut(BaseModel):
    id: int
    username: str


class SessionOut(BaseModel):
    """The signed-in account and the value to send in X-CSRF-Token with the cookie."""

    account: SessionAccountOut
    csrf_token: str


@routes.post("/api/session")
async def sign_in(request: web.Request) -> web.Response:
    """Every attempt is in the audit trail, with the username it tried."""
    async with audited(request, AuditAction.SIGN_IN) as note:
        return await _sign_in(request, note)


async def _sign_in(request: web.Request, note: Note) -> web.Response:
    # A form on another site can post text/plain but not JSON without CORS approval, so this
    # refuses to sign a victim's browser in to someone else's account (login CSRF).
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="Content-Type must be application/json")
    body = await read_json_body(request, LoginRequest)
    note.username = body.username
    services = services_of(request)
    settings = services.settings
    throttle = SignInThrottle(
        services.queue.redis,
        f"{settings.queue_name}:sign-in",
        SignInLimits(settings.sign_ins_per_username, settings.sign_ins_per_address),
        body.username,
        request.remote or "",
    )
    await throttle.start()
    account = await services.accounts.get_by_username(body.username)
    password_hash = None if account is None else await services.accounts.password_hash(account.id)
    # An unknown username is checked against a stand-in hash, on the same threads: as slow.
    matches = await request.app[PASSWORD_CHECKER].verify(password_hash, body.password)
    if account is None or not matches:
        log.info("sign-in refused for username %r from %s", body.username, request.remote)
        raise Unauthorized(
            "wrong username or password",
            [FieldProblem("password", "does not match the username", "wrong_password")],
        )
    await throttle.succeeded()
    if account.status != "active":
        raise AccountInactive(
            f"account is {account.status} and cannot sign in", params={"status": account.status}
        )
    session_id = await services.accounts.start_session(
        account.id, password_hash, ttl_s=SESSION_TTL_S
    )
    if session_id is None:
        raise Unauthorized("the account was disabled or its password changed; sign in again")
    token, csrf_token = issue_session_token(
        settings.secret.get_secret_value(), account.id, session_id, ttl_s=SESSION_TTL_S
    )
    await services.accounts.record_login(account.id)
    note.account_id = account.id
    log.info("account %d signed in", account.id)
    response = json_model(
        SessionOut(
            account=SessionAccountOut(id=account.id, username=account.username),
            csrf_token=csrf_token,
        )
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    return response


@routes.delete("/api/session")
async def sign_out(request: web.Request) -> web.Response:
    account = await current_account(request)
    session_id = caller_identity(request).session_id
    if session_id is not None:
        await services_of(request).accounts.end_session(session_id)
    log.info("account %d signed out", account.id)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
