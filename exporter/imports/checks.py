"""The SQL that checks staged rows and writes the valid ones, built from a handler's fields.

Rows are checked in PostgreSQL, set-based: each row's values are normalised (enum labels to
codes, reference names to keys, lists split), compared with the row of the same key, and
given a list of problems; the row's ``action`` is then ``reject``, ``create``, ``update`` or
``unchanged``. Formats and lengths are checked only where a value changes, so that what the
table already holds always imports back. Constants in the SQL are the handler's own (labels,
patterns), written as literals; row values are only ever read from the staging table.
"""

from __future__ import annotations

import dataclasses
import enum
import json

from exporter.imports.registry import ImportColumn, ImportHandler

STAGING = "import_rows"
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


@dataclasses.dataclass(frozen=True)
class TargetColumn:
    """What the database says of a column a field is written to."""

    not_null: bool


def literal(value: str) -> str:
    """A constant of the handler as an SQL string literal (standard_conforming_strings on)."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A name the registry checked as an identifier, quoted."""
    return '"' + name + '"'


def _problem(column: str, code: str, params: str = "'{}'::jsonb") -> str:
    return (
        f"jsonb_build_object('column', {literal(column)}, 'code', {literal(code)},"
        f" 'params', {params})"
    )


def kind_of(column: ImportColumn) -> FieldKind:
    declared = column.declared
    if declared.references is not None:
        return FieldKind.REFERENCE
    if declared.split is not None:
        return FieldKind.LIST
    if column.is_enum:
        return FieldKind.CHOICE
    return FieldKind.TEXT


@dataclasses.dataclass(frozen=True)
class FieldSql:
    """One column's SQL within the check: the value to write, when it counts as empty, when
    it differs from the stored one (None for the key), and the problems it may have."""

    value: str
    empty: str
    differs: str | None
    problems: list[str]


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """The statements of one import: the staging table, the checks, and the writes."""

    create_staging: str
    staging_columns: tuple[str, ...]
    find_repeats: str
    check_rows: str
    update_rows: str | None
    insert_rows: str


def _field_sql(
    column: ImportColumn, raw: str, label: str, target: TargetColumn, is_key: bool, index: int
) -> tuple[FieldSql, str | None]:
    """The column's SQL, and the join it needs (a reference's lookup)."""
    declared = column.declared
    stored = f"t.{ident(declared.column)}"
    text = f"nullif({raw}, '')"
    kind = kind_of(column)
    join = None
    problems: list[str] = []
    if kind is FieldKind.CHOICE:
        choices = literal(json.dumps(dict(column.choices), ensure_ascii=False))
        value = f"({choices}::jsonb ->> lower(btrim({text})))"
        allowed = literal(", ".join(column.export.labels.values()))
        problems.append(
            f"CASE WHEN nullif(btrim({text}), '') IS NOT NULL AND {value} IS NULL THEN "
            + _problem(label, "unknown_choice", f"jsonb_build_object('allowed', {allowed})")
            + " END"
        )
    elif kind is FieldKind.REFERENCE:
        reference = declared.references
        assert reference is not None
        alias, match, key = f"ref_{index}", ident(reference.match), ident(reference.key)
        name = f"nullif(btrim({text}), '')"
        join = (
            f"LEFT JOIN (SELECT DISTINCT ON ({match}) {match} AS name, {key} AS key "
            f"FROM {ident(reference.table)} ORDER BY {match}, {key}) {alias} "
            f"ON {alias}.name = {name}"
        )
        value = f"{alias}.key"
        problems.append(
            f"CASE WHEN {name} IS NOT NULL AND {alias}.key IS NULL THEN "
            + _problem(label, "unknown_reference", f"jsonb_build_object('value', {name})")
            + " END"
        )
    elif kind is FieldKind.LIST:
        value = (
            f"ARRAY(SELECT btrim(item) FROM unnest(string_to_array({text}, "
            f"{literal(declared.split or ',')})) AS item WHERE btrim(item) <> '')"
        )
    else:
        value = f"coalesce({text}, '')" if target.not_null else text
    # Empty as the file has it: a value that names nothing known is a problem of its own.
    empty = (
        f"cardinality({value}) = 0"
        if kind is FieldKind.LIST
        else f"nullif(btrim({text}), '') IS NULL"
    )
    differs = None
    if not is_key:
        loose_text = kind is FieldKind.TEXT and not target.not_null
        differs = (
            f"coalesce({stored}, '') <> coalesce({value}, '')"
            if loose_text
            else f"{stored} IS DISTINCT FROM {value}"
        )
        required = declared.required or (
            target.not_null and kind in (FieldKind.CHOICE, FieldKind.REFERENCE)
        )
        if required:
            problems.append(f"CASE WHEN {empty} THEN {_problem(label, 'required')} END")
    # Formats are checked only where the value changes: what the table holds imports back.
    changes = "t.ctid IS NULL" if differs is None else f"(t.ctid IS NULL OR {differs})"
    if kind is FieldKind.TEXT and declared.max_length is not None:
        limit = declared.max_length
        problems.append(
            f"CASE WHEN char_length({text}) > {limit} AND {changes} THEN "
            + _problem(label, "too_long", f"jsonb_build_object('max_length', {limit})")
            + " END"
        )
    if kind is FieldKind.TEXT and declared.pattern is not None:
        problems.append(
            f"CASE WHEN {text} !~ {literal(declared.pattern)} AND {changes} THEN "
            + _problem(label, "invalid_format")
            + " END"
        )
    if kind is FieldKind.LIST and declared.item_pattern is not None:
        bad = (
            f"(SELECT item FROM unnest({value}) AS item "
            f"WHERE item !~ {literal(declared.item_pattern)} LIMIT 1)"
        )
        problems.append(
            f"CASE WHEN {bad} IS NOT NULL AND {changes} THEN "
            + _problem(label, "invalid_item", f"jsonb_build_object('item', {bad})")
            + " END"
        )
    return FieldSql(value, empty, differs, problems), join


def plan_checks(
    handler: ImportHandler,
    columns: tuple[ImportColumn, ...],
    labels: dict[str, str],
    targets: dict[str, TargetColumn],
    *,
    unguard: bool,
) -> CheckPlan:
    """The SQL for rows holding ``columns`` (the key among them); ``labels`` names each field
    as the file's header does, ``targets`` describes each field's column, ``unguard`` strips
    the csv formula guard."""
    key = handler.key_column
    key_index = columns.index(key)
    table, key_column, key_staged = (
        ident(handler.table),
        ident(key.declared.column),
        ident(key.field),
    )
    fields: list[FieldSql] = []
    joins: list[str] = []
    for index, column in enumerate(columns):
        staged = f"s.{ident(column.field)}"
        raw = _CSV_UNGUARD.format(v=staged) if unguard else staged
        sql, join = _field_sql(
            column, raw, labels[column.field], targets[column.field], column is key, index
        )
        fields.append(sql)
        joins.extend([join] if join else [])
    key_value = fields[key_index].value
    key_label = labels[key.field]
    key_problem = (
        f"CASE WHEN nullif(s.{key_staged}, '') IS NULL THEN {_problem(key_label, 'required')}"
        " WHEN r.first_seq IS NOT NULL THEN "
        + _problem(
            key_label,
            "duplicate_key",
            f"jsonb_build_object('value', s.{key_staged}, 'first_row', first.row_no,"
            " 'first_sheet', first.sheet)",
        )
        + " END"
    )
    problems = [key_problem, *(p for field in fields for p in field.problems)]
    differs = [field.differs for field in fields if field.differs is not None]
    written = ", ".join(f"w_{index}" for index in range(len(columns)))
    check_rows = (
        f"CREATE TEMP TABLE {CHECKED} ON COMMIT DROP AS "
        f"SELECT seq, sheet, row_no, problems, {written}, "
        "CASE WHEN cardinality(problems) > 0 THEN 'reject' WHEN NOT found THEN 'create'"
        " WHEN changed THEN 'update' ELSE 'unchanged' END AS action FROM ("
        "SELECT s.seq, s.sheet, s.row_no, "
        + ", ".join(f"{field.value} AS w_{index}" for index, field in enumerate(fields))
        + ", t.ctid IS NOT NULL AS found, "
        + f"({' OR '.join(differs) or 'false'}) AS changed, "
        + f"array_remove(ARRAY[{', '.join(problems)}]::jsonb[], NULL) AS problems "
        + f"FROM {STAGING} s "
        + " ".join(joins)
        + f" LEFT JOIN {table} t ON t.{key_column} = {key_value}"
        f" LEFT JOIN {REPEATS} r ON r.key = {key_value} AND r.first_seq <> s.seq"
        f" LEFT JOIN {STAGING} first ON first.seq = r.first_seq"
        ") AS checked"
    )
    others = [(index, column) for index, column in enumerate(columns) if column is not key]
    update_rows = (
        f"UPDATE {table} t SET "
        + ", ".join(f"{ident(column.declared.column)} = c.w_{index}" for index, column in others)
        + f" FROM {CHECKED} c WHERE c.action = 'update' AND t.{key_column} = c.w_{key_index}"
        if others
        else None
    )
    insert_rows = (
        f"INSERT INTO {table} ("
        + ", ".join(ident(column.declared.column) for column in columns)
        + f") SELECT {', '.join(f'c.w_{index}' for index in range(len(columns)))}"
        f" FROM {CHECKED} c WHERE c.action = 'create' ORDER BY c.seq"
    )
    return CheckPlan(
        create_staging=(
            f"CREATE TEMP TABLE {STAGING} (seq integer, sheet smallint, row_no integer, "
            + ", ".join(f"{ident(column.field)} text" for column in columns)
            + ") ON COMMIT DROP"
        ),
        staging_columns=("seq", "sheet", "row_no", *(column.field for column in columns)),
        find_repeats=(
            f"CREATE TEMP TABLE {REPEATS} ON COMMIT DROP AS "
            f"SELECT {key_value} AS key, min(seq) AS first_seq FROM {STAGING} s "
            f"WHERE s.{key_staged} <> '' GROUP BY 1 HAVING count(*) > 1"
        ),
        check_rows=check_rows,
        update_rows=update_rows,
        insert_rows=insert_rows,
    )
