"""Peak resident memory of a process and of each process it spawns, sampled in a thread."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

SAMPLE_INTERVAL_S = 0.05


class PeakRss:
    """Samples a process tree until stopped: the peak of the process, and of the largest single
    process below it (children, and theirs: processes a child spawns count too).

    A thread rather than a task: the caller's event loop may be busy (downloads, polling)
    exactly when memory peaks. Use as a context manager around what is measured.
    ``children=False`` skips the child scan, which reads every process's /proc entry while
    holding the GIL: too costly inside a process that is itself being timed.
    """

    def __init__(
        self, pid: int, *, children: bool = True, interval_s: float = SAMPLE_INTERVAL_S
    ) -> None:
        self._process = psutil.Process(pid)
        self._children = children
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self.peak_bytes = 0
        self.peak_child_bytes = 0

    def sample(self) -> None:
        try:
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            children = self._process.children(recursive=True) if self._children else []
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                self.peak_child_bytes = max(self.peak_child_bytes, child.memory_info().rss)
            except psutil.NoSuchProcess:  # a child that ended between listing and reading
                continue

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
