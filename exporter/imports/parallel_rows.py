"""An xlsx upload's rows read by several processes at once, staged in the order of the file.

Reading a large xlsx is bound by the Python that decodes each cell (a million rows took
20-26 s in one process). Here each reading process inflates every sheet and reads one share
of its runs of rows (``row_shares``); this process takes the runs back in the file's order,
counts the rows (all sheets together, for ``max_rows``), matches each sheet's header and
numbers the rows, so the records staged are those ``UploadRows`` gives, in the same order.

When a reading process stops early (a run it cannot read as reading in order would: not in
the plain form, a row without its number, a row over a limit) or dies, the processes are
ended and the rest of the upload, from that run on, is read here in order: its errors are
raised exactly as reading the whole upload here would raise them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import multiprocessing
import os
import threading
import time
import zipfile
from collections.abc import Generator
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from exporter.imports.layout import HeaderNames, SheetLayout
from exporter.imports.readers import ReadLimits, UploadFormat
from exporter.imports.readers.base import RowGuard
from exporter.imports.readers.xlsx_parts import read_workbook
from exporter.imports.readers.xlsx_reader import ResumeAt, read_xlsx
from exporter.imports.readers.zip_guard import open_checked_zip
from exporter.imports.registry import ImportHandler
from exporter.imports.row_shares import RunRows, ShareJob, SheetDone, read_share
from exporter.imports.upload_rows import MatchedSheets, Record, RowSource, UploadRows

log = logging.getLogger("exporter.imports")

# A process that does not end within this after SIGTERM is killed (a cancel ends the
# processes within a second).
STOP_WAIT_S = 0.5
PIPE_BYTES = 1024 * 1024
# Records put together at a time when reading in this process.
IN_ORDER_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class ParallelReading:
    """How many processes read a large xlsx upload (1: it is read in the worker's own)."""

    processes: int = 1
    # Measured: starting the processes and reading their first runs takes about 0.4 s; a
    # workbook of less XML than this (some 45,000 rows of accounts in inline strings) is read
    # about as fast in one process.
    min_unpacked_bytes: int = 16 * 1024 * 1024


def open_rows(
    path: Path,
    upload_format: UploadFormat,
    handler: ImportHandler,
    limits: ReadLimits,
    reading: ParallelReading,
) -> RowSource:
    """The upload's rows, read by several processes when it is a large enough xlsx."""
    if upload_format is UploadFormat.XLSX and reading.processes > 1:
        with open_checked_zip(path, limits) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
        if unpacked >= reading.min_unpacked_bytes:
            return ParallelRows(path, handler, limits, reading.processes)
    return UploadRows(path, handler, limits)


class ReadingStopped(Exception):
    """The upload's reading was stopped from outside (the import was cancelled)."""


class ReadingProcesses:
    """The processes reading shares of one upload, and the pipes each sends its runs on."""

    def __init__(self, jobs: list[ShareJob]) -> None:
        # spawn, not fork: the worker has an event loop and threads a fork would copy.
        context = multiprocessing.get_context("spawn")
        self._stopped = threading.Event()
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []
        try:
            for job in jobs:
                self._start(context, job)
        except BaseException:
            self.stop()
            self.close_pipes()
            raise

    def _start(self, context: SpawnContext, job: ShareJob) -> None:
        receiver, sender = context.Pipe(duplex=False)
        self._pipes.append(receiver)
        # Room for a few dozen runs: a process whose turn has not come reads on rather than
        # waiting for the stager (the default 64 KiB holds one or two).
        fcntl.fcntl(receiver.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        process = context.Process(
            target=read_share,
            args=(job, sender, os.getpid()),
            name=f"import-reader-{job.share}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            # Only the reading process holds the sending end: its end is the pipe's end.
            sender.close()
        self._processes.append(process)

    def receive(self, run: int) -> RunRows | SheetDone | None:
        """What the process reading ``run`` sends next; None when it has ended instead."""
        pipe = self._pipes[run % len(self._pipes)]
        try:
            message: RunRows | SheetDone = pipe.recv()
        except (EOFError, OSError):
            if self._stopped.is_set():
                raise ReadingStopped from None
            return None
        if self._stopped.is_set():
            raise ReadingStopped
        return message

    def sheet_done(self, runs: int) -> bool:
        """Whether every other process too has said that the sheet (of ``runs`` runs) ended."""
        others = (run for run in range(runs + 1, runs + len(self._pipes)))
        return all(isinstance(self.receive(run), SheetDone) for run in others)

    def stop(self) -> None:
        """End the processes (at once; a process that ignores SIGTERM is killed)."""
        self._stopped.set()
        for process in self._processes:
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()

    def close_pipes(self) -> None:
        for pipe in self._pipes:
            pipe.close()


class ParallelRows:
    """Reads an xlsx upload with ``processes`` reading processes. Blocking: run it in one
    thread; ``stop`` may be called from any other and ends the processes at once."""

    def __init__(
        self, path: Path, handler: ImportHandler, limits: ReadLimits, processes: int
    ) -> None:
        self._path = path
        self._limits = limits
        self._names = HeaderNames.of(handler)
        self._processes = processes
        self._matched = MatchedSheets(handler)
        self._reading: ReadingProcesses | None = None
        self._stopped = threading.Event()
        self._batches = self._read()
        self._pending: list[Record] = []

    @property
    def layout(self) -> SheetLayout:
        """The first matching sheet's layout (every other one holds the same columns)."""
        return self._matched.layouts[0]

    @property
    def sheets(self) -> list[str]:
        """The names of the matching sheets met so far."""
        return self._matched.sheets

    def start(self) -> None:
        """Read up to the first matching sheet's header; HeaderMissing if there is none."""
        self._pending = next(self._batches, [])

    def records(self, size: int) -> list[Record]:
        """At least ``size`` further records when there are, a run's more at most; an empty
        list at the end."""
        records, self._pending = self._pending, []
        while len(records) < size:
            batch = next(self._batches, None)
            if batch is None:
                break
            records += batch
        return records

    def stop(self) -> None:
        """End the processes at once; a read under way ends with ``ReadingStopped``."""
        self._stopped.set()
        if self._reading is not None:
            self._reading.stop()

    def close(self) -> None:
        """Stop reading, end the processes and let go of the file (in the reading thread)."""
        self.stop()
        self._batches.close()

    def _read(self) -> Generator[list[Record], None, None]:
        guard = RowGuard(self._limits)
        with open_checked_zip(self._path, self._limits) as archive:
            sheets = read_workbook(archive).sheets
            jobs = [
                ShareJob(self._path, self._limits, self._names, share, self._processes)
                for share in range(self._processes)
            ]
            if self._stopped.is_set():
                raise ReadingStopped
            self._reading = reading = ReadingProcesses(jobs)
            if self._stopped.is_set():
                reading.stop()
            try:
                resume = yield from self._shared(reading, guard, [sheet.name for sheet in sheets])
            finally:
                reading.stop()
                reading.close_pipes()
            if resume is not None:
                yield from self._in_order(archive, guard, *resume)
        self._matched.finish()

    def _shared(
        self, reading: ReadingProcesses, guard: RowGuard, names: list[str]
    ) -> Generator[list[Record], None, tuple[ResumeAt, int | None] | None]:
        """The records the processes read, in order; where to read on in order if they
        stopped early (and the index of the sheet there, if it matched), else None."""
        for position, name in enumerate(names):
            sheet: int | None = None
            previous = 0
            run = 0
            while True:
                message = reading.receive(run)
                if message is None:
                    log.info("import reading: sheet %r read in order from its run %d", name, run)
                    return ResumeAt(position, run, previous), sheet
                if isinstance(message, SheetDone):
                    break
                guard.count(message.rows_read)
                if run == 0:
                    sheet = self._matched.match(name, message.header)
                if message.last_number is not None:
                    previous = message.last_number
                if sheet is not None and message.numbered:
                    yield self._matched.records(sheet, message.numbered)
                run += 1
            if not reading.sheet_done(run):
                return ResumeAt(position + 1), None
        return None

    def _in_order(
        self, archive: zipfile.ZipFile, guard: RowGuard, resume: ResumeAt, sheet: int | None
    ) -> Generator[list[Record], None, None]:
        """The rest of the upload from ``resume``, read in this process."""
        matched = self._matched
        for position, found in enumerate(read_xlsx(archive, guard, resume), resume.sheet):
            if position == resume.sheet and resume.run > 0:
                rows = matched.rows_after_header(sheet, found.rows)
            else:
                rows = matched.sheet_rows(found.name, found.rows)
            batch: list[Record] = []
            for row in rows:
                batch.append((row.seq, row.sheet, row.number, *row.values))
                if len(batch) >= IN_ORDER_BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch
