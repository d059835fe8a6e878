"""Logging set-up: one line per event, named loggers, printed once, as text or as JSON.

In JSON (``EXPORTER_LOG_FORMAT=json``) each line is an object with ``time``, ``level``,
``logger`` and ``message``, and the ``request_id``, ``account_id``, ``task_id`` and
``worker_id`` of :mod:`exporter.log_context` where they are known.
"""

from __future__ import annotations

import logging
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from exporter import log_context

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("levelname", "name", "message")
JSON_NAMES = {"levelname": "level", "name": "logger"}


class _NotPrintedBelow(logging.Filter):
    """Passes a record only if no logger between its own and the root has printed it.

    arq's command line (``arq run_worker.WorkerSettings``) gives the ``arq`` logger a handler of
    its own after our set-up, and its records still reach the root: without this every arq line
    was printed twice until the worker's start-up takes the handler away
    (:func:`take_over_arq_logging`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if logger.handlers:
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


class _WithContext(logging.Filter):
    """Gives the record the context fields known where it was logged (``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context.known().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    return JsonFormatter(
        list(JSON_FIELDS), rename_fields=JSON_NAMES, timestamp="time", json_ensure_ascii=False
    )


def configure_logging(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Every line through one handler on the root logger, in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(_NotPrintedBelow())
    handler.addFilter(_WithContext())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def take_over_arq_logging() -> None:
    """Remove the handler arq's command line gave the ``arq`` logger, so that from here on its
    lines are printed by ours, in our format (JSON too), once."""
    arq = logging.getLogger("arq")
    for handler in list(arq.handlers):
        arq.removeHandler(handler)
    arq.propagate = True
