"""The role list, with how many accounts hold each role, and the 角色管理 page."""

from __future__ import annotations

from pydantic import Field

from exporter import (
    Column,
    ColumnKind,
    ExportParams,
    ImportField,
    ListField,
    ListPage,
    RowQuery,
    export_handler,
    import_handler,
)
from exporter.exports.filters import contains_pattern


class RoleParams(ExportParams):
    keyword: str | None = Field(None, max_length=200, description="name or description contains")


STRINGS = {
    "zh-CN": {
        "name": "角色列表",
        "page": "角色管理",
        "empty": "没有符合条件的角色。",
        "column.id": "ID",
        "column.name": "名称",
        "column.description": "描述",
        "column.permissions": "权限",
        "column.account_count": "账号数",
        "column.created_at": "创建时间",
        "param.keyword": "关键字",
        "param.keyword.hint": "名称或描述",
    },
    "en": {
        "name": "Roles",
        "page": "Roles",
        "empty": "No roles match these filters.",
        "column.id": "ID",
        "column.name": "Name",
        "column.description": "Description",
        "column.permissions": "Permissions",
        "column.account_count": "Accounts",
        "column.created_at": "Created",
        "param.keyword": "Keyword",
        "param.keyword.hint": "Name or description",
    },
}


# A permission is "<type>:<action>", or "*" for all of them.
PERMISSION = r"^([*]|[a-z_]+:[a-z_]+)$"


@import_handler(
    table="roles",
    key="name",
    fields=[
        ImportField("name", required=True, max_length=64, example="客服主管"),
        ImportField("description", max_length=500, example="处理客户工单"),
        ImportField(
            "permissions", split=",", item_pattern=PERMISSION, example="account:read,export:create"
        ),
    ],
)
@export_handler(
    "role",
    title="角色列表",
    params=RoleParams,
    columns=[
        Column("ID", "r.id", ColumnKind.INTEGER, field="id", nullable=False),
        Column("名称", "r.name", field="name", nullable=False),
        Column("描述", "r.description", field="description", nullable=False),
        Column("权限", "array_to_string(r.permissions, ',')", field="permissions"),
        Column(
            "账号数",
            "(SELECT count(*) FROM accounts a WHERE a.role_id = r.id)",
            ColumnKind.INTEGER,
            field="account_count",
            nullable=False,
        ),
        Column("创建时间", "r.created_at", ColumnKind.DATETIME, field="created_at", nullable=False),
    ],
    # The list gives the permissions as an array; the file joins them.
    list_page=ListPage("roles", fields=[ListField("permissions", "r.permissions", list[str])]),
    strings=STRINGS,
)
def role_rows(params: RoleParams) -> RowQuery:
    query = RowQuery("roles r", order_by="r.id")
    if params.keyword:
        query.where("r.name ILIKE {0} OR r.description ILIKE {0}", contains_pattern(params.keyword))
    return query
