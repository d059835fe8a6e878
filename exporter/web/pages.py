"""The HTML pages and their static files; the pages call the JSON API from the browser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.api.auth import BrowserSession, browser_session
from exporter.api.ops import OPS_READ, OPS_WRITE
from exporter.api.services import services_of
from exporter.auth.accounts import Account
from exporter.exports.formats import FORMATS
from exporter.exports.registry import ExportHandler, HandlerRegistry
from exporter.tasks.models import TaskStatus
from exporter.web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    has_string,
    language_of,
    page_catalogs,
    type_key,
)
from exporter.web.import_form import ImportForm, import_form
from exporter.web.list_pages import (
    IMPORT_TASK_COLUMNS,
    TASK_COLUMNS,
    ListColumn,
    ListPageView,
    is_time,
    item_options,
    list_page_view,
    param_options,
)

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


@dataclass(frozen=True)
class NavLink:
    path: str
    label: str


TASKS_LINK = NavLink(HOME, "nav.tasks")
OPS_LINK = NavLink("/ops", "nav.ops")


@dataclass(frozen=True)
class Site:
    """What the pages take from the export types, built once with the app."""

    list_pages: tuple[ListPageView, ...]
    catalogs: Mapping[str, Mapping[str, str]]
    # How the tasks page shows each type's filters.
    type_params: Mapping[str, list[dict[str, Any]]]


SITE = web.AppKey("site", Site)


def _translator(messages: Mapping[str, str]) -> Callable[..., str]:
    def translate(key: str, **values: Any) -> str:
        return messages[key].format(**values)

    return translate


def _visible_pages(request: web.Request, account: Account) -> list[ListPageView]:
    """The list pages whose export type's list the account may see."""
    return [page for page in request.app[SITE].list_pages if account.may(page.permission)]


def _render(
    request: web.Request,
    template: str,
    session: BrowserSession | None,
    *,
    title: str,
    status: int = 200,
    **context: Any,
) -> web.Response:
    language = language_of(request)
    visible = [] if session is None else _visible_pages(request, session.account)
    operator = session is not None and session.account.may(OPS_READ)
    messages = request.app[SITE].catalogs[language]
    static = request.app.router["static"]
    html = _templates.get_template(template).render(
        lang=language,
        other_lang=next(code for code in LANGUAGES if code != language),
        language_cookie=LANGUAGE_COOKIE,
        messages=messages,
        t=_translator(messages),
        static=lambda filename: str(static.url_for(filename=filename)),
        session=session,
        title=title,
        nav=[NavLink(page.path, page.title) for page in visible]
        + [TASKS_LINK]
        + ([OPS_LINK] if operator else []),
        here=request.path,
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
        return _render(request, "not_found.html", session, status=404, title="not_found.title")


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


def _forbidden(request: web.Request, session: BrowserSession, permission: str) -> web.Response:
    return _render(
        request,
        "forbidden.html",
        session,
        status=403,
        title="forbidden.title",
        permission=permission,
    )


async def _list_page(request: web.Request, list_page: ListPageView) -> web.Response:
    """A list page, with its Export button for who may export; 403 for who may not see it."""
    session = await _signed_in(request)
    account = session.account
    handlers = services_of(request).exports.handlers
    handler = handlers.get(list_page.export_type)
    if not account.may(handler.permission):
        return _forbidden(request, session, handler.permission)
    return _render(
        request,
        "list.html",
        session,
        title=list_page.title,
        list_page=list_page,
        # A filter whose options are another list's items only for who may see that list.
        filters=[
            control
            for control in list_page.filters
            if control.options_from is None
            or account.may(handlers.get(control.options_from.type_name).permission)
        ],
        may_export=account.may(*handler.export_permissions),
        formats=list(FORMATS),
        import_form=_import_form(request, account, list_page.export_type),
    )


def _import_form(request: web.Request, account: Account, type_name: str) -> ImportForm | None:
    """The Import dialog of ``type_name``, for who may import it."""
    services = services_of(request)
    if type_name not in services.imports.handlers:
        return None
    handler = services.imports.handlers.get(type_name)
    if not account.may(*handler.import_permissions):
        return None
    messages = request.app[SITE].catalogs[language_of(request)]
    return import_form(handler, messages, services.settings.max_upload_bytes)


def _list_page_route(list_page: ListPageView) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def show(request: web.Request) -> web.Response:
        return await _list_page(request, list_page)

    return show


def _shown_params(handler: ExportHandler[Any], handlers: HandlerRegistry) -> list[dict[str, Any]]:
    """How the tasks page shows a task's filters: the params schema's (the form's) order, their
    labels, which are times, the message keys of the choices the type's list page offers, and
    the list whose items name a value."""
    page = handler.list_page
    shown = []
    for name, schema in handler.params_model.model_json_schema()["properties"].items():
        label = f"param.{name}"
        choices = None if page is None else page.choices.get(name)
        shown.append(
            {
                "name": name,
                "label": type_key(handler.name, label) if has_string(handler, label) else None,
                "kind": "time" if is_time(schema) else "text",
                "options": {} if page is None else dict(param_options(handler, name)),
                "items": None if choices is None else asdict(item_options(handlers, choices)),
            }
        )
    return shown


def add_list_pages(app: web.Application, handlers: HandlerRegistry) -> None:
    """Give ``app`` the page of each type that declares one, and the types' words.

    ValueError for a page whose strings miss one it shows, in any language."""
    catalogs = page_catalogs(handlers)
    views = tuple(list_page_view(handler, handlers) for handler in handlers if handler.list_page)
    for view in views:
        for language, messages in catalogs.items():
            missing = view.message_keys - messages.keys()
            if missing:
                raise ValueError(f"the {language} strings have no {sorted(missing)}")
    type_params = {handler.name: _shown_params(handler, handlers) for handler in handlers}
    app[SITE] = Site(views, catalogs, type_params)
    app.add_routes([web.get(view.path, _list_page_route(view)) for view in views])


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound(HOME)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    target = _local_path(request.query.get("next", HOME))
    if await browser_session(request) is not None:
        raise web.HTTPFound(target)
    return _render(request, "login.html", None, title="login.title", next_path=target)


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.Response:
    """Every account sees its own exports and imports; retry is offered for the types it may
    still export or import."""
    session = await _signed_in(request)
    services = services_of(request)
    handlers = services.exports.handlers
    account = session.account
    exportable = [h.name for h in handlers if account.may(*h.export_permissions)]
    importable = [h.name for h in services.imports.handlers if account.may(*h.import_permissions)]
    site = request.app[SITE]

    def first_page(types: list[str]) -> dict[str, str] | None:
        """The first list page of one of ``types``: where an empty table sends its reader."""
        return next(
            (
                asdict(NavLink(page.path, page.title))
                for page in site.list_pages
                if page.export_type in types
            ),
            None,
        )

    access = {
        "exportable_types": exportable,
        "importable_types": importable,
        "readable_types": [h.name for h in handlers if account.may(h.permission)],
        "export_page": first_page(exportable),
        "import_page": first_page(importable),
    }
    return _render(
        request,
        "tasks.html",
        session,
        title="tasks.title",
        columns=TASK_COLUMNS,
        import_columns=IMPORT_TASK_COLUMNS,
        type_titles={handler.name: handler.title for handler in handlers},
        type_params=site.type_params,
        access=access,
    )


@routes.get("/ops")
async def ops_page(request: web.Request) -> web.Response:
    """Workers, the queue and every account's tasks for operators (``ops:read``); cancel and
    retry offered to who also has ``ops:write``."""
    session = await _signed_in(request)
    if not session.account.may(OPS_READ):
        return _forbidden(request, session, OPS_READ)
    handlers = services_of(request).exports.handlers
    may_write = session.account.may(OPS_WRITE)
    # Who may not act on a task gets no Actions column.
    actions = ("actions",) if may_write else ()
    fields = {
        "workers": ("worker", "host", "started", "current", "rate", "heartbeat"),
        "counts": ("kind", *(status.value for status in TaskStatus)),
        "slowest": ("task", "owner", "status", "duration", "rows", "worker", *actions),
        "failed": ("task", "owner", "finished", "error", *actions),
    }
    return _render(
        request,
        "ops.html",
        session,
        title="ops.title",
        may_write=may_write,
        columns={
            table: [ListColumn(field, f"ops.col.{field}") for field in names]
            for table, names in fields.items()
        },
        type_titles={handler.name: handler.title for handler in handlers},
        type_params=request.app[SITE].type_params,
    )
