"""The role list, with how many accounts hold each role."""

from __future__ import annotations

from pydantic import Field

from exporter import Column, ColumnKind, ExportParams, RowQuery, export_handler
from exporter.exports.filters import contains_pattern


class RoleParams(ExportParams):
    keyword: str | None = Field(None, max_length=200, description="name or description contains")


@export_handler(
    "role",
    title="角色列表",
    params=RoleParams,
    columns=[
        Column("ID", "r.id", ColumnKind.INTEGER),
        Column("名称", "r.name"),
        Column("描述", "r.description"),
        Column("权限", "array_to_string(r.permissions, ',')"),
        Column(
            "账号数", "(SELECT count(*) FROM accounts a WHERE a.role_id = r.id)", ColumnKind.INTEGER
        ),
        Column("创建时间", "r.created_at", ColumnKind.DATETIME),
    ],
)
def role_rows(params: RoleParams) -> RowQuery:
    query = RowQuery("roles r", order_by="r.id")
    if params.keyword:
        query.where("r.name ILIKE {0} OR r.description ILIKE {0}", contains_pattern(params.keyword))
    return query
