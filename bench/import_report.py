"""The import rows of the bench's table, and the notes that say where each import's time went."""

from __future__ import annotations

from bench.imports import ImportCounts, ImportCrash, ImportRun, ImportSize
from bench.statement_split import STEPS
from bench.table import (
    MB,
    NO_TARGET,
    Row,
    Target,
    lag_text,
    mb_text,
    met_text,
    rate_text,
    ratio_of,
    target_of,
    times_text,
)

# The targets (issue 13, Figures).
CSV_MIN_ROWS_PER_S = 100_000
CSV_MAX_TIMES_COPY = 3
XLSX_MIN_ROWS_PER_S = 50_000
PEAK_RSS_MAX_MB = 200
# "Flat": the bound the exports' memory growth is held to.
RSS_GROWTH_MAX_MB = 20
FORMATS = ("csv", "xlsx", "xlsb")


def _both(first: Target, second: Target) -> Target:
    """Two targets in one cell, met when both are."""
    mets = (first["met"], second["met"])
    met = "n/a" if "n/a" in mets else met_text(all(m == "yes" for m in mets))
    return Target(target=f"{first['target']}, {second['target']}", met=met)


def _check(run: ImportRun, copy_s: float) -> Target:
    if run.file_format == "csv":
        return _both(
            target_of(run.rows_per_s, CSV_MIN_ROWS_PER_S, most=False, unit=" rows/s"),
            target_of(ratio_of(run.seconds, copy_s), CSV_MAX_TIMES_COPY, most=True, unit="x COPY"),
        )
    if run.file_format == "xlsx":
        return target_of(run.rows_per_s, XLSX_MIN_ROWS_PER_S, most=False, unit=" rows/s")
    return NO_TARGET


def _counts_text(counts: ImportCounts) -> str:
    return ", ".join(f"{name} {value:,}" for name, value in vars(counts).items() if value)


def _what(run: ImportRun | ImportCrash) -> str:
    if run.expected.created:
        return f"import csv apply, {run.expected.created:,} new rows (all created)"
    return f"import {run.file_format} {run.mode}, {run.expected.unchanged:,} rows (all unchanged)"


def _run_row(run: ImportRun, copy_s: float) -> Row:
    rate = rate_text(run.rows_per_s, "rows")
    if run.counts != run.expected:
        rate += f"; counts NOT as expected: {_counts_text(run.counts)}"
    return Row(
        _what(run),
        run.seconds,
        rate=rate,
        rss=f"worker {mb_text(run.worker_peak_rss_bytes)}",
        lag=lag_text(run.loop_lag_ms),
        ratio=times_text(ratio_of(run.seconds, copy_s), "COPY time"),
        **_check(run, copy_s),
    )


def _crash_row(crash: ImportCrash) -> Row:
    return Row(_what(crash), rate=f"not measured: the worker died ({crash.reason})")


def _peak_mb(size: ImportSize | None, file_format: str) -> float | None:
    if size is None:
        return None
    peaks = [r.worker_peak_rss_bytes for r in size.runs if r.file_format == file_format]
    return max(peaks) / MB if peaks else None


def _growth_row(full: ImportSize | None, small: ImportSize | None, file_format: str) -> Row:
    at_full, at_small = _peak_mb(full, file_format), _peak_mb(small, file_format)
    growth = None if at_full is None or at_small is None else at_full - at_small
    sizes = "" if full is None or small is None else f", {small.rows:,} → {full.rows:,} rows"
    return Row(
        f"memory growth, {file_format} imports{sizes}",
        rss="" if growth is None else f"worker {round(growth):+d}",
        **target_of(growth, RSS_GROWTH_MAX_MB, most=True, unit=" MB more"),
    )


def import_rows(full: ImportSize | None, small: ImportSize | None) -> list[Row]:
    """The COPY baseline, every import at full size, peak memory, and its growth by format."""
    if full is None:
        return [Row("imports", rate="not measured")]
    peak = max((r.worker_peak_rss_bytes for r in full.runs), default=0) / MB
    return [
        Row(
            f"baseline: COPY FROM the csv into a bare table, {full.rows:,} rows",
            full.copy_s,
            rate=rate_text(full.copy_rows_per_s, "rows"),
        ),
        *(_run_row(run, full.copy_s) for run in full.runs),
        *(_crash_row(crash) for crash in full.crashes),
        Row(
            f"memory: worker peak, {full.rows:,}-row imports",
            rss=f"{peak:.0f}",
            **target_of(peak, PEAK_RSS_MAX_MB, most=True, unit=" MB"),
        ),
        *(_growth_row(full, small, file_format) for file_format in FORMATS),
    ]


def _split_note(run: ImportRun) -> str:
    split = run.split
    if split is None:
        return f"{_what(run)}: not sampled"
    steps = ", ".join(f"{step} {split.seconds[step]:.1f} s" for step in STEPS)
    rest = run.seconds - sum(split.seconds.values())
    top = "; ".join(f"`{head}…` {seconds:.1f} s" for head, seconds in split.top_statements)
    return f"{_what(run)}, {run.seconds:.1f} s: {steps}, the rest {rest:.1f} s. Longest: {top}"


def import_notes(full: ImportSize | None, small: ImportSize | None) -> list[str]:
    if full is None:
        return []
    small_rows = "a tenth of the" if small is None else f"{small.rows:,}"
    notes = [
        "Imports: the accounts exported through the API as csv and as xlsx (written whole by "
        "one process), an xlsb of the xlsx's cells (bench/xlsb_writer.py: shared strings once "
        "each, dates as numbers in a date style, as Excel writes them), and the csv with "
        "every username made new. Each is POSTed to /api/import-tasks (on_error=abort) and "
        "timed from the POST, upload included, until the task reads finished, by a worker "
        "started afresh for each format and warmed up by a 1,000-row csv import; each task is "
        "deleted after. The ratio is the "
        "import's time over a COPY FROM of the same csv file (asyncpg, into a temporary "
        "table of 9 text columns, as the import's staging is) in this run. Worker peak RSS "
        "sampled every 50 ms; growth compares the largest peak of a format's imports at "
        f"{small_rows} rows with the same at {full.rows:,}.",
        "Where an import's time goes (pg_stat_activity sampled every 50 ms, no change to the "
        "code measured): staging is the COPY into the staging table (for xlsx and xlsb it "
        "lasts while the worker reads and feeds the rows), checking the other statements of "
        "the import's transaction, writing the UPDATE or INSERT into accounts, between "
        "statements the worker's Python inside the transaction; the rest is the upload, the "
        "queue, the commit and polling.",
    ]
    notes.extend(_split_note(run) for run in full.runs)
    if small is not None:
        notes.extend(
            f"{_what(crash)}: not measured, the worker died ({crash.reason})"
            for crash in small.crashes
        )
    return notes
