"""The HTML pages and their static files; the pages call the JSON API from the browser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.api.auth import BrowserSession, browser_session
from exporter.api.services import services_of
from exporter.auth.accounts import Account
from exporter.exports.formats import FORMATS
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.web.i18n import LANGUAGE_COOKIE, LANGUAGES, catalog, language_of
from exporter.web.list_pages import ACCOUNTS, LIST_PAGES, ROLES, TASK_COLUMNS, ListPage

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


def _visible_pages(account: Account, handlers: HandlerRegistry) -> list[ListPage]:
    """The list pages whose export type's list the account may see."""
    return [page for page in LIST_PAGES if account.may(handlers.get(page.export_type).permission)]


def _render(
    request: web.Request,
    template: str,
    session: BrowserSession | None,
    *,
    status: int = 200,
    **context: Any,
) -> web.Response:
    language = language_of(request)
    handlers = services_of(request).handlers
    visible = [] if session is None else _visible_pages(session.account, handlers)
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
        nav_pages=[page.name for page in visible] + ["tasks"],
        **context,
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


# Paths of the JSON API and the static files keep their JSON 404: no person reads those.
NOT_PAGES = ("/api/", "/static/")


@web.middleware
async def page_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page address that leads nowhere gets a page in the reader's language, not raw JSON."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if request.method != "GET" or request.path.startswith(NOT_PAGES):
            raise
        session = await browser_session(request)
        return _render(request, "not_found.html", session, status=404, page="not_found")


def _local_path(target: str) -> str:
    """``target`` if it is a path on this site, else the home page: no redirect leaves the site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return HOME
    if "\\" in target:
        return HOME
    return target


async def _signed_in(request: web.Request) -> BrowserSession:
    """The page's session; without one, the browser goes to sign in and comes back."""
    session = await browser_session(request)
    if session is None:
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}")
    return session


async def _list_page(request: web.Request, list_page: ListPage) -> web.Response:
    """A list page, with its Export button for who may export; 403 for who may not see it."""
    session = await _signed_in(request)
    handler = services_of(request).handlers.get(list_page.export_type)
    if not session.account.may(handler.permission):
        return _render(
            request,
            "forbidden.html",
            session,
            status=403,
            page="forbidden",
            permission=handler.permission,
        )
    return _render(
        request,
        "list.html",
        session,
        page=list_page.name,
        list_page=list_page,
        may_export=session.account.may(*handler.export_permissions),
        formats=list(FORMATS),
    )


def _shown_params(handler: ExportHandler[Any]) -> list[dict[str, Any]]:
    """How the tasks page shows a task's filters: the params schema's (the form's) order, which
    are times, and the message keys of the choices the type's list page offers."""
    choices = {
        control.name: dict(control.options)
        for page in LIST_PAGES
        if page.export_type == handler.name
        for control in page.filters
    }
    shown = []
    for name, schema in handler.params_model.model_json_schema()["properties"].items():
        variants = schema.get("anyOf", [schema])
        is_time = any(variant.get("format") in ("date", "date-time") for variant in variants)
        shown.append(
            {"name": name, "kind": "time" if is_time else "text", "options": choices.get(name, {})}
        )
    return shown


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
    return await _list_page(request, ACCOUNTS)


@routes.get("/roles")
async def roles_page(request: web.Request) -> web.Response:
    return await _list_page(request, ROLES)


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.Response:
    """Every account sees its own tasks; retry is offered for the types it may still export."""
    session = await _signed_in(request)
    handlers = services_of(request).handlers
    account = session.account
    exportable = [h.name for h in handlers if account.may(*h.export_permissions)]
    export_page = next((page.name for page in LIST_PAGES if page.export_type in exportable), None)
    access = {
        "exportable_types": exportable,
        "readable_types": [h.name for h in handlers if account.may(h.permission)],
        "export_page": export_page,
    }
    return _render(
        request,
        "tasks.html",
        session,
        page="tasks",
        columns=TASK_COLUMNS,
        type_titles={handler.name: handler.title for handler in handlers},
        type_params={handler.name: _shown_params(handler) for handler in handlers},
        access=access,
    )
