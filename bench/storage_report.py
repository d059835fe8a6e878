"""The storage rows of the bench's table: exports to S3 against a local directory, and the
downloads of the stored files through the API against a GET from the store."""

from __future__ import annotations

import statistics

from bench.storage import REPEATS, StorageComparison
from bench.table import MB, Row, mb_text, rate_text, target_of

# The targets (issue 14, Figures).
EXPORT_MAX_TIMES_LOCAL = 1.15
DOWNLOAD_MIN_TIMES_DIRECT = 0.5
WORKER_PEAK_RSS_MAX_MB = 150


def storage_rows(comparison: StorageComparison | None) -> list[Row]:
    if comparison is None:
        return []
    rows: list[Row] = []
    for result in comparison.formats:
        what = f"{result.file_format} export of {comparison.rows:,} rows"
        rows.append(Row(f"{what} to a local directory", statistics.median(result.local_s)))
        store_cpu = statistics.median(result.store_cpu_s)
        rows.append(
            Row(
                f"{what} to S3 (SeaweedFS; its own CPU: {store_cpu:.2f} s)",
                statistics.median(result.s3_s),
                ratio=f"{result.export_ratio:.2f}x local",
                **target_of(result.export_ratio, EXPORT_MAX_TIMES_LOCAL, most=True, unit="x local"),
            )
        )
        size = f"{result.file_format}, {result.file_bytes / MB:.0f} MB"
        rows.append(
            Row(
                f"GET of the object from the store ({size})",
                download_s=statistics.median(result.direct_download_s),
                rate=rate_text(result.direct_rate / MB, "MB"),
            )
        )
        download_ratio = result.api_rate / result.direct_rate
        rows.append(
            Row(
                f"download through the API from S3 ({size})",
                download_s=statistics.median(result.api_download_s),
                rate=rate_text(result.api_rate / MB, "MB"),
                ratio=f"{download_ratio:.2f}x direct GET",
                **target_of(
                    download_ratio, DOWNLOAD_MIN_TIMES_DIRECT, most=False, unit="x direct GET"
                ),
            )
        )
    rows.append(
        Row(
            "S3 worker, through these exports and uploads",
            rss=f"{mb_text(comparison.s3_worker_peak_rss_bytes)} "
            f"(encoding: {mb_text(comparison.s3_child_peak_rss_bytes)})",
            **target_of(
                comparison.s3_worker_peak_rss_bytes / MB,
                WORKER_PEAK_RSS_MAX_MB,
                most=True,
                unit=" MB",
            ),
        )
    )
    return rows


def storage_notes(comparison: StorageComparison | None) -> list[str]:
    if comparison is None:
        return []
    return [
        "Storage: one database, two stacks (API and worker, the default encoding processes): "
        "one stores in a local directory, one in a SeaweedFS bucket on loopback (started by the "
        f"bench). Each format is exported by both, alternately, {REPEATS} times; medians. A csv "
        "is uploaded while COPY writes it. Each stored file is downloaded through the S3 "
        "stack's API and with a GET of the object (aiobotocore, the service's client), both "
        "to disk. Peak RSS: the S3 worker process throughout, and its largest encoding process. "
        "The store's own CPU: the SeaweedFS process's CPU seconds during each S3 export (median); "
        "where the store shares the machine's cores with PostgreSQL and the worker, as here, "
        "roughly that much over the number of cores is added to the export's wall time.",
    ]
