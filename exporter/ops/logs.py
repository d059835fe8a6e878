"""Logging set-up: one line per event, named loggers."""

from __future__ import annotations

import logging


class _NotPrintedBelow(logging.Filter):
    """Passes a record only if no logger between its own and the root has printed it.

    arq's command line (``arq run_worker.WorkerSettings``) gives the ``arq`` logger a handler of
    its own after our set-up, and its records still reach the root: without this every arq line
    was printed twice.
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


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for handler in logging.root.handlers:
        handler.addFilter(_NotPrintedBelow())
