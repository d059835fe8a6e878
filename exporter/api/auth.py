"""Who is calling: the account named by the bearer token."""

from __future__ import annotations

from aiohttp import web

from exporter.api.services import services_of
from exporter.errors import Unauthorized
from exporter.models import Account
from exporter.tokens import account_id_from_token


async def current_account(request: web.Request) -> Account:
    """The caller's account; Unauthorized without a valid token for an existing account."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    services = services_of(request)
    account_id = account_id_from_token(services.settings.secret.get_secret_value(), token.strip())
    account = await services.accounts.get(account_id)
    if account is None:
        raise Unauthorized("unknown account")
    return account
