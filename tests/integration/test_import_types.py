"""What can be imported, and the templates to fill in, over real HTTP."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import openpyxl
import pytest
from aiohttp.test_utils import TestClient

from exporter.auth.tokens import issue_token
from tests.conftest import SECRET, add_account
from tests.support import ApiUser, csv_rows

ACCOUNT_HEADER = ["用户名", "昵称", "邮箱", "手机号", "状态", "角色"]


async def test_the_import_types_say_their_columns_formats_and_permissions(
    admin: ApiUser,
) -> None:
    status, body = await admin.get("/api/import-types")

    assert status == 200
    types = {item["name"]: item for item in body["items"]}
    assert set(types) == {"account", "role"}
    account = types["account"]
    assert account["title"] == "账号列表"
    assert account["key"] == "username"
    assert account["formats"] == ["csv", "xlsx", "xlsb"]
    assert account["permissions"] == ["account:write", "import:create"]
    assert [column["label"] for column in account["columns"]] == ACCOUNT_HEADER
    by_field = {column["field"]: column for column in account["columns"]}
    assert by_field["username"]["required"] is True
    assert by_field["nickname"]["required"] is False
    assert by_field["status"]["allowed"] == ["正常", "禁用", "锁定"]
    assert by_field["role_name"]["allowed"] is None


@pytest.mark.parametrize(
    ("permissions", "visible"),
    [
        (["account:write", "import:create"], ["account"]),
        (["account:write", "role:write"], []),
        (["account:read", "role:read", "import:create"], []),
        (["*"], ["account", "role"]),
    ],
    ids=["account-importer", "no-import-create", "readers", "everything"],
)
async def test_only_the_types_the_caller_may_import_are_listed(
    client: TestClient[Any, Any],
    db: asyncpg.Connection[Any],
    permissions: list[str],
    visible: list[str],
) -> None:
    user = ApiUser(client, issue_token(SECRET, await add_account(db, "clerk", permissions)))

    status, body = await user.get("/api/import-types")

    assert status == 200
    assert [item["name"] for item in body["items"]] == visible


async def template(user: ApiUser, path: str) -> tuple[int, bytes, dict[str, str]]:
    response = await user.client.get(path, headers=user.headers)
    return response.status, await response.read(), dict(response.headers)


async def test_the_xlsx_template_has_the_header_an_example_and_drop_down_lists(
    admin: ApiUser,
) -> None:
    status, content, headers = await template(admin, "/api/import-types/account/template")

    assert status == 200
    assert headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert headers["Content-Disposition"].startswith('attachment; filename="account.xlsx"')
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    sheet = workbook.worksheets[0]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == ACCOUNT_HEADER
    assert len(rows) == 2
    assert rows[1][ACCOUNT_HEADER.index("状态")] == "正常"
    validations = sheet.data_validations.dataValidation
    assert [(v.type, v.formula1, str(v.sqref)) for v in validations] == [
        ("list", '"正常,禁用,锁定"', "E2:E1048576")
    ]


async def test_the_csv_template_is_utf8_with_a_bom_and_an_example_row(admin: ApiUser) -> None:
    status, content, headers = await template(admin, "/api/import-types/role/template?format=csv")

    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    rows = csv_rows(content)
    assert rows[0] == ["名称", "描述", "权限"]
    assert len(rows) == 2


async def test_a_template_of_an_unknown_type_or_format_is_refused_naming_it(
    admin: ApiUser,
) -> None:
    unknown_type, type_body = await admin.get("/api/import-types/no_such_type/template")
    bad_format, format_body = await admin.get("/api/import-types/account/template?format=pdf")

    assert unknown_type == 422
    assert type_body["error"]["details"][0]["field"] == "type"
    assert bad_format == 422
    assert format_body["error"]["details"][0]["field"] == "format"


async def test_a_template_needs_the_import_permissions(
    client: TestClient[Any, Any], db: asyncpg.Connection[Any]
) -> None:
    reader = await add_account(db, "reader", ["account:read"])
    user = ApiUser(client, issue_token(SECRET, reader))

    status, body = await user.get("/api/import-types/account/template")

    assert status == 403, body
