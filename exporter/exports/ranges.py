"""Ranges of an export's ordered rows, for writers that spread one export over several workers.

Each range is read on its own connection in the export's snapshot (``OFFSET``/``LIMIT`` over
the same ``ORDER BY``), so the ranges together hold exactly the rows counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Rows ``offset`` … ``offset + limit - 1`` of the export, placed from data row
    ``first_row`` of sheet ``sheet`` (both counted from 1; data row 1 is just below the header)."""

    sheet: int
    first_row: int
    offset: int
    limit: int


def plan_ranges(total: int, parts_per_sheet: int, *, max_sheet_rows: int) -> list[Range]:
    """Cut ``total`` rows into ranges that never cross a sheet, about equal in size."""
    ranges = []
    for sheet, start in enumerate(range(0, total, max_sheet_rows), start=1):
        rows = min(max_sheet_rows, total - start)
        size, extra = divmod(rows, parts_per_sheet)
        position = 0
        for part in range(parts_per_sheet):
            limit = size + (1 if part < extra else 0)
            if limit:
                ranges.append(Range(sheet, position + 1, start + position, limit))
            position += limit
    return ranges


# A range that starts at row k first makes PostgreSQL read and skip k rows; skipping a row costs
# about this share of copying one (1M accounts: the second half took 0.95-1.0 s, the first
# 0.84 s). Later ranges are made smaller by as much, so that all end together.
SKIP_COST = 0.15


def plan_copy_ranges(total: int, parts: int) -> list[Range]:
    """Cut ``total`` rows into ``parts`` ranges whose copy + skip work is about equal.

    With W the work of each and c the skip cost, ``size_k + c * offset_k = W``, so the
    offsets grow as ``offset_k = W * (1 - (1 - c)**k) / c`` and the last one is ``total``.
    """
    keep = 1 - SKIP_COST
    work = total * SKIP_COST / (1 - keep**parts)
    ranges: list[Range] = []
    offset = 0
    for part in range(1, parts + 1):
        end = total if part == parts else round(work * (1 - keep**part) / SKIP_COST)
        if end > offset:
            ranges.append(Range(sheet=1, first_row=offset + 1, offset=offset, limit=end - offset))
            offset = end
    return ranges
