"""What is wrong with a rejected row, as the checks found it, in words.

The checks (``exporter.imports.checks``) give each problem a column, a stable code and its
values; the API says it in English beside the code (pages translate the code), and the report
of rejected rows says it in Chinese, under its 错误原因 column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

MESSAGES: Mapping[str, Mapping[str, str]] = {
    "en": {
        "required": "{column} is required",
        "too_long": "{column} is longer than {max_length} characters",
        "invalid_format": "{column} is not in a valid format",
        "unknown_choice": "{column} must be one of: {allowed}",
        "unknown_reference": "{column} {value!r} does not exist",
        "duplicate_key": "{column} {value!r} is repeated; it first appears in row {first_row}",
        "invalid_item": "{column}: {item!r} is not valid",
        "invalid_date": "{column} is not a date (e.g. 2026-01-31 or 2026-01-31 08:00)",
    },
    "zh-CN": {
        "required": "{column}不能为空",
        "too_long": "{column}超过 {max_length} 个字符",
        "invalid_format": "{column}格式不正确",
        "unknown_choice": "{column}只能是：{allowed}",
        "unknown_reference": "{column}“{value}”不存在",
        "duplicate_key": "{column}“{value}”重复，第一次出现在第 {first_row} 行",
        "invalid_item": "{column}中的“{item}”无效",
        "invalid_date": "{column}不是有效的日期（例如 2026-01-31 或 2026-01-31 08:00）",
    },
}


class RowError(BaseModel):
    """One problem of a rejected row, as an import task shows it: ``row`` is the row number
    the user sees in their file (in ``sheet``, for a workbook)."""

    sheet: str | None
    row: int
    column: str | None
    code: str
    message: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem as the checks wrote it (a JSON object of column, code and params)."""

    column: str
    code: str
    params: dict[str, Any]

    @classmethod
    def of(cls, found: Mapping[str, Any], sheets: Sequence[str]) -> Problem:
        params = dict(found["params"])
        if "first_sheet" in params:
            params["first_sheet"] = sheets[params["first_sheet"]]
        return cls(found["column"], found["code"], params)

    def message(self, language: str = "en") -> str:
        return MESSAGES[language][self.code].format(column=self.column, **self.params)


def reasons(problems: Sequence[Problem], language: str) -> str:
    """A rejected row's problems in one cell of the report."""
    return "；".join(problem.message(language) for problem in problems)
