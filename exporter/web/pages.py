"""The HTML pages and their static files; the pages call the JSON API from the browser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from exporter.api.auth import BrowserSession, browser_session
from exporter.api.services import services_of
from exporter.web.i18n import LANGUAGE_COOKIE, LANGUAGES, catalog, language_of
from exporter.web.list_pages import ACCOUNTS, ROLES, TASK_COLUMNS

routes = web.RouteTableDef()

STATIC_DIR = Path(__file__).parent / "static"
routes.static("/static", STATIC_DIR, name="static", append_version=True)

HOME = "/tasks"

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("exporter.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Chinese stays readable in the page source (tojson still escapes <, >, & and ').
_templates.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}

# Everything a page needs is served from here; nothing inline runs, nothing loads from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _translator(messages: dict[str, str]) -> Callable[..., str]:
    def translate(key: str, **values: Any) -> str:
        return messages[key].format(**values)

    return translate


def _render(
    request: web.Request, template: str, session: BrowserSession | None, **context: Any
) -> web.Response:
    language = language_of(request)
    messages = catalog(language)
    static = request.app.router["static"]
    html = _templates.get_template(template).render(
        lang=language,
        other_lang=next(code for code in LANGUAGES if code != language),
        language_cookie=LANGUAGE_COOKIE,
        messages=messages,
        t=_translator(messages),
        static=lambda filename: str(static.url_for(filename=filename)),
        session=session,
        **context,
    )
    return web.Response(
        text=html, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


def _local_path(target: str) -> str:
    """``target`` if it is a path on this site, else the home page: no redirect leaves the site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return HOME
    if "\\" in target:
        return HOME
    return target


async def _signed_in_page(request: web.Request, template: str, **context: Any) -> web.Response:
    session = await browser_session(request)
    if session is None:
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}")
    return _render(request, template, session, **context)


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound(HOME)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    target = _local_path(request.query.get("next", HOME))
    if await browser_session(request) is not None:
        raise web.HTTPFound(target)
    return _render(request, "login.html", None, page="login", next_path=target)


@routes.get("/accounts")
async def accounts_page(request: web.Request) -> web.Response:
    return await _signed_in_page(request, "list.html", page="accounts", list_page=ACCOUNTS)


@routes.get("/roles")
async def roles_page(request: web.Request) -> web.Response:
    return await _signed_in_page(request, "list.html", page="roles", list_page=ROLES)


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.Response:
    titles = {handler.name: handler.title for handler in services_of(request).handlers}
    return await _signed_in_page(
        request, "tasks.html", page="tasks", columns=TASK_COLUMNS, type_titles=titles
    )
