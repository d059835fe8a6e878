"""What a file format is to the rest of the exporter: a name, a content type, how it shapes the
export's SQL and how it writes the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from exporter.db import Connection
from exporter.exports.columns import Column
from exporter.exports.encoders import EncoderPool
from exporter.exports.sql import ExportSql


@dataclass(frozen=True)
class ParallelEncoding:
    """Processes to spread large xlsx exports over, and from what size on to use them; a large
    csv export is copied over as many connections at once. ``rows_in_database``: the rows of a
    split xlsx export are rendered by the database, not written by xlsxwriter."""

    encoders: EncoderPool
    min_rows: int
    rows_in_database: bool = True


@dataclass(frozen=True)
class FileJob:
    """One file to write: the export's statements (shaped by the format), the rows counted in
    the export's snapshot, and where the file goes (its directory takes the scratch files).
    ``dsn`` is the server of that snapshot, where connections reading parts of it go."""

    sql: ExportSql
    total: int
    title: str
    columns: tuple[Column, ...]
    path: Path
    time_zone: str
    dsn: str
    parallel: ParallelEncoding | None


class RowProgress(Protocol):
    """Rows written so far; a writer advances it by batches or sets it outright."""

    done: int

    def advance(self, rows: int) -> None: ...


class FileFormat(Protocol):
    """One file format. ``name`` is what tasks.format stores, what the API takes, and
    the file's suffix (``export.<name>``); the storage and task layers use it as such, without
    the registry."""

    @property
    def name(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    @property
    def grows_at_end(self) -> bool:
        """Whether the file, while written, only ever grows at its end (never rewritten
        behind): then it can be published while it is written."""
        ...

    def value_sql(self, column: Column, value: str, args: list[Any]) -> str:
        """The select-list entries that give the file ``column``'s typed ``value``
        (see :data:`exporter.exports.sql.ValueSql`)."""
        ...

    async def write(self, conn: Connection, job: FileJob, progress: RowProgress) -> int:
        """Write the rows of ``job.sql`` to ``job.path``; the number of data rows written.

        ``conn`` is inside the export's repeatable-read transaction, so that writers that read
        in parts (``job.parallel``) can read the same snapshot on connections of their own.
        """
        ...
