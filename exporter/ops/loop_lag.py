"""A probe of the worker's event loop: how late a short timer fires, worst case per second.

Heartbeats, cancel checks and sweeps all ride on this loop; a long-blocked loop would make
them late. With EXPORTER_LOOP_LAG_LOG set, the worker appends one JSON line per window.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

LOOP_LAG_INTERVAL_S = 0.02
LOOP_LAG_WINDOW_S = 1.0


async def record_loop_lag(path: Path) -> None:
    """Append ``{"at", "window_s", "max_lag_ms"}`` about once a second, forever."""
    loop = asyncio.get_running_loop()
    worst, window_start = 0.0, loop.time()
    with path.open("a", encoding="utf-8") as out:
        while True:
            due = loop.time() + LOOP_LAG_INTERVAL_S
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            now = loop.time()
            worst = max(worst, now - due)
            if now - window_start >= LOOP_LAG_WINDOW_S:
                entry = {
                    "at": time.time(),
                    "window_s": round(now - window_start, 3),
                    "max_lag_ms": round(worst * 1000, 1),
                }
                out.write(json.dumps(entry) + "\n")
                out.flush()
                worst, window_start = 0.0, now
