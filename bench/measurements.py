"""What one run of the bench measured, phase by phase."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.ceiling_process import CeilingResult
from bench.exports import ExportBatch
from bench.imports import ImportSize
from bench.load import LoadResult
from bench.storage import StorageComparison
from bench.xlsx_split import XlsxSplit


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
    # xlsx without ``parallel`` in the name: the single-process path (a split export there is
    # one range). Without ``by_writer``: EXPORTER_XLSX_ROWS_IN_DATABASE on.
    xlsx: ExportBatch | None = None
    xlsx_parallel: dict[int, ExportBatch] = field(default_factory=dict)  # by processes
    xlsx_by_writer: ExportBatch | None = None  # in ``cores`` processes, rows by xlsxwriter
    csv_small: ExportBatch | None = None
    xlsx_small: ExportBatch | None = None
    xlsx_small_parallel: ExportBatch | None = None  # in ``cores`` processes
    xlsx_small_by_writer: ExportBatch | None = None  # in ``cores`` processes
    xlsx_quarter: ExportBatch | None = None
    xlsx_quarter_concurrent: ExportBatch | None = None  # in ``cores`` processes
    trivial: LoadResult | None = None
    post: LoadResult | None = None
    listing: LoadResult | None = None
    imports: ImportSize | None = None  # of ``rows`` rows
    imports_small: ImportSize | None = None  # of ``small_rows`` rows
    storage: StorageComparison | None = None  # of ``rows`` rows
    xlsx_split: XlsxSplit | None = None  # of ``rows`` rows over ``cores`` ranges
