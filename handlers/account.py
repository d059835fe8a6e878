"""The account list, as the 账号管理 page filters it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from exporter import Column, ColumnKind, ExportParams, RowQuery, export_handler
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


@export_handler(
    "account",
    title="账号列表",
    params=AccountParams,
    columns=[
        Column("ID", "a.id", ColumnKind.INTEGER),
        Column("用户名", "a.username"),
        Column("昵称", "a.nickname"),
        Column("邮箱", "a.email"),
        Column("手机号", "a.phone"),
        Column(
            "状态",
            "a.status",
            ColumnKind.ENUM,
            labels={"active": "正常", "disabled": "禁用", "locked": "锁定"},
        ),
        Column("角色", "r.name"),
        Column("创建时间", "a.created_at", ColumnKind.DATETIME),
        Column("最后登录时间", "a.last_login_at", ColumnKind.DATETIME),
    ],
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
