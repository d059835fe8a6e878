"""The worker's pool of encoding processes, shared by all its exports."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from exporter.processes import die_with_parent


class EncoderPool:
    """Processes that encode parts of large xlsx exports; replaced if one of them dies."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    @property
    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the worker has an event loop and threads a fork would copy.
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    def replace(self) -> None:
        """Drop a pool that lost a process (BrokenProcessPool); the next use starts anew."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
