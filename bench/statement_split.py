"""Where an import's time goes, seen from PostgreSQL: what the worker's sessions are running,
sampled from ``pg_stat_activity`` (the sessions whose client ports are the worker process's),
with no change to the code being measured.

Each sample names the steps some session is in: ``staging`` (a COPY into the staging table:
for an xlsx or xlsb file it lasts as long as the worker reads rows and feeds them), ``writing``
(the UPDATE or INSERT into the imported table), ``checking`` (every other statement of the
import's transaction: the checks, their ANALYZEs and counts), and ``between statements`` (a
session idle inside a transaction: the worker's Python between two statements). Statements on
the task tables (progress, leases) are the worker's bookkeeping and not counted. A step's time
is its share of the samples times the time sampled.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

import asyncpg
import psutil

SAMPLE_INTERVAL_S = 0.05
SESSIONS = """
SELECT state, query FROM pg_stat_activity
WHERE datname = current_database() AND client_port = ANY($1::int[])
  AND state IN ('active', 'idle in transaction')
"""
STEPS = ("staging", "checking", "writing", "between statements")
STATEMENT_HEAD_CHARS = 60
TOP_STATEMENTS = 3
_BOOKKEEPING = re.compile(r"\b(tasks|task_\w+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class StatementSplit:
    """Estimated seconds in each step (see the module's docstring), the statements seen most
    (their first words, and seconds), and the time sampled."""

    seconds: dict[str, float]
    top_statements: list[tuple[str, float]]
    sampled_s: float
    samples: int


def statement_head(query: str) -> str:
    """The first words of a statement, on one line."""
    return " ".join(query.split())[:STATEMENT_HEAD_CHARS]


def step_of(state: str, query: str, table: str) -> str | None:
    """The step a session is in, or None when it is not the import's."""
    if state == "idle in transaction":
        return "between statements"
    statement = query.lstrip()
    written = re.match(rf'(UPDATE|INSERT\s+INTO)\s+"?{re.escape(table)}"?\s', statement, re.I)
    if written:
        return "writing"
    if _BOOKKEEPING.search(statement):
        return None
    if statement[:4].upper() == "COPY":
        return "staging"
    return "checking"


class StatementSampler:
    """Samples the sessions of one database until the ``async with`` block ends."""

    def __init__(
        self, url: str, table: str, worker_pid: int, interval_s: float = SAMPLE_INTERVAL_S
    ) -> None:
        self._url = url
        self._worker = psutil.Process(worker_pid)
        self._table = table
        self._interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._statements: Counter[str] = Counter()
        self._samples = 0
        self._started = 0.0
        self._task: asyncio.Task[None] | None = None
        self.split: StatementSplit | None = None

    async def _sample(self, conn: asyncpg.Connection) -> None:
        while True:
            steps = set()
            for record in await conn.fetch(SESSIONS, self._client_ports()):
                query = record["query"] or ""
                step = step_of(record["state"], query, self._table)
                if step is not None:
                    steps.add(step)
                    if record["state"] == "active":
                        self._statements[statement_head(query)] += 1
            self._counts.update(steps)
            self._samples += 1
            await asyncio.sleep(self._interval_s)

    def _client_ports(self) -> list[int]:
        """The local ports of the worker's TCP connections (its database sessions among them)."""
        try:
            connections = self._worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            return []
        return [connection.laddr.port for connection in connections if connection.laddr]

    async def __aenter__(self) -> StatementSampler:
        conn = await asyncpg.connect(self._url)
        self._started = time.perf_counter()

        async def sample_then_close() -> None:
            try:
                await self._sample(conn)
            finally:
                await conn.close()

        self._task = asyncio.create_task(sample_then_close())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        sampled_s = time.perf_counter() - self._started
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        per_sample_s = sampled_s / max(self._samples, 1)
        self.split = StatementSplit(
            {step: self._counts[step] * per_sample_s for step in STEPS},
            [
                (head, count * per_sample_s)
                for head, count in self._statements.most_common(TOP_STATEMENTS)
            ],
            sampled_s,
            self._samples,
        )
