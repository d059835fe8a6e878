"""The worker event loop's worst lag during an export, read from the worker's own probe.

The worker, started with ``EXPORTER_LOOP_LAG_LOG=PATH``, appends one JSON line per window to
PATH: ``{"at": <wall-clock end of the window, s>, "window_s": 1.0, "max_lag_ms": 3.2}``, where
the lag is how late a periodic timer in the worker's loop fired. Without that probe the file
never appears and the lag is unknown (``None``), never guessed from outside the process.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

# The window that holds the export's end is written when it closes, up to a window later.
LAST_WINDOW_WAIT_S = 2.5
POLL_INTERVAL_S = 0.1


def _windows(path: Path) -> list[tuple[float, float, float]]:
    """(start, end, max lag ms) of each complete line; a line being written is skipped."""
    windows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            end, length, lag = float(entry["at"]), float(entry["window_s"]), entry["max_lag_ms"]
        except (ValueError, KeyError, TypeError):
            continue
        windows.append((end - length, end, float(lag)))
    return windows


async def max_loop_lag_ms(path: Path, started: float, finished: float) -> float | None:
    """The worst lag of the windows overlapping [started, finished] (wall-clock seconds)."""
    if not path.exists():
        return None
    deadline = time.monotonic() + LAST_WINDOW_WAIT_S
    while not any(end >= finished for _, end, _ in _windows(path)):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    lags = [lag for start, end, lag in _windows(path) if start <= finished and end >= started]
    return max(lags, default=None)
