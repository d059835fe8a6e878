"""One table from one run: each measurement, its ratio to its ceiling, the issue's targets.

Printed as markdown, and written as ``report.md`` and ``report.json`` in the run's folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.ceiling_process import CeilingResult
from bench.export_report import (
    export_row,
    export_rows,
    processes_text,
    seconds_of,
    split_rows,
    xlsx_notes,
    xlsx_path,
    xlsx_rows,
)
from bench.exports import ExportBatch
from bench.import_report import import_notes, import_rows
from bench.load import LoadResult
from bench.measurements import Measurements
from bench.stack import API_PROCESSES
from bench.storage_report import storage_notes, storage_rows
from bench.table import (
    COLUMNS,
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

# The targets, each compared with figures from the same run.
PEAK_RSS_MAX_MB = 150
RSS_GROWTH_MAX_MB = 20
LOOP_LAG_MAX_MS = 100
CONCURRENT_MAX_TIMES_SEQUENTIAL = 0.6
POST_MIN_TIMES_TRIVIAL = 0.25
API_P99_MAX_MS = 50

XLSXWRITER_CEILING = "ceiling: xlsxwriter constant_memory, no DB, {rows:,} rows"


@dataclass
class Report:
    rows: list[Row]
    notes: list[str]
    meta: dict[str, Any]
    measurements: Measurements
    error: str | None = None

    def markdown(self) -> str:
        table = [list(COLUMNS), *(row.cells() for row in self.rows)]
        widths = [max(len(line[col]) for line in table) for col in range(len(COLUMNS))]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        parts = [line(table[0]), rule, *(line(cells) for cells in table[1:]), ""]
        if "command" in self.meta:
            parts.append(
                f"Measured by `{self.meta['command']}`, started {self.meta.get('started')}, on "
                f"{self.meta.get('cpus', '?')} cores ({self.meta.get('machine', '?')}).\n"
            )
        parts.extend(f"- {note}" for note in self.notes)
        if self.error:
            parts.append(f"\n**The run stopped early:** {self.error}")
        return "\n".join(parts) + "\n"

    def write(self, run_dir: Path) -> tuple[Path, Path]:
        run_dir.mkdir(parents=True, exist_ok=True)
        markdown = run_dir / "report.md"
        markdown.write_text(self.markdown(), encoding="utf-8")
        body = {
            "meta": self.meta,
            "error": self.error,
            "table": [asdict(row) for row in self.rows],
            "notes": self.notes,
            "measurements": asdict(self.measurements),
        }
        data = run_dir / "report.json"
        data.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
        return markdown, data


def _ceiling_row(what: str, ceiling: CeilingResult | None) -> Row:
    if ceiling is None:
        return Row(what, rate="not measured")
    rate = rate_text(ceiling.rows_per_s, "rows")
    return Row(what, ceiling.seconds, rate=rate, rss=mb_text(ceiling.peak_rss_bytes))


def _ceiling_rows(m: Measurements) -> list[Row]:
    n = f"{m.rows:,}"
    return [
        _ceiling_row(f"ceiling: COPY (query) TO STDOUT CSV, {n} rows", m.copy),
        _ceiling_row(f"COPY of the csv export's own statement, {n} rows", m.copy_csv),
        _ceiling_row(f"asyncpg cursor, rows discarded, {n} rows", m.cursor),
        _ceiling_row(XLSXWRITER_CEILING.format(rows=m.rows), m.xlsxwriter),
    ]


def _growth_row(
    what: str, m: Measurements, full: ExportBatch | None, small: ExportBatch | None
) -> Row:
    """Each process's growth on its own: the worker's, and the largest encoding process's."""
    growth: dict[str, float] = {}
    if full is not None and small is not None:
        growth["worker"] = (full.worker_peak_rss_bytes - small.worker_peak_rss_bytes) / MB
        if full.child_peak_rss_bytes and small.child_peak_rss_bytes:
            growth["child"] = (full.child_peak_rss_bytes - small.child_peak_rss_bytes) / MB
    return Row(
        f"memory growth {what}, {m.small_rows:,} → {m.rows:,} rows",
        rss=", ".join(f"{process} {round(mb):+d}" for process, mb in growth.items()),
        **target_of(
            max(growth.values(), default=None), RSS_GROWTH_MAX_MB, most=True, unit=" MB more"
        ),
    )


def _full_size_batches(m: Measurements) -> list[ExportBatch]:
    batches = [m.csv, m.xlsx, *m.xlsx_parallel.values(), m.xlsx_by_writer]
    return [batch for batch in batches if batch is not None]


def _memory_rows(m: Measurements) -> list[Row]:
    full = _full_size_batches(m)
    worker = max((b.worker_peak_rss_bytes for b in full), default=None)
    child = max((b.child_peak_rss_bytes for b in full), default=None)
    worker_mb = None if worker is None else worker / MB
    child_mb = None if not child else child / MB
    small_parallel = m.xlsx_small_parallel
    return [
        Row(
            f"memory: worker peak, {m.rows:,}-row exports",
            rss="" if worker_mb is None else f"{worker_mb:.0f}",
            **target_of(worker_mb, PEAK_RSS_MAX_MB, most=True, unit=" MB"),
        ),
        Row(
            f"memory: largest encoding process, {m.rows:,}-row exports",
            rss="none spawned" if child_mb is None else f"{child_mb:.0f}",
            **target_of(child_mb, PEAK_RSS_MAX_MB, most=True, unit=" MB"),
        ),
        _growth_row("csv", m, m.csv, m.csv_small),
        _growth_row(f"xlsx, {xlsx_path(m, m.small_rows, 1)}", m, m.xlsx, m.xlsx_small),
        _growth_row(
            f"xlsx, {xlsx_path(m, m.small_rows, m.cores)}",
            m,
            m.xlsx_parallel.get(m.cores),
            small_parallel,
        ),
        _growth_row(
            f"xlsx, {xlsx_path(m, m.small_rows, m.cores, rows_in_database=False)}",
            m,
            m.xlsx_by_writer,
            m.xlsx_small_by_writer,
        ),
    ]


def _lag_row(m: Measurements) -> Row:
    batches = [
        *_full_size_batches(m),
        m.csv_small,
        m.xlsx_small,
        m.xlsx_small_parallel,
        m.xlsx_small_by_writer,
        m.xlsx_quarter,
        m.xlsx_quarter_concurrent,
    ]
    lags = [b.loop_lag_ms for b in batches if b is not None and b.loop_lag_ms is not None]
    worst = max(lags, default=None)
    return Row(
        "worker event loop: worst lag during any export",
        lag=lag_text(worst),
        **target_of(worst, LOOP_LAG_MAX_MS, most=True, unit=" ms"),
    )


def _concurrency_rows(m: Measurements) -> list[Row]:
    quarter = f"{m.quarter_rows:,}"
    alone = seconds_of(m.xlsx_quarter)
    sequential = None if alone is None else 4 * alone
    ratio = ratio_of(seconds_of(m.xlsx_quarter_concurrent), sequential)
    return [
        export_row(
            f"export xlsx, {quarter} rows, alone, {xlsx_path(m, m.quarter_rows, 1)}",
            m.xlsx_quarter,
        ),
        export_row(
            f"4 concurrent xlsx exports of {quarter} rows, 4 users, {processes_text(m.cores)}",
            m.xlsx_quarter_concurrent,
            ratio=times_text(ratio, "4 x alone"),
            check=target_of(ratio, CONCURRENT_MAX_TIMES_SEQUENTIAL, most=True),
        ),
    ]


def _load_row(
    what: str, result: LoadResult | None, ratio: str = "", check: Target = NO_TARGET
) -> Row:
    if result is None:
        return Row(what, rate="not measured")
    errors = f", {result.errors} errors" if result.errors else ""
    return Row(
        what,
        result.seconds,
        rate=rate_text(result.requests_per_s, "req") + errors,
        latency=f"{result.p50_ms:.1f} / {result.p99_ms:.1f}",
        ratio=ratio,
        **check,
    )


def _api_rows(m: Measurements, clients: int) -> list[Row]:
    post_share = ratio_of(
        None if m.post is None else m.post.requests_per_s,
        None if m.trivial is None else m.trivial.requests_per_s,
    )
    post_p99 = None if m.post is None else m.post.p99_ms
    list_p99 = None if m.listing is None else m.listing.p99_ms
    return [
        _load_row(f"trivial aiohttp GET /ping, {clients} clients", m.trivial),
        _load_row(
            f"POST /api/export-tasks, {clients} clients",
            m.post,
            ratio=times_text(post_share, "trivial req/s"),
            check=target_of(post_share, POST_MIN_TIMES_TRIVIAL, most=False),
        ),
        Row(
            "POST /api/export-tasks: p99",
            latency="" if post_p99 is None else f"{post_p99:.1f}",
            **target_of(post_p99, API_P99_MAX_MS, most=True, unit=" ms p99"),
        ),
        _load_row(
            f"GET /api/export-tasks (10,000 tasks), {clients} clients",
            m.listing,
            check=target_of(list_p99, API_P99_MAX_MS, most=True, unit=" ms p99"),
        ),
    ]


def build_report(
    m: Measurements,
    *,
    clients: int,
    meta: dict[str, Any],
    error: str | None,
    only: str | None = None,
) -> Report:
    if only == "imports":  # none of the export rows would have been measured
        imports = import_rows(m.imports, m.imports_small)
        return Report(imports, import_notes(m.imports, m.imports_small), meta, m, error)
    if only == "storage":
        return Report(storage_rows(m.storage), storage_notes(m.storage), meta, m, error)
    timing = (
        "Exports are timed from POST to the task reading completed (polled at 2% of the time "
        "taken so far, so seen at most ~2% late); the download of the file through the API is "
        "timed apart (the slowest, for 4 at once)."
    )
    split = split_rows(m.xlsx_split, m.xlsx_parallel.get(m.cores))
    if only == "xlsx":
        ceiling = _ceiling_row(XLSXWRITER_CEILING.format(rows=m.rows), m.xlsxwriter)
        rows = [ceiling, *xlsx_rows(m), *split]
        return Report(rows, [timing, *xlsx_notes(m)], meta, m, error)
    rows = [
        *_ceiling_rows(m),
        *export_rows(m),
        *split,
        *_memory_rows(m),
        _lag_row(m),
        *_concurrency_rows(m),
        *_api_rows(m, clients),
        *import_rows(m.imports, m.imports_small),
        *storage_rows(m.storage),
    ]
    notes = [
        timing,
        "The COPY ceiling and the cursor read the export's 9 columns as stored (same join, same "
        "order); the csv export's own statement adds the formatting it does in SQL.",
        *xlsx_notes(m),
        "csv in 1 connection and xlsx in 1 process: the worker with EXPORTER_ENCODE_PROCESSES=1.",
        "Peak RSS: ceilings measure their own process; the xlsxwriter ceiling counts its process "
        "before loading the rows plus what writing added, as if the rows were streamed. "
        "Exports: the worker process, and separately the largest single process below it (its "
        "encoding processes), sampled every 50 ms; growth compares each with itself.",
        "Concurrency: the 4 concurrent exports, in a worker with the default "
        f"EXPORTER_ENCODE_PROCESSES={m.cores} (each export split across the same pool), against "
        "4 x one export of the same size run alone in 1 process in this run: one after another "
        "on a single core.",
        f"API: {clients} clients from one Python process on the same "
        f"{meta.get('cpus', '?')} cores as the server and PostgreSQL, after a 1 s warm-up; the "
        "worker is stopped; POST creates real tasks (deleted afterwards). The API and the "
        f"trivial endpoint each run in {API_PROCESSES} processes sharing the port "
        "(EXPORTER_API_PROCESSES).",
    ]
    notes.extend(import_notes(m.imports, m.imports_small))
    notes.extend(storage_notes(m.storage))
    if _lag_row(m).lag == "n/a":
        notes.append("Loop lag n/a: the worker wrote no lag probe file (EXPORTER_LOOP_LAG_LOG).")
    return Report(rows, notes, meta, m, error)
