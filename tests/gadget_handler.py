"""A third export type with its list page, declared in this one module as a handler author would.

tests/integration/test_list_pages.py adds it to a deployment as any deployment adds its own
types, through EXPORTER_HANDLER_MODULES, and finds its list, page, nav link and OpenAPI entry
there with no change in exporter/. Only those processes import it: the tests' own registry
never holds it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from exporter import Column, ColumnKind, ExportParams, ListPage, RowQuery, export_handler
from exporter.exports.filters import DateOrDateTime, contains_pattern, range_start


class GadgetParams(ExportParams):
    keyword: str | None = Field(None, max_length=50)
    state: Literal["new", "sold"] | None = None
    made_from: DateOrDateTime | None = None


STRINGS = {
    "zh-CN": {
        "name": "小工具列表",
        "page": "小工具管理",
        "empty": "没有符合条件的小工具。",
        "column.id": "编号",
        "column.name": "名称",
        "column.state": "状态",
        "column.made_at": "制造时间",
        "param.keyword": "名称含",
        "param.state": "状态",
        "param.made_from": "制造日期从",
        "value.state.new": "在库",
        "value.state.sold": "已售",
    },
    "en": {
        "name": "Gadgets",
        "page": "Gadgets",
        "empty": "No gadgets match these filters.",
        "column.id": "No.",
        "column.name": "Name",
        "column.state": "State",
        "column.made_at": "Made",
        "param.keyword": "Name contains",
        "param.state": "State",
        "param.made_from": "Made from",
        "value.state.new": "In stock",
        "value.state.sold": "Sold",
    },
}


@export_handler(
    "test_gadget",
    title="小工具列表",
    params=GadgetParams,
    columns=[
        Column("编号", "g.id", ColumnKind.INTEGER, field="id", nullable=False),
        Column("名称", "g.name", field="name", nullable=False),
        Column(
            "状态",
            "g.state",
            ColumnKind.ENUM,
            labels={"new": "在库", "sold": "已售"},
            field="state",
            nullable=False,
        ),
        Column("制造时间", "g.made_at", ColumnKind.DATETIME, field="made_at", nullable=False),
    ],
    list_page=ListPage("test-gadgets", alerts={"state": ["sold"]}),
    strings=STRINGS,
)
def gadget_rows(params: GadgetParams) -> RowQuery:
    query = RowQuery("test_gadgets g", order_by="g.id")
    if params.keyword:
        query.where("g.name ILIKE {}", contains_pattern(params.keyword))
    if params.state:
        query.where("g.state = {}", params.state)
    if params.made_from:
        query.where("g.made_at >= {}::text::timestamptz", range_start(params.made_from))
    return query
