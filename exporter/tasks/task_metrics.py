"""A task's metrics, counted from the row the database returned for each change.

Times come from the row (the database's clock), so that the histograms agree with what the
database says of the same tasks.
"""

from __future__ import annotations

from exporter import metrics
from exporter.tasks.models import Task, TaskStatus

FINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


def count_created(task: Task) -> None:
    metrics.tasks_created.labels(task.kind, task.type, task.format).inc()


def count_started(task: Task) -> None:
    """A worker claimed the task; its first attempt's wait in the queue is observed."""
    if task.attempts == 1 and task.started_at is not None:
        wait_s = (task.started_at - task.created_at).total_seconds()
        metrics.task_queue_wait_seconds.labels(task.kind, task.type).observe(max(wait_s, 0.0))


def count_finished(task: Task) -> None:
    """The task reached its final status (as this row says): count it, and what it made."""
    if task.status not in FINAL:
        return
    labels = (task.kind, task.type, task.format)
    metrics.tasks_finished.labels(*labels, task.status.value).inc()
    if task.started_at is not None and task.finished_at is not None:
        duration_s = (task.finished_at - task.started_at).total_seconds()
        metrics.task_seconds.labels(*labels, task.status.value).observe(max(duration_s, 0.0))
    if task.status is TaskStatus.COMPLETED:
        metrics.rows_written.labels(*labels).inc(task.row_count or 0)
        metrics.bytes_written.labels(*labels).inc(task.file_size or 0)
