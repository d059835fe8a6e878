"""Child processes that end with their parent: the worker's encoders, the API's processes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """The first step of a spawned child (an encoding process, an API process): end with its
    parent, even when that is SIGKILLed, rather than live on, orphaned, doing work nobody
    will use."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
