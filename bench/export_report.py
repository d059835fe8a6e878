"""The export rows of the bench's table: csv and xlsx through the API and worker, the two makers
of a split xlsx's rows against each other, and where the time of a large xlsx export goes."""

from __future__ import annotations

from bench.ceiling_process import CeilingResult
from bench.exports import ExportBatch
from bench.measurements import Measurements
from bench.stack import DEFAULT_PARALLEL_MIN_ROWS
from bench.table import (
    MB,
    NO_TARGET,
    Row,
    Target,
    lag_text,
    mb_text,
    rate_text,
    ratio_of,
    target_of,
    times_text,
)
from bench.xlsx_split import XlsxSplit

# The issues' targets, each compared with figures from the same run.
CSV_MAX_TIMES_COPY = 1.5
XLSX_MIN_TIMES_WRITER = 0.95
# Issue 16: rows rendered by PostgreSQL, against the xlsxwriter ceiling and the csv export.
XLSX_RENDERED_MIN_TIMES_WRITER = 6.0
XLSX_RENDERED_MAX_TIMES_CSV = 8.0
# Issue 16: the small export no slower than with its rows by xlsxwriter.
XLSX_SMALL_MAX_TIMES_BY_WRITER = 1.0


def export_row(
    what: str, batch: ExportBatch | None, ratio: str = "", check: Target = NO_TARGET
) -> Row:
    if batch is None:
        return Row(what, rate="not measured")
    child = mb_text(batch.child_peak_rss_bytes) if batch.child_peak_rss_bytes else "none"
    return Row(
        what,
        batch.wall_s,
        max(export.download_s for export in batch.exports),
        rate_text(batch.rows_per_s, "rows"),
        rss=f"worker {mb_text(batch.worker_peak_rss_bytes)}, child {child}",
        lag=lag_text(batch.loop_lag_ms),
        ratio=ratio,
        **check,
    )


def seconds_of(item: CeilingResult | ExportBatch | None) -> float | None:
    if item is None:
        return None
    return item.seconds if isinstance(item, CeilingResult) else item.wall_s


def processes_text(encode_processes: int) -> str:
    """How many encoding processes wrote an xlsx export."""
    return "1 process" if encode_processes == 1 else f"{encode_processes} processes"


def _connections(count: int) -> str:
    """How many connections copied a csv export."""
    return "1 connection" if count == 1 else f"{count} connections"


def xlsx_path(m: Measurements, rows: int, processes: int, *, rows_in_database: bool = True) -> str:
    """What made an xlsx export of ``rows`` rows: a split export's rows come from PostgreSQL
    or xlsxwriter (in as many ranges as processes), a smaller one is xlsxwriter's whole."""
    if rows < m.parallel_min_rows:
        return f"{processes_text(processes)}, whole workbook by xlsxwriter"
    ranges = "one range" if processes == 1 else f"{processes} ranges"
    maker = "PostgreSQL" if rows_in_database else "xlsxwriter"
    return f"{processes_text(processes)} ({ranges}), rows by {maker}"


def _xlsx_label(
    m: Measurements, rows: int, processes: int, *, rows_in_database: bool = True
) -> str:
    path = xlsx_path(m, rows, processes, rows_in_database=rows_in_database)
    return f"export xlsx, {rows:,} rows, {path}"


def _joined(*texts: str) -> str:
    return ", ".join(text for text in texts if text)


def _csv_label(m: Measurements) -> str:
    return f"export csv, {m.rows:,} rows, {_connections(m.cores)}"


def _csv_row(m: Measurements) -> Row:
    csv_ratio = ratio_of(seconds_of(m.csv), seconds_of(m.copy))
    return export_row(
        _csv_label(m),
        m.csv,
        ratio=times_text(csv_ratio, "COPY time"),
        check=target_of(csv_ratio, CSV_MAX_TIMES_COPY, most=True),
    )


def _single_rows(m: Measurements) -> list[Row]:
    """csv over one connection, xlsx in one process."""
    # Throughput against the writer's, so more than 1x means faster than one xlsxwriter.
    xlsx_ratio = ratio_of(seconds_of(m.xlsxwriter), seconds_of(m.xlsx))
    return [
        export_row(
            f"export csv, {m.rows:,} rows, {_connections(1)}",
            m.csv_single,
            ratio=times_text(ratio_of(seconds_of(m.csv_single), seconds_of(m.copy)), "COPY time"),
        ),
        export_row(
            _xlsx_label(m, m.rows, 1),
            m.xlsx,
            ratio=times_text(xlsx_ratio, "xlsxwriter"),
            check=target_of(xlsx_ratio, XLSX_MIN_TIMES_WRITER, most=False),
        ),
    ]


def _rendered_row(m: Measurements, processes: int) -> Row:
    batch = m.xlsx_parallel.get(processes)
    writer_ratio = ratio_of(seconds_of(m.xlsxwriter), seconds_of(batch))
    speedup = ratio_of(seconds_of(m.xlsx), seconds_of(batch))
    return export_row(
        _xlsx_label(m, m.rows, processes),
        batch,
        ratio=_joined(times_text(writer_ratio, "xlsxwriter"), times_text(speedup, "1 process")),
        check=target_of(writer_ratio, XLSX_RENDERED_MIN_TIMES_WRITER, most=False),
    )


def _against_csv_row(m: Measurements) -> Row:
    times_csv = ratio_of(seconds_of(m.xlsx_parallel.get(m.cores)), seconds_of(m.csv))
    return Row(
        f"the same xlsx against the csv export ({_connections(m.cores)})",
        ratio=times_text(times_csv, "csv time"),
        **target_of(times_csv, XLSX_RENDERED_MAX_TIMES_CSV, most=True, unit="x csv time"),
    )


def _by_writer_row(m: Measurements) -> Row:
    batch = m.xlsx_by_writer
    writer_ratio = ratio_of(seconds_of(m.xlsxwriter), seconds_of(batch))
    speedup = ratio_of(seconds_of(batch), seconds_of(m.xlsx_parallel.get(m.cores)))
    return export_row(
        _xlsx_label(m, m.rows, m.cores, rows_in_database=False),
        batch,
        ratio=_joined(
            times_text(writer_ratio, "xlsxwriter"),
            times_text(speedup, "as long as rows by PostgreSQL"),
        ),
    )


def _small_rows(m: Measurements) -> list[Row]:
    small = m.small_rows
    by_writer = ratio_of(seconds_of(m.xlsx_small_parallel), seconds_of(m.xlsx_small_by_writer))
    return [
        export_row(
            _xlsx_label(m, small, m.cores),
            m.xlsx_small_parallel,
            ratio=times_text(by_writer, "the time of rows by xlsxwriter"),
            check=target_of(by_writer, XLSX_SMALL_MAX_TIMES_BY_WRITER, most=True),
        ),
        export_row(_xlsx_label(m, small, m.cores, rows_in_database=False), m.xlsx_small_by_writer),
    ]


def export_rows(m: Measurements) -> list[Row]:
    """Every export row of ``make bench``."""
    return [
        _csv_row(m),
        *_single_rows(m),
        *(_rendered_row(m, processes) for processes in m.parallel_processes),
        _against_csv_row(m),
        _by_writer_row(m),
        export_row(f"export csv, {m.small_rows:,} rows", m.csv_small),
        export_row(_xlsx_label(m, m.small_rows, 1), m.xlsx_small),
        *_small_rows(m),
    ]


def xlsx_rows(m: Measurements) -> list[Row]:
    """The export rows of ``make bench-xlsx``: issue 16's figures (the csv export without its
    COPY ceiling, not measured there)."""
    return [
        export_row(_csv_label(m), m.csv),
        _rendered_row(m, m.cores),
        _against_csv_row(m),
        _by_writer_row(m),
        *_small_rows(m),
    ]


def split_rows(split: XlsxSplit | None, export: ExportBatch | None) -> list[Row]:
    """The time split of a large xlsx export: each step's seconds and share of the four."""
    if split is None:
        return []
    steps = [
        (
            "PostgreSQL renders the rows (server side)",
            split.render_s,
            rate_text(split.rows / split.render_s, "rows"),
        ),
        (
            "transfer to the processes (fetch - render)",
            split.transfer_s,
            f"{split.xml_bytes / MB:.0f} MB of sheet XML",
        ),
        (
            "deflate, ISA-L (slowest range)",
            split.deflate_s,
            f"to {split.deflated_bytes / MB:.0f} MB",
        ),
        ("frame (xlsxwriter) + splice", split.splice_s, ""),
    ]
    total = sum(seconds for _, seconds, _ in steps)
    prefix = f"time split, {split.rows:,} rows, {split.ranges} ranges: "
    rows = [
        Row(prefix + what, seconds, rate=rate, ratio=f"{seconds / total:.0%} of the four")
        for what, seconds, rate in steps
    ]
    of_export = ratio_of(total, seconds_of(export))
    rows.append(Row(prefix + "the four", total, ratio=times_text(of_export, "the export's time")))
    return rows


def _lowered_threshold(m: Measurements) -> str:
    if m.parallel_min_rows == DEFAULT_PARALLEL_MIN_ROWS:
        return " (the default)"
    return (
        f" (the default {DEFAULT_PARALLEL_MIN_ROWS:,}, lowered for this smaller run so that "
        "every xlsx export takes the path its row names)"
    )


def xlsx_notes(m: Measurements) -> list[str]:
    notes = [
        "xlsx in N processes: the worker started with EXPORTER_ENCODE_PROCESSES=N; an export of "
        f"at least EXPORTER_PARALLEL_MIN_ROWS={m.parallel_min_rows:,} rows{_lowered_threshold(m)} "
        "is cut into N ranges (one in 1 process), each encoded by a spawned process, spliced "
        "into the frame xlsxwriter writes. Rows by PostgreSQL: EXPORTER_XLSX_ROWS_IN_DATABASE="
        "true (the default), each range's rows rendered by the database in xlsxwriter's bytes "
        "and only compressed (ISA-L) by its process; rows by xlsxwriter: false, the previous "
        "path, xlsxwriter writes each range in its process. The first such export after a "
        "worker start includes spawning the processes. csv in N connections: the same setting "
        "and threshold, the rows copied over N connections at once and joined in order.",
        "Targets: 1 process ≥ 0.95x the xlsxwriter ceiling; rows by PostgreSQL in N processes "
        f"≥ {XLSX_RENDERED_MIN_TIMES_WRITER:g}x the ceiling (after the comma: against the "
        f"1-process export) and ≤ {XLSX_RENDERED_MAX_TIMES_CSV:g}x the time of the csv export "
        f"above; {m.small_rows:,} rows no slower with rows by PostgreSQL than by xlsxwriter.",
    ]
    split = m.xlsx_split
    if split is not None:
        notes.append(_split_note(split))
    return notes


def _split_note(split: XlsxSplit) -> str:
    top = "; ".join(
        f"{function.name} {function.own_s:.2f} s own ({function.cumulative_s:.2f} s cumulative)"
        for function in split.profile_top
    )
    return (
        f"Time split (bench.xlsx_split): the account export's {split.ranges} ranges as the "
        "worker plans them, each in a spawned process, in the snapshot of one transaction, with "
        "the export's session settings and jit off. Render: count and octet_length of the "
        "rendered rows, server side, the ranges at once; transfer: the same rows fetched in "
        "2,000-row batches and discarded, less the render time; deflate: the fetched bytes "
        "through DeflateStream alone (fetching not timed), the slowest range; splice: the frame "
        "by xlsxwriter and assemble_workbook. In the worker each range's deflate runs in a "
        "thread while its next batch is fetched, so the four add up to more than its path. "
        f"Profile: one process encoding range 1 ({split.part_rows:,} rows) for real, "
        f"encode_part under cProfile, {split.part_s:.2f} s with the profiler; most own time: "
        f"{top}. cProfile sees the main thread only: the compression thread shows as waiting. "
        f"Listing by cumulative and own time: {split.profile_listing} (and .prof)."
    )
