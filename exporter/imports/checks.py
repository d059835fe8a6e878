"""The SQL that checks staged rows and writes the valid ones, built from a handler's fields.

Rows are checked in PostgreSQL, set-based, in three steps, each computed once per row (the
``OFFSET 0`` keeps PostgreSQL from folding a step into the next and computing its values
again wherever they are used):

1. each cell as text (the csv formula guard taken off, an empty cell as NULL);
2. the values to write (enum labels to codes, reference names to keys, lists split), the row of
   the same key in the table, whether each value differs from it, and a repeated key;
3. the row's problems, and its ``action``: ``reject``, ``create``, ``update`` or ``unchanged``.

Formats and lengths are checked only where a value changes, so that what the table already
holds always imports back. Constants in the SQL are the handler's own (labels, patterns),
written as literals; row values are only ever read from the staging table.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping

from exporter.exports.columns import ColumnKind
from exporter.imports.registry import ImportColumn, ImportHandler

REPEATS = "import_repeats"
CHECKED = "import_checked"
# Whether a csv cell carries the guard an export put before text Excel would run as a formula
# (exporter/exports/formats/csv.py): a quote before = @ tab CR LF, or before + or - that no
# plain number follows. The guard goes; any other leading quote is the value's own.
_CSV_UNGUARD = (
    "CASE WHEN left({v}, 1) = '''' AND (substr({v}, 2, 1) IN ('=', '@', E'\\t', E'\\r', E'\\n')"
    " OR (substr({v}, 2, 1) IN ('+', '-') AND substr({v}, 2) !~ '^[+-][0-9]+([.][0-9]+)?$'))"
    " THEN substr({v}, 2) ELSE {v} END"
)


class FieldKind(enum.Enum):
    TEXT = "text"
    CHOICE = "choice"
    REFERENCE = "reference"
    LIST = "list"
    DATETIME = "datetime"


# A date as people type it: 2026-01-31, 2026/1/31, 2026.1.31 or 2026年1月31日, with or without
# a time (8:05, 08:05:09, 08:05:09.5); an export writes 2026-01-31 08:05:09. A plain number is
# an Excel serial (days since 1899-12-30), as a csv saved from Excel may hold.
DATE_PATTERN = (
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?)?$"
)
SERIAL_PATTERN = r"^\d{1,6}(\.\d+)?$"


@dataclasses.dataclass(frozen=True)
class TargetColumn:
    """What the database says of a column a field is written to."""

    not_null: bool


@dataclasses.dataclass(frozen=True)
class Staged:
    """Where a staging table keeps what the checks read. ``sheet`` and ``row_no`` are SQL over
    a row alias written ``{s}``; ``fields`` names each field's column; a row counts only where
    ``counts`` (SQL over ``s``) holds."""

    table: str
    sheet: str
    row_no: str
    fields: Mapping[str, str]
    counts: str = "true"


def literal(value: str) -> str:
    """A constant of the handler as an SQL string literal (standard_conforming_strings on)."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A name the registry checked as an identifier, quoted."""
    return '"' + name + '"'


def kind_of(column: ImportColumn) -> FieldKind:
    declared = column.declared
    if declared.references is not None:
        return FieldKind.REFERENCE
    if declared.split is not None:
        return FieldKind.LIST
    if column.is_enum:
        return FieldKind.CHOICE
    if column.export.kind is ColumnKind.DATETIME:
        return FieldKind.DATETIME
    return FieldKind.TEXT


def _problem(column: str, code: str, params: str = "'{}'::jsonb") -> str:
    return (
        f"jsonb_build_object('column', {literal(column)}, 'code', {literal(code)},"
        f" 'params', {params})"
    )


def _when(condition: str, column: str, code: str, params: str = "'{}'::jsonb") -> str:
    return f"CASE WHEN {condition} THEN {_problem(column, code, params)} END"


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """The statements that check staged rows and write the valid ones."""

    count_rows: str
    find_repeats: str
    # Keeps only the rows that are rejected, created or updated: an unchanged row is counted
    # (the rows staged less those kept), and writing it out would cost most of the check.
    check_rows: str
    update_rows: str | None
    insert_rows: str


@dataclasses.dataclass(frozen=True)
class _Field:
    """One column within the check: its index, declaration, kind, label and target."""

    index: int
    column: ImportColumn
    kind: FieldKind
    label: str
    not_null: bool
    is_key: bool
    time_zone: str

    @property
    def x(self) -> str:
        return f"x_{self.index}"

    @property
    def p(self) -> str:
        return f"p_{self.index}"

    @property
    def w(self) -> str:
        return f"w_{self.index}"

    @property
    def d(self) -> str:
        return f"d_{self.index}"

    def text(self, staged: Staged, unguard: bool) -> str:
        """Step 1: the cell as text."""
        cell = f"s.{ident(staged.fields[self.column.field])}"
        return f"nullif({_CSV_UNGUARD.format(v=cell) if unguard else cell}, '')"

    def step_1(self, staged: Staged, unguard: bool) -> str:
        """Step 1: the cell as text, and a date's parts."""
        text = f"{self.text(staged, unguard)} AS {self.x}"
        if self.kind is not FieldKind.DATETIME:
            return text
        parts = f"regexp_match(btrim({self.text(staged, unguard)}), {literal(DATE_PATTERN)})"
        return f"{text}, {parts} AS {self.p}"

    def _datetime(self) -> str:
        p, x, zone = f"n.{self.p}", f"n.{self.x}", literal(self.time_zone)
        year, month, day = f"{p}[1]::int", f"{p}[2]::int", f"{p}[3]::int"
        hour, minute = f"coalesce({p}[4], '0')::int", f"coalesce({p}[5], '0')::int"
        second = f"coalesce({p}[6], '0')::float8"
        last_day = f"extract(day FROM make_date({year}, {month}, 1) + interval '1 month - 1 day')"
        # In this order, so that make_date and make_timestamptz only see values they take.
        valid = (
            f"{year} >= 1 AND {month} BETWEEN 1 AND 12 AND {day} BETWEEN 1 AND {last_day}"
            f" AND {hour} < 24 AND {minute} < 60 AND {second} < 60"
        )
        return (
            f"CASE WHEN {p} IS NOT NULL THEN CASE WHEN {valid} THEN make_timestamptz("
            f"{year}, {month}, {day}, {hour}, {minute}, {second}, {zone}) END"
            f" WHEN btrim({x}) ~ {literal(SERIAL_PATTERN)} THEN (timestamp '1899-12-30'"
            f" + btrim({x})::numeric * interval '1 day') AT TIME ZONE {zone} END"
        )

    def join(self) -> str | None:
        """Step 2: the lookup of a reference."""
        reference = self.column.declared.references
        if reference is None:
            return None
        match, key = ident(reference.match), ident(reference.key)
        return (
            f"LEFT JOIN (SELECT DISTINCT ON ({match}) {match} AS name, {key} AS key "
            f"FROM {ident(reference.table)} ORDER BY {match}, {key}) ref_{self.index} "
            f"ON ref_{self.index}.name = nullif(btrim(n.{self.x}), '')"
        )

    def value(self) -> str:
        """Step 2: the value to write."""
        x = f"n.{self.x}"
        if self.kind is FieldKind.CHOICE:
            choices = json.dumps(dict(self.column.choices), ensure_ascii=False)
            return f"({literal(choices)}::jsonb ->> lower(btrim({x})))"
        if self.kind is FieldKind.REFERENCE:
            return f"ref_{self.index}.key"
        if self.kind is FieldKind.DATETIME:
            return self._datetime()
        if self.kind is FieldKind.LIST:
            separator = literal(self.column.declared.split or ",")
            return (
                f"ARRAY(SELECT btrim(item) FROM unnest(string_to_array({x}, {separator}))"
                " AS item WHERE btrim(item) <> '')"
            )
        return f"coalesce({x}, '')" if self.not_null else x

    def differs(self) -> str:
        """Step 2: whether the value differs from the table's (an empty text and NULL are the
        same: an export writes both as an empty cell)."""
        stored = f"t.{ident(self.column.declared.column)}"
        if self.kind is FieldKind.TEXT and not self.not_null:
            return f"coalesce({stored}, '') <> coalesce({self.value()}, '')"
        if self.kind is FieldKind.DATETIME:
            # A file holds whole seconds (what an export writes).
            return f"date_trunc('second', {stored}) IS DISTINCT FROM {self.value()}"
        return f"{stored} IS DISTINCT FROM {self.value()}"

    def problems(self) -> list[str]:
        """Step 3: what may be wrong with the value."""
        declared, label = self.column.declared, self.label
        x, w = f"v.{self.x}", f"v.{self.w}"
        given = f"nullif(btrim({x}), '') IS NOT NULL"
        found: list[str] = []
        if self.kind is FieldKind.CHOICE:
            allowed = literal(", ".join(self.column.export.labels.values()))
            found.append(
                _when(
                    f"{given} AND {w} IS NULL",
                    label,
                    "unknown_choice",
                    f"jsonb_build_object('allowed', {allowed})",
                )
            )
        if self.kind is FieldKind.DATETIME:
            found.append(_when(f"{given} AND {w} IS NULL", label, "invalid_date"))
        if self.kind is FieldKind.REFERENCE:
            found.append(
                _when(
                    f"{given} AND {w} IS NULL",
                    label,
                    "unknown_reference",
                    f"jsonb_build_object('value', btrim({x}))",
                )
            )
        needed = declared.required or (self.not_null and self.kind is not FieldKind.TEXT)
        if needed and not self.is_key:
            empty = f"cardinality({w}) = 0" if self.kind is FieldKind.LIST else f"NOT {given}"
            found.append(_when(empty, label, "required"))
        # Checked only where the value changes: what the table holds imports back.
        unchanged = "v.found" if self.is_key else f"v.found AND NOT v.{self.d}"
        if self.kind is FieldKind.TEXT and declared.max_length is not None:
            limit = declared.max_length
            found.append(
                f"CASE WHEN {unchanged} THEN NULL WHEN char_length({x}) > {limit} THEN "
                + _problem(label, "too_long", f"jsonb_build_object('max_length', {limit})")
                + " END"
            )
        if self.kind is FieldKind.TEXT and declared.pattern is not None:
            found.append(
                f"CASE WHEN {unchanged} THEN NULL WHEN {x} !~ {literal(declared.pattern)} THEN "
                + _problem(label, "invalid_format")
                + " END"
            )
        if self.kind is FieldKind.LIST and declared.item_pattern is not None:
            bad = (
                f"(SELECT item FROM unnest({w}) AS item "
                f"WHERE item !~ {literal(declared.item_pattern)} LIMIT 1)"
            )
            found.append(
                f"CASE WHEN {unchanged} THEN NULL WHEN {bad} IS NOT NULL THEN "
                + _problem(label, "invalid_item", f"jsonb_build_object('item', {bad})")
                + " END"
            )
        return found


def plan_checks(
    handler: ImportHandler,
    columns: tuple[ImportColumn, ...],
    labels: Mapping[str, str],
    targets: Mapping[str, TargetColumn],
    staged: Staged,
    *,
    unguard: bool,
    time_zone: str,
) -> CheckPlan:
    """The SQL for staged rows holding ``columns`` (the key among them). ``labels`` names each
    field as the file's header does, ``targets`` describes the column each field is written
    to, ``unguard`` takes the csv formula guard off; dates are wall times in ``time_zone``."""
    fields = [
        _Field(
            index,
            column,
            kind_of(column),
            labels[column.field],
            targets[column.field].not_null,
            column is handler.key_column,
            time_zone,
        )
        for index, column in enumerate(columns)
    ]
    key = next(field for field in fields if field.is_key)
    others = [field for field in fields if not field.is_key]
    table, key_column = ident(handler.table), ident(key.column.declared.column)
    first = staged.row_no.format(s="first")
    texts = ", ".join(field.step_1(staged, unguard) for field in fields)
    step_1 = (
        f"SELECT s.seq, {staged.sheet.format(s='s')} AS sheet, {staged.row_no.format(s='s')}"
        f" AS row_no, {texts} FROM {staged.table} s WHERE {staged.counts} OFFSET 0"
    )
    step_2 = (
        "SELECT n.*, "
        + ", ".join(f"{field.value()} AS {field.w}" for field in fields)
        + "".join(f", {field.differs()} AS {field.d}" for field in others)
        + f", t.ctid IS NOT NULL AS found, {first} AS first_row,"
        f" {staged.sheet.format(s='first')} AS first_sheet FROM ({step_1}) n "
        + " ".join(join for field in fields if (join := field.join()))
        + f" LEFT JOIN {table} t ON t.{key_column} = n.{key.x}"
        f" LEFT JOIN {REPEATS} r ON r.key = n.{key.x} AND r.first_seq <> n.seq"
        f" LEFT JOIN {staged.table} first ON first.seq = r.first_seq OFFSET 0"
    )
    key_problem = (
        f"CASE WHEN v.{key.x} IS NULL THEN {_problem(key.label, 'required')}"
        " WHEN v.first_row IS NOT NULL THEN "
        + _problem(
            key.label,
            "duplicate_key",
            f"jsonb_build_object('value', v.{key.x}, 'first_row', v.first_row,"
            " 'first_sheet', v.first_sheet)",
        )
        + " END"
    )
    problems = [key_problem, *(p for field in fields for p in field.problems())]
    changed = " OR ".join(f"v.{field.d}" for field in others) or "false"
    written = ", ".join(field.w for field in fields)
    check_rows = (
        f"CREATE TEMP TABLE {CHECKED} ON COMMIT DROP AS SELECT * FROM ("
        f"SELECT seq, sheet, row_no, problems, {written}, "
        "CASE WHEN cardinality(problems) > 0 THEN 'reject' WHEN NOT found THEN 'create'"
        " WHEN changed THEN 'update' ELSE 'unchanged' END AS action FROM ("
        f"SELECT v.*, ({changed}) AS changed, "
        f"array_remove(ARRAY[{', '.join(problems)}]::jsonb[], NULL) AS problems "
        f"FROM ({step_2}) v) AS checked) AS acted WHERE action <> 'unchanged'"
    )
    update_rows = (
        f"UPDATE {table} t SET "
        + ", ".join(f"{ident(field.column.declared.column)} = c.{field.w}" for field in others)
        + f" FROM {CHECKED} c WHERE c.action = 'update' AND t.{key_column} = c.{key.w}"
        if others
        else None
    )
    insert_rows = (
        f"INSERT INTO {table} ("
        + ", ".join(ident(field.column.declared.column) for field in fields)
        + f") SELECT {', '.join(f'c.{field.w}' for field in fields)}"
        f" FROM {CHECKED} c WHERE c.action = 'create' ORDER BY c.seq"
    )
    key_text = key.text(staged, unguard)
    find_repeats = (
        f"CREATE TEMP TABLE {REPEATS} ON COMMIT DROP AS "
        f"SELECT {key_text} AS key, min(seq) AS first_seq FROM {staged.table} s "
        f"WHERE {staged.counts} AND {key_text} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
    )
    count_rows = f"SELECT count(*) FROM {staged.table} s WHERE {staged.counts}"
    return CheckPlan(count_rows, find_repeats, check_rows, update_rows, insert_rows)
