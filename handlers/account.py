"""The account list, and the 账号管理 page that filters it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from exporter import (
    Choices,
    Column,
    ColumnKind,
    ExportParams,
    ImportField,
    ListField,
    ListPage,
    Reference,
    RowQuery,
    export_handler,
    import_handler,
)
from exporter.exports.filters import (
    DateOrDateTime,
    check_range_order,
    contains_pattern,
    range_end,
    range_start,
)


class AccountParams(ExportParams):
    keyword: str | None = Field(
        None, max_length=200, description="username, nickname, email or phone contains"
    )
    status: Literal["active", "disabled", "locked"] | None = None
    role_id: int | None = Field(None, ge=1)
    created_from: DateOrDateTime | None = Field(None, description="created at or after")
    created_to: DateOrDateTime | None = Field(
        None, description="created up to; a date includes that day"
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> AccountParams:
        check_range_order(self, "created_from", "created_to")
        return self


STRINGS = {
    "zh-CN": {
        "name": "账号列表",
        "page": "账号管理",
        "empty": "没有符合条件的账号。试试放宽筛选条件。",
        "column.id": "ID",
        "column.username": "用户名",
        "column.nickname": "昵称",
        "column.email": "邮箱",
        "column.phone": "手机号",
        "column.status": "状态",
        "column.role_name": "角色",
        "column.created_at": "创建时间",
        "column.last_login_at": "最后登录时间",
        "param.keyword": "关键字",
        "param.keyword.hint": "用户名、昵称、邮箱或手机号",
        "param.status": "状态",
        "param.role_id": "角色",
        "param.created_from": "创建日期从",
        "param.created_to": "创建日期至",
        "value.status.active": "正常",
        "value.status.disabled": "禁用",
        "value.status.locked": "锁定",
    },
    "en": {
        "name": "Accounts",
        "page": "Accounts",
        "empty": "No accounts match these filters. Try widening them.",
        "column.id": "ID",
        "column.username": "Username",
        "column.nickname": "Nickname",
        "column.email": "Email",
        "column.phone": "Phone",
        "column.status": "Status",
        "column.role_name": "Role",
        "column.created_at": "Created",
        "column.last_login_at": "Last sign-in",
        "param.keyword": "Keyword",
        "param.keyword.hint": "Username, nickname, email or phone",
        "param.status": "Status",
        "param.role_id": "Role",
        "param.created_from": "Created from",
        "param.created_to": "Created to",
        "value.status.active": "Active",
        "value.status.disabled": "Disabled",
        "value.status.locked": "Locked",
    },
}


# Loose on purpose: what a back office holds is rarely cleaner, and an export must import back.
EMAIL = r"^[^@\s]+@[^@\s]+$"
PHONE = r"^[+]?[0-9][0-9 ()-]{2,30}$"


@import_handler(
    table="accounts",
    key="username",
    fields=[
        ImportField("username", required=True, max_length=64, example="zhangsan"),
        ImportField("nickname", max_length=64, example="张三"),
        ImportField("email", max_length=254, pattern=EMAIL, example="zhangsan@example.com"),
        ImportField("phone", max_length=32, pattern=PHONE, example="13800138000"),
        ImportField("status"),
        ImportField(
            "role_name", target="role_id", references=Reference("roles", "name"), example="运营"
        ),
    ],
)
@export_handler(
    "account",
    title="账号列表",
    params=AccountParams,
    columns=[
        Column("ID", "a.id", ColumnKind.INTEGER, field="id", nullable=False),
        Column("用户名", "a.username", field="username", nullable=False),
        Column("昵称", "a.nickname", field="nickname"),
        Column("邮箱", "a.email", field="email"),
        Column("手机号", "a.phone", field="phone"),
        Column(
            "状态",
            "a.status",
            ColumnKind.ENUM,
            labels={"active": "正常", "disabled": "禁用", "locked": "锁定"},
            field="status",
            nullable=False,
        ),
        Column("角色", "r.name", field="role_name"),
        Column("创建时间", "a.created_at", ColumnKind.DATETIME, field="created_at", nullable=False),
        Column("最后登录时间", "a.last_login_at", ColumnKind.DATETIME, field="last_login_at"),
    ],
    list_page=ListPage(
        "accounts",
        fields=[ListField("role_id", "a.role_id", int | None)],
        choices={"role_id": Choices("role")},
        alerts={"status": ("disabled", "locked")},
    ),
    strings=STRINGS,
)
def account_rows(params: AccountParams) -> RowQuery:
    query = RowQuery("accounts a LEFT JOIN roles r ON r.id = a.role_id", order_by="a.id")
    if params.keyword:
        query.where(
            "a.username ILIKE {0} OR a.nickname ILIKE {0}"
            " OR a.email ILIKE {0} OR a.phone ILIKE {0}",
            contains_pattern(params.keyword),
        )
    if params.status:
        query.where("a.status = {}", params.status)
    if params.role_id:
        query.where("a.role_id = {}", params.role_id)
    if params.created_from:
        query.where("a.created_at >= {}::text::timestamptz", range_start(params.created_from))
    if params.created_to:
        query.where("a.created_at < {}::text::timestamptz", range_end(params.created_to))
    return query
