"""An export imported back unchanged over HTTP changes nothing: csv (its formula guard taken off),
xlsx (text that looks like a formula stays text), an xlsx that rolled over into several sheets,
and an xlsb of the same rows."""

from __future__ import annotations

import functools
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest

from bench.xlsb_writer import XlsbCell, write_xlsb
from exporter.exports.formats import xlsx as xlsx_format
from settings import Settings
from tests.imports import (
    ACCOUNT_HEADER,
    accounts_state,
    csv_bytes,
    form,
    import_finished,
    imported,
    write_xlsx,
)
from tests.support import ApiUser, csv_rows, xlsx_rows
from tests.workers import running_worker

# Nicknames that Excel would run as formulas, and some that look like it and are not.
AWKWARD = {
    "user0000001": "=1+1",
    "user0000002": "+86 138 0000 0000",
    "user0000003": "-x",
    "user0000004": "@home",
    "user0000005": "\tindented",
    "user0000006": '=HYPERLINK("http://example.com","click")',
    "user0000007": "'quoted",
    "user0000008": "-5",
    "user0000009": "+8613800138000",
    # Quotes of the value's own before what the guard guards: guarded too, to come back whole.
    "user0000010": "'=already quoted",
    "user0000011": "''+two quotes",
    "user0000012": "'",
}
ROLLED_SHEET_ROWS = 100


async def exported_awkward(
    admin: ApiUser, db: asyncpg.Connection[Any], file_format: str
) -> tuple[str, bytes]:
    """The accounts' state once they have the AWKWARD nicknames, and their export."""
    await db.executemany(
        "UPDATE accounts SET nickname = $2 WHERE username = $1", list(AWKWARD.items())
    )
    return await accounts_state(db), await admin.export("account", file_format)


async def import_back(admin: ApiUser, content: bytes, file_name: str) -> dict[str, Any]:
    task = await imported(admin, form(content, file_name=file_name, mode="apply"))
    return await import_finished(admin, task["id"])


async def all_unchanged(db: asyncpg.Connection[Any]) -> dict[str, int]:
    total: int = await db.fetchval("SELECT count(*) FROM accounts")
    return {"created": 0, "updated": 0, "unchanged": total, "rejected": 0}


@pytest.mark.usefixtures("worker")
async def test_an_exported_csv_imports_back_unchanged_and_its_guard_comes_off(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    before, exported = await exported_awkward(admin, db, "csv")
    nicknames = {row[1]: row[2] for row in csv_rows(exported)[1:]}

    done = await import_back(admin, exported, "accounts.csv")

    assert nicknames["user0000001"] == "'=1+1"  # guarded in the file
    assert nicknames["user0000008"] == "-5"  # a plain number needs no guard
    assert nicknames["user0000010"] == "''=already quoted"
    assert nicknames["user0000012"] == "'"
    assert done["status"] == "completed", done
    assert done["counts"] == await all_unchanged(db)
    assert await accounts_state(db) == before


@pytest.mark.usefixtures("worker")
async def test_a_guarded_csv_cell_is_imported_without_its_guard(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    rows = [
        ["用户名", "昵称"],
        ["guard_1", "'=SUM(A1:A2)"],
        ["guard_2", "'-5"],
        ["guard_3", "'x"],
        ["guard_4", "''@x"],
    ]

    done = await import_back(admin, csv_bytes(rows), "guarded.csv")

    assert done["status"] == "completed", done
    stored = await db.fetch(
        "SELECT username, nickname FROM accounts WHERE username LIKE 'guard_%' ORDER BY username"
    )
    assert [tuple(record) for record in stored] == [
        ("guard_1", "=SUM(A1:A2)"),
        ("guard_2", "'-5"),  # no export guards a plain number: the quote is the value's
        ("guard_3", "'x"),
        ("guard_4", "'@x"),
    ]


@pytest.mark.usefixtures("worker")
async def test_an_exported_xlsx_imports_back_unchanged_and_formulas_stay_text(
    admin: ApiUser, db: asyncpg.Connection[Any]
) -> None:
    before, exported = await exported_awkward(admin, db, "xlsx")

    done = await import_back(admin, exported, "accounts.xlsx")

    assert done["status"] == "completed", done
    assert done["counts"] == await all_unchanged(db)
    assert await accounts_state(db) == before
    assert (
        await db.fetchval("SELECT nickname FROM accounts WHERE username = 'user0000006'")
        == AWKWARD["user0000006"]
    )


@pytest.mark.usefixtures("worker")
async def test_a_formula_typed_as_an_xlsx_string_cell_is_imported_as_text(
    admin: ApiUser, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    hyperlink = '=HYPERLINK("http://evil.example","click me")'
    path = write_xlsx(tmp_path / "a.xlsx", {"Sheet1": [["用户名", "昵称"], ["link_1", hyperlink]]})

    done = await import_back(admin, path.read_bytes(), "a.xlsx")

    assert done["status"] == "completed", done
    assert await db.fetchval("SELECT nickname FROM accounts WHERE username = 'link_1'") == hyperlink


async def test_an_xlsx_export_rolled_over_into_several_sheets_imports_back_unchanged(
    admin: ApiUser,
    db: asyncpg.Connection[Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Written here, not by helper processes, so that the sheets roll over every 100 rows.
    writing_here = settings.model_copy(update={"encode_processes": 0})
    monkeypatch.setattr(
        xlsx_format,
        "XlsxExportWriter",
        functools.partial(xlsx_format.XlsxExportWriter, max_sheet_rows=ROLLED_SHEET_ROWS),
    )
    before = await accounts_state(db)
    total = await db.fetchval("SELECT count(*) FROM accounts")
    async with running_worker(writing_here):
        exported = await admin.export("account", "xlsx")
        workbook = openpyxl.load_workbook(io.BytesIO(exported), read_only=True)
        sheets = len(workbook.sheetnames)
        workbook.close()

        done = await import_back(admin, exported, "accounts.xlsx")

    assert sheets == -(-total // ROLLED_SHEET_ROWS) > 1
    assert done["status"] == "completed", done
    assert done["counts"] == await all_unchanged(db)
    assert await accounts_state(db) == before


def xlsb_cell(value: Any) -> XlsbCell:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, int):
        return float(value)
    assert value is None or isinstance(value, str), value
    return value


@pytest.mark.usefixtures("worker")
async def test_an_xlsb_of_the_exported_rows_imports_back_unchanged(
    admin: ApiUser, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    before, exported = await exported_awkward(admin, db, "xlsx")
    rows = xlsx_rows(exported)
    path = tmp_path / "accounts.xlsb"
    write_xlsb(
        path,
        {"账号": {number: [xlsb_cell(v) for v in row] for number, row in enumerate(rows, 1)}},
    )

    done = await import_back(admin, path.read_bytes(), "accounts.xlsb")

    assert done["format"] == "xlsb"
    assert done["status"] == "completed", done
    assert done["counts"] == await all_unchanged(db)
    assert await accounts_state(db) == before
    assert ACCOUNT_HEADER[0] in rows[0]
