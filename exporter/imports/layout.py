"""Where a sheet keeps a type's columns: its header row matched to the import's fields, and its
cells turned into the text the database checks."""

from __future__ import annotations

import dataclasses
import datetime
import operator
from collections.abc import Callable, Sequence

from exporter.errors import ExporterError
from exporter.imports.readers import CellValue
from exporter.imports.registry import ImportColumn, ImportHandler


class HeaderMissing(ExporterError):
    """No sheet starts with a header row naming the type's key column."""

    status = 422
    code = "missing_header"


class HeadersDiffer(ExporterError):
    """Two sheets of one upload give different sets of the type's columns."""

    status = 422
    code = "headers_differ"


@dataclasses.dataclass(frozen=True)
class CellPicker:
    """Takes the text of the type's columns out of a sheet's rows, from their positions."""

    positions: tuple[int, ...]
    last: int = dataclasses.field(init=False, repr=False, compare=False)
    pick: Callable[[Sequence[CellValue]], tuple[CellValue, ...]] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "last", max(self.positions))
        object.__setattr__(self, "pick", picker(self.positions))

    def __reduce__(self) -> tuple[type[CellPicker], tuple[tuple[int, ...]]]:
        # The itemgetter is made again where it is unpickled (a lambda does not travel).
        return (CellPicker, (self.positions,))

    def values(self, cells: Sequence[CellValue]) -> list[str | None]:
        """The row's text for each of the columns: numbers written as Excel shows them, dates
        in ISO form, an empty cell as None."""
        last = self.last
        if len(cells) <= last:
            cells = [*cells, *([None] * (last + 1 - len(cells)))]
        # Comprehensions and itemgetter rather than a loop: this runs for every row read.
        return [
            None
            if cell is None or cell == ""
            else cell
            if cell.__class__ is str
            else cell_text(cell)
            for cell in self.pick(cells)
        ]


def picker(positions: tuple[int, ...]) -> Callable[[Sequence[CellValue]], tuple[CellValue, ...]]:
    if len(positions) == 1:
        position = positions[0]
        return lambda cells: (cells[position],)
    return operator.itemgetter(*positions)


@dataclasses.dataclass(frozen=True)
class SheetLayout:
    """The type's columns a sheet holds, in the handler's order, and where each one is."""

    columns: tuple[ImportColumn, ...]
    positions: tuple[int, ...]
    header: tuple[CellValue, ...]
    picker: CellPicker = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "picker", CellPicker(self.positions))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(column.field for column in self.columns)

    def values(self, cells: Sequence[CellValue]) -> list[str | None]:
        """The row's text for each of the columns (see ``CellPicker.values``)."""
        return self.picker.values(cells)


@dataclasses.dataclass(frozen=True)
class HeaderNames:
    """What a header row is matched against: the key's field, and each column's field with
    the headers it is known by. Plain data, so that a reading process can match sheets."""

    key: str
    columns: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def of(cls, handler: ImportHandler) -> HeaderNames:
        return cls(handler.key, tuple((column.field, column.headers) for column in handler.columns))

    def positions(self, header: Sequence[CellValue]) -> dict[str, int] | None:
        """Where each column named by the header is, or None when the key column is not
        named. A column named twice is read from the first place it appears; a header no
        column takes is ignored (ID, timestamps)."""
        found: dict[str, int] = {}
        for position, cell in enumerate(header):
            name = header_key(cell)
            if not name:
                continue
            for field, headers in self.columns:
                if name in headers and field not in found:
                    found[field] = position
        return found if self.key in found else None

    def picker(self, header: Sequence[CellValue]) -> CellPicker | None:
        """The picker of a sheet with this first row, or None when it is not the type's."""
        found = self.positions(header)
        if found is None:
            return None
        return CellPicker(tuple(found[field] for field, _ in self.columns if field in found))


def header_key(value: CellValue) -> str:
    """How a header cell is compared with the labels: trimmed, case folded."""
    return "" if value is None else cell_text(value).strip().lower()


def match_header(handler: ImportHandler, header: Sequence[CellValue]) -> SheetLayout | None:
    """The layout a sheet with this first row has, or None when the row does not name the key
    column (the sheet is then not one of the type's)."""
    found = HeaderNames.of(handler).positions(header)
    if found is None:
        return None
    columns = tuple(column for column in handler.columns if column.field in found)
    return SheetLayout(columns, tuple(found[c.field] for c in columns), tuple(header))


def same_columns(first: SheetLayout, sheet: str, layout: SheetLayout, first_sheet: str) -> None:
    """Raise HeadersDiffer unless ``layout`` gives the same columns as the first sheet's: a
    column one sheet sets and another leaves out would mean two things in one import."""
    if layout.fields != first.fields:
        raise HeadersDiffer(
            f"Sheet {sheet!r} has other columns than sheet {first_sheet!r}",
            params={"sheet": sheet, "first_sheet": first_sheet},
        )


def no_header(handler: ImportHandler) -> HeaderMissing:
    label = handler.key_column.label
    return HeaderMissing(
        f"No sheet starts with a header row naming the column {label!r}",
        params={"column": label},
    )


def cell_text(value: str | int | float | bool | datetime.datetime) -> str:
    """A cell that is not empty as text: what an import compares and stores."""
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # Excel keeps 15 significant digits; an integral number (a phone typed as a number)
        # reads as Excel shows it, without ".0".
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    return str(value)
