"""Hostile and awkward uploads over real HTTP and a real worker: a clear failure with a stable code
(at upload time where the bytes tell, else the task fails) and nothing written; and the csv files
Excel really saves (GB18030, a BOM, cells over several lines, records of other widths) imported
with their rows numbered as the user sees them."""

from __future__ import annotations

import io
import random
import string
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.xlsb_writer import Formula, XlsbCell, write_xlsb
from settings import Settings
from tests.imports import (
    ACCOUNT_HEADER,
    accounts_state,
    csv_bytes,
    form,
    import_task,
    imported,
    stored_files,
    upload,
    uploads_in_progress,
    write_xlsx,
)
from tests.support import ApiUser, xlsx_rows
from tests.workers import drain_queue

SHEET = "xl/worksheets/sheet1.xml"
SHARED_STRINGS = "xl/sharedStrings.xml"
MIB = 1024 * 1024
# Billion laughs: ten entities, each ten of the one before.
LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    + "]>"
)
XXE = '<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'


def letters(count: int) -> str:
    """Text that compresses as little as prose does (a bomb check must not take it for one)."""
    return "".join(random.Random(count).choices(string.ascii_letters, k=count))


def rewritten(path: Path, changes: dict[str, Callable[[bytes], bytes]]) -> bytes:
    """The zip at ``path`` with the named parts changed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            change = changes.get(info.filename)
            out.writestr(info.filename, change(data) if change else data)
    return buffer.getvalue()


def accounts_xlsx(tmp_path: Path, rows: list[list[Any]] | None = None) -> Path:
    rows = rows or [["hostile_1", "一"], ["hostile_2", "二"]]
    return write_xlsx(tmp_path / "accounts.xlsx", {"Sheet1": [["用户名", "昵称"], *rows]})


def with_doctype(doctype: str, *, before: str = "") -> Callable[[bytes], bytes]:
    """A part with ``doctype`` after its XML declaration (``before`` it, e.g. a long comment)."""

    def change(data: bytes) -> bytes:
        declaration, rest = data.split(b"?>", 1)
        return declaration + b"?>" + (before + doctype).encode() + rest

    return change


async def refused_at_upload(
    admin: ApiUser, settings: Settings, content: bytes, file_name: str
) -> tuple[int, dict[str, Any]]:
    """The API's answer to an upload it refuses, having kept nothing."""
    status, body, _ = await upload(admin, form(content, file_name=file_name, mode="apply"))
    assert stored_files(settings) == []
    assert uploads_in_progress(settings) == []
    return status, body["error"]


async def run_import(
    admin: ApiUser,
    settings: Settings,
    content: bytes,
    file_name: str,
    *,
    worker_settings: Settings | None = None,
    **fields: str,
) -> dict[str, Any]:
    """Upload ``content`` (apply, abort unless ``fields`` say otherwise) and run it to its end."""
    task = await imported(admin, form(content, file_name=file_name, **{"mode": "apply", **fields}))
    await drain_queue(worker_settings or settings)
    return await import_task(admin, task["id"])


async def test_a_member_that_compresses_past_any_workbook_is_refused_at_upload(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    bomb = rewritten(
        accounts_xlsx(tmp_path),
        {SHEET: lambda data: data.replace(b"</worksheet>", b" " * (40 * MIB) + b"</worksheet>")},
    )
    assert len(bomb) < MIB

    status, error = await refused_at_upload(admin, settings, bomb, "accounts.xlsx")

    assert status == 422, error
    assert error["code"] == "compression_ratio_too_high"
    assert error["params"]["part"] == SHEET
    assert error["params"]["ratio"] > 100
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_member_that_unpacks_past_a_gibibyte_is_refused_at_upload(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(accounts_xlsx(tmp_path)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb,
    ):
        for info in source.infolist():
            if info.filename != SHEET:
                bomb.writestr(info.filename, source.read(info.filename))
        with bomb.open(SHEET, "w", force_zip64=True) as sheet:
            for _ in range(1100):
                sheet.write(b" " * MIB)

    status, error = await refused_at_upload(admin, settings, buffer.getvalue(), "accounts.xlsx")

    assert status == 422, error
    assert error["code"] == "unpacked_too_large"
    assert error["params"] == {"part": SHEET, "bytes": 1100 * MIB, "limit": 1024**3}
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_zip_listing_more_parts_than_any_workbook_is_refused_at_upload(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(accounts_xlsx(tmp_path)) as source, zipfile.ZipFile(buffer, "w") as out:
        for info in source.infolist():
            out.writestr(info, source.read(info.filename))
        for number in range(25_000):
            out.writestr(zipfile.ZipInfo(f"xl/media/{number}"), b"")

    status, error = await refused_at_upload(admin, settings, buffer.getvalue(), "accounts.xlsx")

    assert status == 422, error
    assert error["code"] == "too_many_parts"
    assert error["params"]["limit"] == 1024 * 1024
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


@pytest.mark.parametrize(
    ("part", "doctype", "before"),
    [
        (SHARED_STRINGS, LAUGHS, ""),
        (SHEET, LAUGHS, ""),
        (SHEET, XXE, ""),
        # A DTD after a prolog longer than the first bytes looked at is still found.
        (SHEET, LAUGHS, "<!--" + "x" * 100_000 + "-->"),
    ],
    ids=["laughs-in-shared-strings", "laughs-in-sheet", "external-entity", "after-long-prolog"],
)
async def test_an_xml_part_that_declares_a_dtd_fails_the_import_and_writes_nothing(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    part: str,
    doctype: str,
    before: str,
) -> None:
    before_state = await accounts_state(db)
    hostile = rewritten(accounts_xlsx(tmp_path), {part: with_doctype(doctype, before=before)})

    task = await run_import(admin, settings, hostile, "accounts.xlsx")

    assert task["status"] == "failed", task
    assert task["error_code"] == "xml_dtd_refused"
    assert task["error_params"] == {"part": part}
    assert task["counts"] is None
    assert await accounts_state(db) == before_state


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
async def test_a_file_of_more_rows_than_an_import_may_hold_fails_and_writes_nothing(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    file_format: str,
) -> None:
    rows = [[f"many_{n}", "x"] for n in range(150)]
    content = (
        csv_bytes([["用户名", "昵称"], *rows])
        if file_format == "csv"
        else accounts_xlsx(tmp_path, rows).read_bytes()
    )
    capped = settings.model_copy(update={"max_import_rows": 100})
    before = await accounts_state(db)

    task = await run_import(
        admin, settings, content, f"many.{file_format}", worker_settings=capped, on_error="skip"
    )

    assert task["status"] == "failed", task
    assert task["error_code"] == "too_many_import_rows"
    assert task["error_params"] == {"limit": 100}
    assert await accounts_state(db) == before


@pytest.mark.slow
async def test_a_csv_of_ten_million_rows_fails_and_writes_nothing(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any]
) -> None:
    content = "用户名\r\n".encode() + b"a\r\n" * 10_000_000
    before = await accounts_state(db)
    task = await imported(admin, form(content, file_name="ten_million.csv", mode="apply"))

    started = time.monotonic()
    await drain_queue(settings)
    took_s = time.monotonic() - started
    done = await import_task(admin, task["id"])

    print(f"10,000,000 csv rows refused in {took_s:.1f} s")
    assert done["status"] == "failed", done
    assert done["error_code"] == "too_many_import_rows"
    assert done["error_params"] == {"limit": settings.max_import_rows}
    assert await accounts_state(db) == before


TEN_MB = letters(10 * MIB)


def inline_cell(data: bytes) -> bytes:
    """Sheet 1 with cell B2 holding ten megabytes of text inline."""
    start = data.index(b'<c r="B2"')
    end = data.index(b"</c>", start) + len(b"</c>")
    cell = f'<c r="B2" t="inlineStr"><is><t>{TEN_MB}</t></is></c>'.encode()
    return data[:start] + cell + data[end:]


def long_shared_string(data: bytes) -> bytes:
    return data.replace(b">\xe4\xb8\x80<", f">{TEN_MB}<".encode())  # 一


@pytest.mark.parametrize(
    ("file_format", "make", "params"),
    [
        (
            "csv",
            # Past the first row, which is read here to match the header: COPY reads it.
            lambda _: csv_bytes([["用户名", "昵称"], ["hostile_0", ""], ["hostile_1", TEN_MB]]),
            {"sheet": "csv", "row": 3, "column": "B", "limit": 32_767},
        ),
        (
            "csv",  # a record of another width: the rows are read here, not by COPY
            lambda _: csv_bytes([["用户名", "昵称"], ["hostile_0"], ["hostile_1", TEN_MB]]),
            {"sheet": "csv", "row": 3, "column": None, "limit": 32_767},
        ),
        (
            "xlsx",
            lambda path: rewritten(path, {SHEET: inline_cell}),
            {"sheet": "Sheet1", "row": 2, "column": "B", "limit": 32_767},
        ),
        (
            "xlsx",
            lambda path: rewritten(path, {SHARED_STRINGS: long_shared_string}),
            {"sheet": None, "row": None, "column": None, "limit": 32_767},
        ),
    ],
    ids=["csv", "ragged-csv", "xlsx-inline", "xlsx-shared-string"],
)
async def test_a_cell_of_ten_megabytes_fails_the_import_and_writes_nothing(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    file_format: str,
    make: Callable[[Path], bytes],
    params: dict[str, Any],
) -> None:
    content = make(accounts_xlsx(tmp_path))
    before = await accounts_state(db)

    task = await run_import(admin, settings, content, f"long.{file_format}", on_error="skip")

    assert task["status"] == "failed", task
    assert task["error_code"] == "cell_too_long"
    assert task["error_params"] == params
    assert await accounts_state(db) == before


async def test_a_workbook_cut_in_half_is_refused_at_upload_as_corrupt(
    admin: ApiUser, settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    whole = accounts_xlsx(tmp_path).read_bytes()

    status, error = await refused_at_upload(
        admin, settings, whole[: len(whole) // 2], "accounts.xlsx"
    )

    assert status == 422, error
    assert error["code"] == "corrupt_file"
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_garbage_that_starts_like_a_zip_is_refused_at_upload_as_corrupt(
    admin: ApiUser, settings: Settings
) -> None:
    garbage = b"PK\x03\x04" + bytes(random.Random(1).randbytes(64 * 1024))

    status, error = await refused_at_upload(admin, settings, garbage, "accounts.xlsx")

    assert status == 422, error
    assert error["code"] == "corrupt_file"


def accounts_xlsb(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.xlsb"
    rows: dict[int, list[XlsbCell | Formula]] = {1: ["用户名", "昵称"]}
    rows.update({number: [f"hostile_{number}", "x"] for number in range(2, 200)})
    write_xlsb(path, {"Sheet1": rows})
    return path


def before_row_100(data: bytes) -> bytes:
    """An xlsb sheet cut between two records, where row 100 (BrtRowHdr, 21 bytes) begins."""
    return data[: data.index(b"\x00\x15" + (99).to_bytes(4, "little"))]


@pytest.mark.parametrize(
    ("file_format", "make", "sheet", "cut_short"),
    [
        ("xlsx", accounts_xlsx, SHEET, lambda data: data[: len(data) * 2 // 3]),
        ("xlsb", accounts_xlsb, "xl/worksheets/sheet1.bin", before_row_100),
    ],
)
async def test_a_workbook_whose_sheet_breaks_off_inside_fails_the_import_as_corrupt(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    file_format: str,
    make: Callable[[Path], Path],
    sheet: str,
    cut_short: Callable[[bytes], bytes],
) -> None:
    cut = rewritten(make(tmp_path), {sheet: cut_short})
    before = await accounts_state(db)

    task = await run_import(admin, settings, cut, f"accounts.{file_format}", on_error="skip")

    assert task["status"] == "failed", task
    assert task["error_code"] == "corrupt_file"
    assert await accounts_state(db) == before


# Records of three widths, one cell over two lines, two rows that break the rules: as Excel saves
# a file that someone edited by hand. Rows as the user sees them: the header is row 1.
RAGGED = [
    ["用户名", "昵称", "邮箱"],
    ["ragged_a", "甲"],  # row 2
    ["ragged_b", "乙", "b@example.com", "an extra cell"],  # row 3
    ["ragged_c", "丙", "not-an-email"],  # row 4
    ["ragged_d", "两\r\n行", "d@example.com"],  # row 5, over two lines
    ["ragged_e", "戊", "also bad"],  # row 6
    ["ragged_f", "己", "f@example.com"],  # row 7
]
UNIFORM = [row[:3] + [""] * (3 - len(row[:3])) for row in RAGGED]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gb18030"])
@pytest.mark.parametrize("rows", [RAGGED, UNIFORM], ids=["ragged", "uniform"])
async def test_csv_rows_are_imported_and_numbered_by_record_whatever_the_encoding_and_widths(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    encoding: str,
    rows: list[list[str]],
) -> None:
    task = await run_import(admin, settings, csv_bytes(rows, encoding), "a.csv", on_error="skip")

    assert task["status"] == "completed", task
    assert task["counts"] == {"created": 4, "updated": 0, "unchanged": 0, "rejected": 2}
    assert [(e["row"], e["column"], e["code"]) for e in task["errors"]] == [
        (4, "邮箱", "invalid_format"),
        (6, "邮箱", "invalid_format"),
    ]
    stored = await db.fetch(
        "SELECT username, nickname, email FROM accounts WHERE username LIKE 'ragged_%'"
        " ORDER BY username"
    )
    assert [tuple(record) for record in stored] == [
        ("ragged_a", "甲", None),
        ("ragged_b", "乙", "b@example.com"),
        ("ragged_d", "两\r\n行", "d@example.com"),
        ("ragged_f", "己", "f@example.com"),
    ]


async def test_a_rejected_rows_report_of_a_ragged_csv_holds_the_rows_as_written(
    admin: ApiUser, settings: Settings
) -> None:
    task = await run_import(admin, settings, csv_bytes(RAGGED, "gb18030"), "a.csv")

    response = await admin.client.get(
        f"/api/import-tasks/{task['id']}/report", headers=admin.headers
    )

    assert task["status"] == "failed", task
    assert task["error_code"] == "rows_rejected"
    assert response.status == 200
    report = xlsx_rows(await response.read())
    assert report[0] == [*ACCOUNT_HEADER[:3], "错误原因"]
    assert [row[:3] for row in report[1:]] == [
        ["ragged_c", "丙", "not-an-email"],
        ["ragged_e", "戊", "also bad"],
    ]


def without_sheet(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            if info.filename != SHEET:
                out.writestr(info, source.read(info.filename))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        without_sheet,
        lambda path: rewritten(
            path, {SHEET: lambda data: data.replace(b'<row r="3"', b'<row r="9999999999"')}
        ),
    ],
    ids=["a-named-part-missing", "a-row-past-excels-rows"],
)
async def test_a_forged_workbook_fails_the_import_as_corrupt_and_writes_nothing(
    admin: ApiUser,
    settings: Settings,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    make: Callable[[Path], bytes],
) -> None:
    before = await accounts_state(db)

    task = await run_import(admin, settings, make(accounts_xlsx(tmp_path)), "a.xlsx")

    assert task["status"] == "failed", task
    assert task["error_code"] == "corrupt_file"
    assert await accounts_state(db) == before
