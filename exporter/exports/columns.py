"""What an export type's columns are: a header, the SQL of the value, and how it is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum


class ColumnKind(StrEnum):
    """How a column's values are written: text cells, numbers, dates, or labels of stored codes."""

    TEXT = "text"
    INTEGER = "integer"
    DATETIME = "datetime"
    ENUM = "enum"


@dataclasses.dataclass(frozen=True)
class Column:
    """One exported column: its header, the SQL expression giving its value, and its kind.

    ``sql`` is written by the handler author, never built from user input. For ENUM columns,
    ``labels`` maps each stored code to the label shown in the file. ``field`` names the value
    in JSON (a list page's items); ``nullable=False`` says the value is never null there.
    """

    label: str
    sql: str
    kind: ColumnKind = ColumnKind.TEXT
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    field: str = ""
    nullable: bool = True
