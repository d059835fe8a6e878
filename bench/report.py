"""One table from one run: each measurement, its ratio to its ceiling, the issue's targets.

Printed as markdown, and written as ``report.md`` and ``report.json`` in the run's folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.ceiling_process import CeilingResult
from bench.exports import ExportBatch
from bench.import_report import import_notes, import_rows
from bench.imports import ImportSize
from bench.load import LoadResult
from bench.stack import API_PROCESSES, DEFAULT_PARALLEL_MIN_ROWS
from bench.storage import StorageComparison
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
CSV_MAX_TIMES_COPY = 1.5
XLSX_MIN_TIMES_WRITER = 0.95
XLSX_PARALLEL_MIN_TIMES_WRITER = 1.5
PEAK_RSS_MAX_MB = 150
RSS_GROWTH_MAX_MB = 20
LOOP_LAG_MAX_MS = 100
CONCURRENT_MAX_TIMES_SEQUENTIAL = 0.6
POST_MIN_TIMES_TRIVIAL = 0.25
API_P99_MAX_MS = 50


@dataclass
class Measurements:
    """Everything one run measured; a phase that failed or did not run leaves its field None."""

    rows: int
    small_rows: int
    quarter_rows: int
    cores: int  # the worker's default EXPORTER_ENCODE_PROCESSES
    parallel_processes: tuple[int, ...]  # the EXPORTER_ENCODE_PROCESSES of the parallel runs
    parallel_min_rows: int  # the workers' EXPORTER_PARALLEL_MIN_ROWS
    copy: CeilingResult | None = None
    copy_csv: CeilingResult | None = None
    cursor: CeilingResult | None = None
    xlsxwriter: CeilingResult | None = None
    csv: ExportBatch | None = None  # copied over ``cores`` connections
    csv_single: ExportBatch | None = None  # over one connection
    # xlsx without ``parallel`` in the name: the single-process path.
    xlsx: ExportBatch | None = None
    xlsx_parallel: dict[int, ExportBatch] = field(default_factory=dict)  # by processes
    csv_small: ExportBatch | None = None
    xlsx_small: ExportBatch | None = None
    xlsx_small_parallel: ExportBatch | None = None  # in ``cores`` processes
    xlsx_quarter: ExportBatch | None = None
    xlsx_quarter_concurrent: ExportBatch | None = None  # in ``cores`` processes
    trivial: LoadResult | None = None
    post: LoadResult | None = None
    listing: LoadResult | None = None
    imports: ImportSize | None = None  # of ``rows`` rows
    imports_small: ImportSize | None = None  # of ``small_rows`` rows
    storage: StorageComparison | None = None  # of ``rows`` rows


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


def _export_row(
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


def _seconds(item: CeilingResult | ExportBatch | None) -> float | None:
    if item is None:
        return None
    return item.seconds if isinstance(item, CeilingResult) else item.wall_s


def _ceiling_rows(m: Measurements) -> list[Row]:
    n = f"{m.rows:,}"
    return [
        _ceiling_row(f"ceiling: COPY (query) TO STDOUT CSV, {n} rows", m.copy),
        _ceiling_row(f"COPY of the csv export's own statement, {n} rows", m.copy_csv),
        _ceiling_row(f"asyncpg cursor, rows discarded, {n} rows", m.cursor),
        _ceiling_row(f"ceiling: xlsxwriter constant_memory, no DB, {n} rows", m.xlsxwriter),
    ]


def _processes(encode_processes: int) -> str:
    """How many encoding processes wrote an xlsx export."""
    return "1 process" if encode_processes == 1 else f"{encode_processes} processes"


def _connections(count: int) -> str:
    """How many connections copied a csv export."""
    return "1 connection" if count == 1 else f"{count} connections"


def _parallel_row(m: Measurements, processes: int) -> Row:
    batch = m.xlsx_parallel.get(processes)
    writer_ratio = ratio_of(_seconds(m.xlsxwriter), _seconds(batch))
    speedup = ratio_of(_seconds(m.xlsx), _seconds(batch))
    ratio = ", ".join(
        text
        for text in (times_text(writer_ratio, "xlsxwriter"), times_text(speedup, "1 process"))
        if text
    )
    return _export_row(
        f"export xlsx, {m.rows:,} rows, {_processes(processes)}",
        batch,
        ratio=ratio,
        check=target_of(writer_ratio, XLSX_PARALLEL_MIN_TIMES_WRITER, most=False),
    )


def _export_rows(m: Measurements) -> list[Row]:
    n, small = f"{m.rows:,}", f"{m.small_rows:,}"
    csv_ratio = ratio_of(_seconds(m.csv), _seconds(m.copy))
    # Throughput against the writer's, so more than 1x means faster than one xlsxwriter.
    xlsx_ratio = ratio_of(_seconds(m.xlsxwriter), _seconds(m.xlsx))
    return [
        _export_row(
            f"export csv, {n} rows, {_connections(m.cores)}",
            m.csv,
            ratio=times_text(csv_ratio, "COPY time"),
            check=target_of(csv_ratio, CSV_MAX_TIMES_COPY, most=True),
        ),
        _export_row(
            f"export csv, {n} rows, {_connections(1)}",
            m.csv_single,
            ratio=times_text(ratio_of(_seconds(m.csv_single), _seconds(m.copy)), "COPY time"),
        ),
        _export_row(
            f"export xlsx, {n} rows, {_processes(1)}",
            m.xlsx,
            ratio=times_text(xlsx_ratio, "xlsxwriter"),
            check=target_of(xlsx_ratio, XLSX_MIN_TIMES_WRITER, most=False),
        ),
        *(_parallel_row(m, processes) for processes in m.parallel_processes),
        _export_row(f"export csv, {small} rows", m.csv_small),
        _export_row(f"export xlsx, {small} rows, {_processes(1)}", m.xlsx_small),
        _export_row(f"export xlsx, {small} rows, {_processes(m.cores)}", m.xlsx_small_parallel),
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
    batches = [m.csv, m.xlsx, *m.xlsx_parallel.values()]
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
        _growth_row(f"xlsx, {_processes(1)}", m, m.xlsx, m.xlsx_small),
        _growth_row(
            f"xlsx, {_processes(m.cores)}", m, m.xlsx_parallel.get(m.cores), small_parallel
        ),
    ]


def _lag_row(m: Measurements) -> Row:
    batches = [
        *_full_size_batches(m),
        m.csv_small,
        m.xlsx_small,
        m.xlsx_small_parallel,
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
    alone = _seconds(m.xlsx_quarter)
    sequential = None if alone is None else 4 * alone
    ratio = ratio_of(_seconds(m.xlsx_quarter_concurrent), sequential)
    return [
        _export_row(f"export xlsx, {quarter} rows, alone, {_processes(1)}", m.xlsx_quarter),
        _export_row(
            f"4 concurrent xlsx exports of {quarter} rows, 4 users, {_processes(m.cores)}",
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


def _lowered_threshold(m: Measurements) -> str:
    if m.parallel_min_rows == DEFAULT_PARALLEL_MIN_ROWS:
        return " (the default)"
    return (
        f" (the default {DEFAULT_PARALLEL_MIN_ROWS:,}, lowered for this smaller run so that "
        "every xlsx export takes the path its row names)"
    )


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
    rows = [
        *_ceiling_rows(m),
        *_export_rows(m),
        *_memory_rows(m),
        _lag_row(m),
        *_concurrency_rows(m),
        *_api_rows(m, clients),
        *import_rows(m.imports, m.imports_small),
        *storage_rows(m.storage),
    ]
    notes = [
        "Exports are timed from POST to the task reading completed (polled at 2% of the time "
        "taken so far, so seen at most ~2% late); the download of the file through the API is "
        "timed apart (the slowest, for 4 at once).",
        "The COPY ceiling and the cursor read the export's 9 columns as stored (same join, same "
        "order); the csv export's own statement adds the formatting it does in SQL.",
        "xlsx in 1 process: the worker started with EXPORTER_ENCODE_PROCESSES=1, one encoding "
        "process writes the whole workbook. In N processes: EXPORTER_ENCODE_PROCESSES=N, "
        "parts encoded by N spawned processes, spliced by the worker; the first such export "
        "after a start includes spawning them. Exports of at least EXPORTER_PARALLEL_MIN_ROWS="
        f"{m.parallel_min_rows:,} rows take that path{_lowered_threshold(m)}. csv in N "
        "connections: the same setting and threshold, the rows copied over N connections at "
        "once and joined in order; in 1 connection: the worker with EXPORTER_ENCODE_PROCESSES=1.",
        "Targets: 1 process ≥ 0.95x the xlsxwriter ceiling; in parallel ≥ 1.5x on 2 cores, "
        "near-linear as cores grow (after the comma: against the 1-process export).",
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
