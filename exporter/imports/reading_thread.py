"""One thread for all the blocking calls of one reader of an upload.

lxml frees a document with the dictionary of the thread whose parser made it. A reader whose
generators were resumed in whichever thread of asyncio's pool was free crashed the whole
worker (``free(): invalid pointer`` in ``xmlFreeDoc``) once a sheet's parser had been made in
one thread and was closed in another: reading an xlsx upload twice, to stage it and then to
write its report, was enough.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ReadingThread:
    """Runs each call it is given in the same thread, one after the other."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="import-reading")

    async def call(self, function: Callable[[], T]) -> T:
        """``function()``, run in the thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def close(self) -> None:
        """Let the thread end once the calls given to it have run."""
        self._executor.shutdown(wait=False)
