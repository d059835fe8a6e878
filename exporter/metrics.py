"""The service's Prometheus metrics, defined once; the code that sees each event counts it.

Every label takes values from a bounded set: a route's pattern (never the raw path), a method,
a status code, a task's kind, registered type and format, an outcome. Counts of tasks waiting
and running are not kept here: the API reads them from PostgreSQL at each scrape
(``exporter.api.metrics``), so that they agree with the database.

With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported, prometheus-client keeps
each value in a file of that directory per process, and :func:`exposition` adds up the files of
every process: how the API's processes, which share one port, answer a scrape as one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# A ``_created`` series per counter and histogram doubles a scrape for what Prometheus does not
# use (nor does multiprocess mode write it): the worker's scrape then reads as the API's.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: a csv of a few rows takes a fraction of one, a million-row xlsx about a minute.
TASK_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# A worker polls Redis every 50 ms: an idle deployment starts a task within a fraction of a second.
QUEUE_WAIT_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

http_requests = Counter(
    "exporter_http_requests",
    "HTTP requests answered, by method, route pattern and status code.",
    ["method", "route", "status"],
)
http_request_seconds = Histogram(
    "exporter_http_request_duration_seconds",
    "Seconds from a request's arrival to its answer (a stream's whole life), by route pattern.",
    ["method", "route"],
)
tasks_created = Counter(
    "exporter_tasks_created", "Tasks created, by kind, type and format.", ["kind", "type", "format"]
)
tasks_finished = Counter(
    "exporter_tasks_finished",
    "Tasks that reached a final status (completed, failed or cancelled).",
    ["kind", "type", "format", "status"],
)
task_seconds = Histogram(
    "exporter_task_duration_seconds",
    "Seconds from the start of a task's last attempt to its final status.",
    ["kind", "type", "format", "status"],
    buckets=TASK_SECONDS,
)
task_queue_wait_seconds = Histogram(
    "exporter_task_queue_wait_seconds",
    "Seconds from a task's creation to the start of its first attempt.",
    ["kind", "type"],
    buckets=QUEUE_WAIT_SECONDS,
)
rows_written = Counter(
    "exporter_task_rows",
    "Rows of completed tasks: written to a file (export) or to the database (import).",
    ["kind", "type", "format"],
)
bytes_written = Counter(
    "exporter_task_file_bytes",
    "Bytes of the files completed tasks stored.",
    ["kind", "type", "format"],
)
lease_takeovers = Counter(
    "exporter_lease_takeovers",
    "Running tasks whose worker stopped renewing its lease, by what the sweeper made of them.",
    ["status"],
)
sweeper_enqueued = Counter(
    "exporter_sweeper_enqueued", "Pending tasks whose job was lost, enqueued again by the sweeper."
)
files_expired = Counter(
    "exporter_files_expired", "Files removed by the retention janitor after their retention time."
)
webhook_deliveries = Counter(
    "exporter_webhook_deliveries", "Webhook delivery attempts, by outcome.", ["outcome"]
)
event_streams_open = Gauge(
    "exporter_event_streams_open",
    "Task event streams (server-sent events) open now.",
    # Added up over the API processes alive now.
    multiprocess_mode="livesum",
)


class _Together:
    """What each of several collectors yields, as one."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def exposition(multiprocess_dir: Path | None, *extra: Collector) -> bytes:
    """The text a scrape answers: this process's metrics, or with ``multiprocess_dir`` those of
    every process writing there, and the ``extra`` collectors' (computed at the scrape)."""
    own: Collector = REGISTRY
    if multiprocess_dir is not None:
        # prometheus-client's multiprocess module is not annotated.
        own = MultiProcessCollector(None, str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return generate_latest(_Together([own, *extra]))


def clear_other_processes(multiprocess_dir: Path) -> None:
    """Remove the values of every process but this one: a previous run's, which a scrape would
    otherwise add to this run's (this process's own are open already)."""
    own = f"_{os.getpid()}.db"
    for path in multiprocess_dir.glob("*.db"):
        if not path.name.endswith(own):
            path.unlink(missing_ok=True)
