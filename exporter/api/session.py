"""Signing in and out of the pages: POST /api/session sets the session cookie, DELETE clears it."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from exporter.api.auth import SESSION_COOKIE, current_account
from exporter.api.responses import json_model
from exporter.api.services import services_of
from exporter.api.validation import read_json_body
from exporter.errors import FieldProblem, Forbidden, TooManySignIns, Unauthorized
from exporter.input_model import InputModel
from exporter.passwords import verify_password
from exporter.tokens import issue_session_token

log = logging.getLogger("exporter.api")

routes = web.RouteTableDef()

SESSION_TTL_S = 12 * 3600
# Wrong passwords for one username from one address, within the window, before sign-in pauses.
MAX_FAILED_SIGN_INS = 10
FAILED_SIGN_IN_WINDOW_S = 15 * 60
# Past this many remembered keys, expired ones are dropped, so guessing usernames cannot grow it.
THROTTLE_PRUNE_AT = 10_000


class SignInThrottle:
    """Recent failed sign-ins per (username, client address), remembered by this process."""

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], list[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        recent = [at for at in self._failures.get(key, []) if now - at < FAILED_SIGN_IN_WINDOW_S]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def check(self, key: tuple[str, str]) -> None:
        if len(self._recent(key, time.monotonic())) >= MAX_FAILED_SIGN_INS:
            minutes = FAILED_SIGN_IN_WINDOW_S // 60
            raise TooManySignIns(
                f"too many wrong passwords; try again within {minutes} minutes",
                params={"minutes": minutes},
            )

    def failed(self, key: tuple[str, str]) -> None:
        now = time.monotonic()
        if len(self._failures) > THROTTLE_PRUNE_AT:
            for stale in list(self._failures):
                self._recent(stale, now)
        self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


SIGN_IN_THROTTLE = web.AppKey("sign_in_throttle", SignInThrottle)


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
    # A form on another site can post text/plain but not JSON without CORS approval, so this
    # refuses to sign a victim's browser in to someone else's account (login CSRF).
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="Content-Type must be application/json")
    body = await read_json_body(request, LoginRequest)
    services = services_of(request)
    throttle = request.app[SIGN_IN_THROTTLE]
    attempt = (body.username.casefold(), request.remote or "")
    throttle.check(attempt)
    account = await services.accounts.get_by_username(body.username)
    password_hash = None if account is None else await services.accounts.password_hash(account.id)
    # argon2 takes tens of milliseconds of CPU on purpose; keep the event loop free meanwhile.
    matches = await asyncio.to_thread(verify_password, password_hash, body.password)
    if account is None or not matches:
        throttle.failed(attempt)
        log.info("sign-in refused for username %r from %s", body.username, request.remote)
        raise Unauthorized(
            "wrong username or password",
            [FieldProblem("password", "does not match the username", "wrong_password")],
        )
    throttle.succeeded(attempt)
    if account.status != "active":
        raise Forbidden(
            f"account is {account.status} and cannot sign in", params={"status": account.status}
        )
    settings = services.settings
    token, csrf_token = issue_session_token(
        settings.secret.get_secret_value(), account.id, ttl_s=SESSION_TTL_S
    )
    await services.accounts.record_login(account.id)
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
    log.info("account %d signed out", account.id)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
