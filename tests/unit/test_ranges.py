"""How an export's rows are cut into ranges for parts written at once: xlsx parts per sheet,
csv parts by the work of copying and of skipping to their start."""

from __future__ import annotations

import pytest

from exporter.exports.formats.xlsx_workbook import MAX_SHEET_DATA_ROWS
from exporter.exports.ranges import SKIP_COST, Range, plan_copy_ranges, plan_ranges


def assert_cover_every_row_once_in_order(ranges: list[Range], total: int) -> None:
    assert [r.offset for r in ranges] == [0, *(r.offset + r.limit for r in ranges[:-1])]
    assert sum(r.limit for r in ranges) == total
    assert all(r.limit > 0 for r in ranges)


def test_ranges_split_each_sheet_evenly_and_never_cross_a_sheet() -> None:
    assert plan_ranges(7, 2, max_sheet_rows=3) == [
        Range(sheet=1, first_row=1, offset=0, limit=2),
        Range(sheet=1, first_row=3, offset=2, limit=1),
        Range(sheet=2, first_row=1, offset=3, limit=2),
        Range(sheet=2, first_row=3, offset=5, limit=1),
        Range(sheet=3, first_row=1, offset=6, limit=1),
    ]
    assert plan_ranges(0, 4, max_sheet_rows=MAX_SHEET_DATA_ROWS) == []
    assert (
        sum(r.limit for r in plan_ranges(2_500_001, 3, max_sheet_rows=MAX_SHEET_DATA_ROWS))
        == 2_500_001
    )


@pytest.mark.parametrize("total", [1, 2, 5, 9, 10, 11, 31])
@pytest.mark.parametrize("parts_per_sheet", [1, 2, 3, 7])
def test_every_row_lands_once_at_its_place_on_its_sheet(total: int, parts_per_sheet: int) -> None:
    max_sheet_rows = 10

    ranges = plan_ranges(total, parts_per_sheet, max_sheet_rows=max_sheet_rows)

    assert_cover_every_row_once_in_order(ranges, total)
    for r in ranges:
        # Where a range's first row goes follows from its offset alone.
        assert r.offset == (r.sheet - 1) * max_sheet_rows + r.first_row - 1
        assert r.first_row + r.limit - 1 <= max_sheet_rows
    sheets = {r.sheet for r in ranges}
    assert sheets == set(range(1, -(-total // max_sheet_rows) + 1))
    for sheet in sheets:
        sizes = [r.limit for r in ranges if r.sheet == sheet]
        assert len(sizes) <= parts_per_sheet
        assert max(sizes) - min(sizes) <= 1


def test_later_ranges_are_smaller_by_the_rows_they_skip_first() -> None:
    ranges = plan_copy_ranges(1_000_000, 4)

    assert [r.offset for r in ranges] == [0] + [r.offset + r.limit for r in ranges[:-1]]
    assert sum(r.limit for r in ranges) == 1_000_000
    work = [r.limit + SKIP_COST * r.offset for r in ranges]
    assert max(work) - min(work) < 2
    assert [r.limit for r in ranges] == sorted((r.limit for r in ranges), reverse=True)
    assert [(r.offset, r.limit) for r in plan_copy_ranges(2, 3)] == [(0, 1), (1, 1)]
    assert plan_copy_ranges(0, 2) == []


@pytest.mark.parametrize("total", [1, 3, 4, 17, 1_000, 12_345])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 8])
def test_copy_ranges_cover_every_row_once_in_at_most_the_parts_asked(
    total: int, parts: int
) -> None:
    ranges = plan_copy_ranges(total, parts)

    assert_cover_every_row_once_in_order(ranges, total)
    assert len(ranges) <= parts
    # A csv is one sheet; the data row follows from the offset.
    assert all((r.sheet, r.first_row) == (1, r.offset + 1) for r in ranges)
    if parts == 1:
        assert ranges == [Range(sheet=1, first_row=1, offset=0, limit=total)]
