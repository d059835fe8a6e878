"""What each list page shows: its filters (the export type's params), its columns, its source.

Labels are message keys (``locales/*.json``); the list template renders any page described here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FilterKind(StrEnum):
    SEARCH = "search"
    SELECT = "select"
    DATE = "date"


@dataclass(frozen=True)
class Filter:
    """One filter control; its ``name`` is the export param (and query parameter) it sets."""

    name: str
    label: str
    kind: FilterKind
    hint: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    # A list page whose items (id, name) become more options; shown only to who may see that page.
    options_from: ListPage | None = None


@dataclass(frozen=True)
class ListColumn:
    """A table column: the item field it shows, its heading, and how the page formats it."""

    field: str
    label: str
    kind: str = "text"


@dataclass(frozen=True)
class ListPage:
    name: str
    export_type: str
    source: str
    filters: tuple[Filter, ...]
    columns: tuple[ListColumn, ...]

    @property
    def options_source(self) -> str:
        """The rows a select takes as its options: the API's largest page."""
        return f"{self.source}?page_size=100"


ROLES = ListPage(
    name="roles",
    export_type="role",
    source="/api/roles",
    filters=(
        Filter("keyword", "filter.keyword", FilterKind.SEARCH, hint="filter.role_keyword_hint"),
    ),
    columns=(
        ListColumn("id", "field.id", "number"),
        ListColumn("name", "field.name"),
        ListColumn("description", "field.description"),
        ListColumn("permissions", "field.permissions", "list"),
        ListColumn("account_count", "field.account_count", "number"),
        ListColumn("created_at", "field.created_at", "datetime"),
    ),
)

ACCOUNTS = ListPage(
    name="accounts",
    export_type="account",
    source="/api/accounts",
    filters=(
        Filter("keyword", "filter.keyword", FilterKind.SEARCH, hint="filter.account_keyword_hint"),
        Filter(
            "status",
            "filter.status",
            FilterKind.SELECT,
            options=tuple(
                (code, f"account_status.{code}") for code in ("active", "disabled", "locked")
            ),
        ),
        Filter("role_id", "filter.role", FilterKind.SELECT, options_from=ROLES),
        Filter("created_from", "filter.created_from", FilterKind.DATE),
        Filter("created_to", "filter.created_to", FilterKind.DATE),
    ),
    columns=(
        ListColumn("id", "field.id", "number"),
        ListColumn("username", "field.username"),
        ListColumn("nickname", "field.nickname"),
        ListColumn("email", "field.email"),
        ListColumn("phone", "field.phone"),
        ListColumn("status", "field.status", "account_status"),
        ListColumn("role_name", "field.role"),
        ListColumn("created_at", "field.created_at", "datetime"),
        ListColumn("last_login_at", "field.last_login_at", "datetime"),
    ),
)

LIST_PAGES = (ACCOUNTS, ROLES)

# The tasks page's table; its script fills each cell by field.
TASK_COLUMNS = tuple(
    ListColumn(field, f"tasks.col.{field}")
    for field in (
        "type",
        "format",
        "filters",
        "status",
        "progress",
        "created",
        "finished",
        "size",
        "rows",
        "error",
        "actions",
    )
)
