"""The worker's maintenance: the lease sweep keeps its pace whatever the janitor is doing."""

from __future__ import annotations

import asyncio
import contextlib

from exporter.ops.worker import maintain
from tests.support import wait_until


class CountingSweeper:
    def __init__(self) -> None:
        self.sweeps = 0

    async def sweep(self) -> None:
        self.sweeps += 1


class StuckJanitor:
    """A janitor round that lists a bucket which never answers."""

    def __init__(self) -> None:
        self.rounds = 0

    async def run(self) -> None:
        self.rounds += 1
        await asyncio.Event().wait()


async def test_a_janitor_round_that_never_ends_holds_up_no_lease_sweep() -> None:
    sweeper, janitor = CountingSweeper(), StuckJanitor()
    maintaining = asyncio.create_task(maintain(sweeper, janitor, 0.01))  # type: ignore[arg-type]

    async def swept_again() -> bool:
        return sweeper.sweeps >= 5

    try:
        await wait_until(swept_again, timeout_s=5, what="five sweeps")
    finally:
        maintaining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintaining
    assert janitor.rounds == 1
