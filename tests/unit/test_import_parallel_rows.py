"""An xlsx upload read by several processes gives exactly what reading it in this process
gives: the same records in the same order, the same sheets, the same errors; and closing it
ends the processes at once."""

from __future__ import annotations

import datetime
import multiprocessing
import re
import threading
import time
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from exporter.errors import ExporterError
from exporter.exports.registry import load_handlers
from exporter.imports.parallel_rows import ParallelRows, ReadingStopped
from exporter.imports.readers import ReadLimits
from exporter.imports.registry import ImportHandler, import_registry
from exporter.imports.upload_rows import Record, RowSource, UploadRows

HEADER = ["ID", "用户名", "昵称", "邮箱", "手机号", "状态", "角色"]
# Enough rows for a sheet to be cut into many runs (a run is 64 KiB of XML).
ROWS = 3000
LIMITS = ReadLimits(max_rows=100_000)


@pytest.fixture(scope="module")
def handler() -> ImportHandler:
    load_handlers()
    return import_registry.get("account")


def write_workbook(path: Path, **options: object) -> None:
    """Two sheets of accounts (the second a continuation), a notes sheet between them that is
    skipped, an empty sheet; empty rows, rows with text only outside the type's columns,
    numbers and dates among the cells."""
    workbook = xlsxwriter.Workbook(str(path), options)
    dates = workbook.add_format({"num_format": "yyyy-mm-dd"})
    for name in ("账户", "notes", "账户 (2)", "empty"):
        sheet = workbook.add_worksheet(name)
        if name == "empty":
            continue
        sheet.write_row(0, 0, HEADER if name != "notes" else ["note"])
        line = 1
        for index in range(ROWS):
            if index % 97 == 5:
                line += 1  # an empty row
                continue
            if index % 89 == 7:
                sheet.write_string(line, 0, f"only an id {index}")
            else:
                sheet.write_row(
                    line,
                    0,
                    [index, f"{name}-user{index}", f"昵称 <{index}> & co", f"u{index}@x.cn"],
                )
                sheet.write_number(line, 4, 13800000000 + index)
                sheet.write_datetime(line, 5, datetime.datetime(2024, 1, 2), dates)
                sheet.write_string(line, 6, "viewer")
            line += 1
    workbook.close()


def read_all(source: RowSource) -> tuple[list[Record], list[str]]:
    source.start()
    records: list[Record] = []
    while batch := source.records(500):
        records += batch
    source.close()
    return records, list(source.sheets)


def in_order(path: Path, handler: ImportHandler, limits: ReadLimits = LIMITS) -> object:
    return outcome(UploadRows(path, handler, limits))


def in_parallel(
    path: Path, handler: ImportHandler, limits: ReadLimits = LIMITS, processes: int = 2
) -> object:
    return outcome(ParallelRows(path, handler, limits, processes))


def outcome(source: RowSource) -> object:
    """What reading gives: the records and sheets, or the error's code and params."""
    try:
        return read_all(source)
    except ExporterError as exc:
        return (exc.code, exc.params)
    finally:
        assert not multiprocessing.active_children()


def rewrite_sheet(
    path: Path, part: str, change: re.Pattern[bytes], to: bytes, name: str = "changed"
) -> Path:
    target = path.with_name(f"{name}-{path.name}")
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            data = original.read(member)
            if member.filename == part:
                data = change.sub(to, data)
            copy.writestr(member, data, zipfile.ZIP_DEFLATED)
    return target


@pytest.mark.parametrize(
    "options", [{}, {"constant_memory": True}], ids=["shared strings", "inline strings"]
)
@pytest.mark.parametrize("processes", [2, 3])
def test_a_workbook_read_in_parallel_gives_the_records_read_in_order(
    tmp_path: Path, handler: ImportHandler, options: dict[str, object], processes: int
) -> None:
    path = tmp_path / "accounts.xlsx"
    write_workbook(path, **options)

    expected = in_order(path, handler)
    records, sheets = expected  # type: ignore[misc]
    assert sheets == ["账户", "账户 (2)"]
    assert len(records) > ROWS
    assert in_parallel(path, handler, processes=processes) == expected


@pytest.mark.parametrize(
    ("part", "change", "to", "sheet"),
    [
        # The second sheet of accounts loses its rows' r attributes after the first row.
        ("sheet3", rb'<row r="(?!1")[0-9]+"', b"<row", "账户 (2)"),
        # A comment midway through the first: the rest of it is no longer in the plain form.
        ("sheet1", rb'(<row r="2000")', rb"<!-- x -->\1", "账户"),
    ],
    ids=["rows without numbers", "not plain midway"],
)
def test_a_sheet_that_a_share_cannot_read_is_read_on_in_order(
    tmp_path: Path,
    handler: ImportHandler,
    caplog: pytest.LogCaptureFixture,
    part: str,
    change: bytes,
    to: bytes,
    sheet: str,
) -> None:
    path = tmp_path / "accounts.xlsx"
    write_workbook(path, constant_memory=True)
    changed = rewrite_sheet(path, f"xl/worksheets/{part}.xml", re.compile(change), to)
    caplog.set_level("INFO", "exporter.imports")

    assert in_parallel(changed, handler) == in_order(changed, handler)
    assert f"sheet {sheet!r} read in order from its run" in caplog.text


def test_errors_are_those_of_reading_in_order(tmp_path: Path, handler: ImportHandler) -> None:
    path = tmp_path / "accounts.xlsx"
    write_workbook(path, constant_memory=True)
    too_long = rewrite_sheet(
        path, "xl/worksheets/sheet3.xml", re.compile(rb"-user2500<"), b"x" * 40 + b"<"
    )
    broken_off = rewrite_sheet(
        path, "xl/worksheets/sheet3.xml", re.compile(rb'(?s)<row r="2000".*'), b"", "broken"
    )
    short_cells = ReadLimits(max_rows=100_000, max_cell_chars=30)

    for limits, upload in [
        (short_cells, too_long),
        (LIMITS, broken_off),
        (ReadLimits(max_rows=ROWS + 10), path),
        (ReadLimits(max_rows=2 * ROWS + 10), path),
    ]:
        expected = in_order(upload, handler, limits)
        assert isinstance(expected[0], str)  # type: ignore[index]
        assert in_parallel(upload, handler, limits) == expected


def test_sheets_with_other_columns_are_refused_as_in_order(
    tmp_path: Path, handler: ImportHandler
) -> None:
    path = tmp_path / "accounts.xlsx"
    write_workbook(path, constant_memory=True)
    other = rewrite_sheet(path, "xl/worksheets/sheet3.xml", re.compile("角色".encode()), b"x")

    assert in_order(other, handler) == (
        "headers_differ",
        {"sheet": "账户 (2)", "first_sheet": "账户"},
    )
    assert in_parallel(other, handler) == in_order(other, handler)


def test_stopping_ends_the_processes_at_once(tmp_path: Path, handler: ImportHandler) -> None:
    path = tmp_path / "accounts.xlsx"
    write_workbook(path, constant_memory=True)
    rows = ParallelRows(path, handler, LIMITS, 2)
    # (Whether the processes are still reading here depends on timing; the integration test
    # of a cancelled import reads too much for them to be done.)
    rows.start()
    stopped: list[BaseException] = []

    def read_on() -> None:
        try:
            while rows.records(1):
                pass
        except ReadingStopped as exc:
            stopped.append(exc)

    reader = threading.Thread(target=read_on)
    reader.start()
    stopped_at = time.monotonic()
    rows.stop()
    reader.join(5)

    assert time.monotonic() - stopped_at < 1
    assert not multiprocessing.active_children()
    assert not reader.is_alive()
    assert stopped
